/* spool.c - durable FIFO between MQTT ingest and the Kafka forwarder.
 *
 * One SQLite file in WAL mode, two connections: the ingest thread appends on one
 * handle, the forwarder claims and deletes on another, and `sluice spool stats`
 * may read on a third from another process. WAL lets the readers run beside the
 * one writer; the two writers (append, delete) take turns on the WAL write lock.
 * Every writer transaction is BEGIN IMMEDIATE (or a single autocommit statement,
 * which takes the write lock at its start), so a writer never holds a read
 * snapshot it later has to upgrade: that upgrade is what fails with
 * SQLITE_BUSY_SNAPSHOT in WAL, and no busy handler can retry it. With the write
 * lock taken up front, contention is plain SQLITE_BUSY, which busy_timeout waits
 * out.
 *
 * Durability. A QoS 1/2 message is acknowledged after its row is committed (to the
 * intake journal on the ingest handle: see below; the reasoning is the same). Under
 * `durability: power` that commit runs with synchronous=FULL: SQLite fsyncs the
 * WAL before COMMIT returns, so the PUBACK never precedes the disk (~4k commits/s
 * measured here, the price of the promise). Under `durability: process`
 * (the default) we run synchronous=NORMAL: COMMIT appends the frames to the WAL with
 * write(2) and returns without fsync. Why that keeps both promises:
 *  - Killing the process loses nothing: after write(2) returns, the frames are in
 *    the kernel's page cache, which outlives the process; the next open replays
 *    the WAL up to its last valid commit frame.
 *  - A power cut loses at most sync_interval: the WAL is an append-only log whose
 *    frames carry a cumulative checksum, and recovery keeps the longest prefix of
 *    valid frames that ends in a commit. spool_sync_wal, called every
 *    sync_interval, fdatasyncs the WAL through our own descriptor; fdatasync(2)
 *    on any descriptor of an inode flushes all of its dirty pages and its size,
 *    including the frames the SQLite connection wrote through its own. So every
 *    commit made before the last tick is on the disk, and only the commits after
 *    it (one interval) can vanish. When the
 *    WAL wraps, SQLite has first checkpointed it (synchronous=NORMAL fsyncs the WAL
 *    and then the database during a checkpoint), so the rows behind the wrap are
 *    already durable in the main file; a half-persisted restart header only
 *    invalidates the new frames (salt mismatch), which again lie inside the window.
 *  - SQLite documents exactly this for NORMAL in WAL: durable against application
 *    crashes, may roll back recent commits on power loss, never corrupts.
 * The descriptor is reopened when the WAL's inode changes (SQLite deletes the WAL
 * when the last connection closes and creates a fresh one later), and the first
 * fsync after (re)opening also fsyncs the directory, so the WAL's name survives the
 * power cut along with its contents. This assumes the disk honours cache flushes.
 *
 * One b-tree. A single-row commit rewrites whole pages into the WAL, so flash wear
 * is counted in pages touched per commit. A records table keyed by seq plus an
 * index on (lane, seq) touches two b-trees: we measured 3.2 WAL frames per commit.
 * Instead the table's rowid is rid = lane << 48 | seq: the table itself is ordered
 * by (lane, seq), a claim is one rowid range scan, and a commit touches one leaf
 * (1.7 frames per commit with splits; 47% less WAL). The price: spool_delete gets
 * bare sequences, so it tries the lane of the previous row first (a claimed batch
 * is one lane) and the others on a miss, and a lane id must fit 15 bits. 48 bits
 * of sequence last 300 years at 30k messages a second.
 *
 * Sequence numbers. Kafka consumers de-duplicate on instance + sluice.seq, so a
 * sequence is unique across lanes and never reused, even after the highest rows
 * were deleted and the spool reopened. The insert takes, inside its write
 * transaction, 1 + the maximum of the newest row of every lane (one seek each) and
 * meta.seq_floor, which spool_delete raises only when a batch deletes the current
 * maximum row (once per drained backlog, not per row). AUTOINCREMENT would rewrite
 * the sqlite_sequence page on every insert: one more WAL frame per QoS 1 commit.
 *
 * Page size 4096 (SQLite's default). Each page touched costs a frame of page_size +
 * 24 bytes, so small pages once won: with a commit per message, 200-byte payloads
 * measured (bench/bench_spool.c, /proc/self/io write_bytes, WAL fsynced every 200 ms,
 * checkpoints included) 12.0 disk bytes per payload byte with 1 KiB pages against
 * 29.3 with 4 KiB. Since the intake journal (below) the database gets rows in
 * batches that fill pages, and the drain's per-row deletes became the cost that
 * counts: bench/bench_delete measured 2.0 us per deleted row with 1 KiB pages
 * against 1.1 with 4 KiB, and three alternating pairs of 400,000-record drains
 * (bench/pipeline.py --phases backlog) ran at 104-121k/s against 86-93k/s, the
 * forwarder at 1.55-1.77 CPU s against 2.10-3.26, for 4.4 instead of 4.0 disk bytes
 * per payload byte while Kafka was down (the merge's last, partial page is
 * rewritten by the next merge) and a smaller file (126.5 MB against 138.6 MB for
 * those 400,000 rows). Rows over ~4,060 bytes spill into overflow pages, which cost
 * what they carry. A spool created with another page size keeps it (in WAL mode it
 * is fixed for the file's life).
 *
 * secure_delete = FAST (Debian builds SQLite with SECURE_DELETE on): deleted rows
 * are zeroed inside pages that are written anyway, but freed pages are not
 * rewritten with zeros, which would double the drain's writes. Delivered rows
 * are in Kafka; the spool is not a secret store.
 *
 * Strings are not dictionary-encoded. The Kafka topic (a few distinct values) would
 * save ~10-20 bytes a row, but a single-row commit writes whole pages whatever the
 * row size, so the saving only shows in the checkpointed file and the drain, and it
 * adds a cache that must stay consistent across rollbacks and two connections. The
 * MQTT topic is per device (unbounded cardinality): a dictionary would touch a third
 * b-tree on every new device and need garbage collection. Lanes are encoded: a
 * bounded set, and the id is the high part of the rowid.
 *
 * Checkpoints. A checkpoint copies WAL pages into the database and fsyncs both
 * (synchronous=NORMAL), milliseconds on an SSD, tens on an SD card: not work for
 * the MQTT receive thread, whose every stall delays PUBACKs. Under `durability:
 * process`, spool_sync_wal runs a PASSIVE checkpoint (it waits for nobody) on a
 * connection of its own before its fsync, once per sync_interval, on the tick's
 * thread. The handles' own wal_autocheckpoint stays as a backstop at 4 x
 * SPOOL_CKPT_PAGES frames (64 MiB of 4 KiB pages, 16 MiB in a spool created with
 * 1 KiB pages), for when the ticks stop or cannot keep up; under `durability:
 * power` (no tick) it is SPOOL_CKPT_PAGES (16 MiB, or 4). A drain writes frames
 * faster than the tick's PASSIVE checkpoint lets the WAL restart, so the WAL grows
 * toward the backstop (28-45 MB after 1M-record drains) until the forwarder's own
 * connection checkpoints. Counted in bytes instead (4 x 4 MiB), that checkpoint ran
 * on the forwarder four times as often, and two alternating pairs of 1M-record
 * drains fell from 202-207k/s to 155k/s, the forwarder at 4.7-5.0 CPU s instead
 * of 3.4-3.5: the frames count stays. Measured
 * with inline checkpoints at ~60k commits/s: 16384 pages gave 24 ms worst-case
 * appends, 4096 gave 7.5 ms, 1000 gave 5.9 ms but four times the fsyncs; bytes
 * written hardly differ (12.0, 12.2, 12.6 per payload byte). journal_size_limit
 * truncates a WAL that grew past the limit (a long reader pinned it) when it
 * restarts, so the disk footprint comes back down.
 *
 * Damage. A file that is not a database, fails PRAGMA quick_check, or carries a
 * newer schema is reported (-EBADMSG) and left exactly as it was: until the open
 * has succeeded, the connection runs with SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, so
 * closing it cannot checkpoint a WAL into a damaged file or delete that WAL.
 *
 * Retention. max_bytes bounds the live pages, (page_count - freelist_count) x
 * page_size: both come from the database header, so the check costs two cheap
 * PRAGMA steps per append and no scan, and it counts what the disk really holds
 * (b-tree interiors, half-full leaves, overflow pages), not a sum of row sizes.
 * Over the limit, drop_oldest deletes SPOOL_EVICT_ROWS of the oldest rows of the
 * lowest-priority lane per statement (a rid range at the lane's left edge: one
 * seek, whole leaves freed) until the live size is SPOOL_EVICT_SLACK under the
 * limit, so eviction runs once per few hundred appends, not per append. max_age
 * is checked once a second (spool_retain) by one seek to each lane's oldest row.
 * Space is reclaimed by freelist reuse, not by vacuuming: the file's high-water
 * mark is max_bytes plus one eviction step, and the pages freed by the drain or by
 * eviction are what the next appends reuse. auto_vacuum would return the space to
 * the file system after a drain only to take it back at the next outage, and
 * incremental_vacuum moves pages (more flash writes); the operator sized the disk
 * for max_bytes anyway. The WAL adds SPOOL_WAL_LIMIT on top at rest (checkpointed
 * every sync_interval, cut back by journal_size_limit when it restarts), and up
 * to the backstop's 64 MiB during a drain (Checkpoints, above).
 *
 * The intake journal. A SQLite commit per QoS 1 message is the promise's price
 * but not its substance: what the PUBACK needs is the message's bytes in the page
 * cache (process) or on the disk (power) before it leaves. A commit costs ~17 system
 * calls here (10 fcntl locks of the WAL protocol, 5 pwrite, 2 pread), and the receive
 * thread paid about half its time there. So the ingest handle (spool_conf.journal)
 * appends each plain record as one checksummed frame (journal.h) to a file beside
 * the database, spool.db-intake, with a single pwrite (plus fdatasync under
 * `durability: power`: the same one flush a synchronous=FULL commit costs), and
 * spool_commit, which the flusher runs every INGEST_QOS0_BATCH_MS, moves all frames
 * into the database in one transaction. A record gets its sequence at the append,
 * in arrival order (spool_jseq_take: past anything the handle or the database ever
 * had), and its frame carries it, so a replay gives it the same one.
 *  - The live path (live.c). With Kafka reachable and nothing waiting, the frame is
 *    also offered to the forwarder, which produces it at once; while it does, the
 *    flusher only writes the frames to the file (spool_commit_or_hold) for up to
 *    SPOOL_HOLD_MS or SPOOL_HOLD_ROWS frames, and the merge then skips the records
 *    Kafka has acknowledged (live_skip): they never touch SQLite. Each merge raises
 *    meta.seq_floor to its newest sequence, so a skipped one is never reused.
 *    Measured (bench/run-pipeline.sh, QoS 1, 200-byte payloads, 64 partitions): the
 *    flusher's CPU 0.35 -> 0.09 s per 100k records, the forwarder's 0.7 -> 0.45, disk
 *    bytes per payload byte 3.8 -> 1.6.
 *  - The file mirrors the in-memory frames from offset 0 and is overwritten, not
 *    appended to forever: a commit ends a generation (the next frames start at
 *    offset 0 with gen + 1) and records that generation in meta.journal_gen in the
 *    same transaction as its rows. Truncating instead would cost a syscall per commit
 *    and leave a window where the rows are committed but the frames still look new.
 *  - At open, the valid prefix of the file (the first frame's generation, up to the
 *    first frame that is torn, damaged, or of another generation: stale frames of an
 *    older, longer generation lie behind the current one) is replayed into the
 *    database when its generation is newer than meta.journal_gen, and skipped when
 *    not (the crash came after the commit). A torn last frame was never
 *    acknowledged: its write had not returned.
 *  - A failed commit (disk full, I/O error) rolls back the transaction but not the
 *    frames: they stay in memory and in the file and the next commit retries them.
 *    Past SPOOL_JOURNAL_ROWS frames (or SPOOL_JOURNAL_BYTES) an append first commits;
 *    if that fails the append fails, and the message stays unacknowledged. So the
 *    journal stays small, and nothing acknowledged depends on SQLite accepting it.
 *  - Appends with route state or aggregates, and every other writer, take the
 *    database path; they first move the journal's frames into their transaction, so
 *    nothing overtakes an earlier record, and turn the live path off (live_block),
 *    so the forwarder claims them in order.
 *  - Retention: the exact size is known only inside the database, so the journal
 *    estimates it from the last commit plus twice its own bytes; near max_bytes it
 *    commits first and spool_room decides (evicts, or refuses under backpressure).
 *    Frames already acknowledged are never refused: a commit under backpressure may
 *    overshoot max_bytes by one journal's worth.
 *  - Flash: the journal's few kilobytes are rewritten in place, mostly before the
 *    kernel writes them back, and the database receives rows in batches that fill
 *    pages. Measured (bench/run-pipeline.sh, QoS 1, 200-byte payloads): 4.4 disk bytes
 *    per payload byte, against 13.8 with a commit per message.
 *
 * Threads: a handle is used by one thread at a time, except spool_sync_wal, which
 * touches only the WAL descriptor and the checkpoint connection, under its own
 * mutex, and may run on any thread (but not during spool_close). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sluice/buf.h"
#include "sluice/clock.h"
#include "sluice/err.h"
#include "sluice/journal.h"
#include "sluice/live.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/spool.h"

#ifndef SPOOL_PAGE_SIZE                          /* overridable for bench_spool only */
#define SPOOL_PAGE_SIZE    4096
#endif
#ifndef SPOOL_CKPT_PAGES
#define SPOOL_CKPT_PAGES   4096                  /* frames of WAL between checkpoints */
#endif
#define SPOOL_JOURNAL_ROWS  4000               /* frames before a merge is forced */
#define SPOOL_JOURNAL_BYTES (4u << 20)         /* ... or bytes of frames */
/* While the forwarder produces from the live queue (live.h), a merge waits this
 * long for Kafka's acknowledgements, so it can skip those records: */
#define SPOOL_HOLD_MS       200
#define SPOOL_HOLD_ROWS     (SPOOL_JOURNAL_ROWS / 2)  /* the flusher merges, well before
                                                     an append would have to */
#define SPOOL_JOURNAL_TRUNC (4u << 20)         /* a bigger journal file is cut back */
#ifndef SPOOL_SECURE_DELETE
#define SPOOL_SECURE_DELETE "FAST"
#endif
#ifndef SPOOL_CACHE_KIB
#define SPOOL_CACHE_KIB    2048     /* page cache per handle: a 1000-row claim batch of
                                       200-byte records touches ~75 pages; 2 MiB keeps
                                       those and the tree interior, and RSS small */
#endif
#define SPOOL_WAL_LIMIT    (16 * 1024 * 1024)    /* journal_size_limit, bytes */
#define SPOOL_BUSY_MS      5000                  /* the other writer holds a batch */
#define SPOOL_EVICT_ROWS   256      /* rows per eviction statement */
#define SPOOL_EVICT_SLACK(max) ((max) / 32 > 65536 ? (max) / 32 : 65536)  /* bytes
                                       under max_bytes that one eviction frees */
#define SPOOL_AGE_ROWS     512      /* rows per max_age statement */

/* Rows are keyed by rid = lane << 48 | seq: see "One b-tree" above. */
#define SPOOL_SEQ_BITS 48
#define SPOOL_SEQ_MASK ((INT64_C(1) << SPOOL_SEQ_BITS) - 1)
#define SPOOL_LANE_MAX 32767                     /* lane << 48 stays positive */
#define SEQ_MASK_SQL   "281474976710655"         /* SPOOL_SEQ_MASK */

/* Schema migrations: step i brings user_version from i to i + 1. Append only;
 * a released step is never edited. */
static const char *const spool_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE lanes ("
    "  id   INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE);"
    "CREATE TABLE meta ("
    "  k TEXT PRIMARY KEY,"
    "  v INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO meta (k, v) VALUES ('seq_floor', 0);"
    "CREATE TABLE records ("
    "  rid         INTEGER PRIMARY KEY,"  /* lane << 48 | seq; seq never reused */
    "  topic       TEXT NOT NULL,"
    "  key         BLOB,"                 /* NULL: no key */
    "  value       BLOB NOT NULL,"
    "  mqtt_topic  TEXT NOT NULL,"
    "  hdrs        BLOB NOT NULL,"
    "  event_ms    INTEGER NOT NULL,"
    "  ingest_ms   INTEGER NOT NULL,"
    "  route       INTEGER NOT NULL,"
    "  qos         INTEGER NOT NULL,"
    "  retained    INTEGER NOT NULL,"
    "  dead_letter INTEGER NOT NULL,"
    "  size        INTEGER NOT NULL);",  /* bytes, for stats */
    /* 1 -> 2: the dead-letter log (metadata only), bounded to SPOOL_DEAD_KEEP rows. */
    "CREATE TABLE dead_letters ("
    "  id          INTEGER PRIMARY KEY,"
    "  at_ms       INTEGER NOT NULL,"
    "  stage       TEXT NOT NULL,"
    "  error       TEXT NOT NULL,"
    "  mqtt_topic  TEXT NOT NULL,"
    "  kafka_topic TEXT NOT NULL,"
    "  size        INTEGER NOT NULL);",
    /* 2 -> 3: durable per-route state (deadband last values, aggregate accumulators),
     * written in the same transaction as the record it goes with. route names the
     * owner ("deadband/<route>"), key is the Kafka key. */
    "CREATE TABLE route_state ("
    "  route TEXT NOT NULL,"
    "  key   BLOB NOT NULL,"
    "  value BLOB NOT NULL,"
    "  PRIMARY KEY (route, key)) WITHOUT ROWID;",
    /* 3 -> 4: lanes with compact: latest_per_key: the newest row of each Kafka key,
     * so the append that supersedes it can delete it (see spool_compact). Only those
     * lanes' appends touch it; rows may point at rids already delivered (a no-op). */
    "CREATE TABLE lane_keys ("
    "  lane INTEGER NOT NULL,"
    "  key  BLOB NOT NULL,"
    "  rid  INTEGER NOT NULL,"
    "  PRIMARY KEY (lane, key)) WITHOUT ROWID;",
};
#define SPOOL_SCHEMA_VERSION ((int)(sizeof(spool_migrations) / sizeof(spool_migrations[0])))

/* The highest sequence ever handed out: the newest row of every lane (one seek
 * each, at the right edge of the lane's rid range) and the floor left by deletes. */
#define SQL_MAX_SEQ \
    "max((SELECT v FROM meta WHERE k = 'seq_floor'), coalesce((SELECT max(" \
    "(SELECT r.rid & " SEQ_MASK_SQL " FROM records r WHERE r.rid BETWEEN (l.id << 48)" \
    " AND ((l.id << 48) | " SEQ_MASK_SQL ") ORDER BY r.rid DESC LIMIT 1))" \
    " FROM lanes l), 0))"

static const char SQL_INSERT[] =
    "INSERT INTO records (rid, topic, key, value, mqtt_topic, hdrs, event_ms,"
    " ingest_ms, route, qos, retained, dead_letter, size) VALUES ("
    " (?1 << 48) | (" SQL_MAX_SEQ " + 1),"
    " ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
/* Inside a batch the sequence comes from spool.next_seq: SQL_MAX_SEQ's seeks once
 * per transaction instead of once per row (we hold the write lock: nobody else can
 * insert meanwhile). */
static const char SQL_INSERT_AT[] =
    "INSERT INTO records (rid, topic, key, value, mqtt_topic, hdrs, event_ms,"
    " ingest_ms, route, qos, retained, dead_letter, size) VALUES ("
    " ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
static const char SQL_CLAIM[] =
    "SELECT rid & " SEQ_MASK_SQL ", topic, key, value, mqtt_topic, hdrs, event_ms,"
    " ingest_ms, route, qos, retained, dead_letter FROM records"
    " WHERE rid > ?1 AND rid <= ?2 ORDER BY rid LIMIT ?3";
static const char SQL_DELETE[] = "DELETE FROM records WHERE rid BETWEEN ?1 AND ?2";
static const char SQL_MAXSEQ[] = "SELECT " SQL_MAX_SEQ;
static const char SQL_FLOOR[] =
    "UPDATE meta SET v = max(v, ?1) WHERE k = 'seq_floor'";
static const char SQL_LANE_GET[] = "SELECT id FROM lanes WHERE name = ?1";
static const char SQL_LANE_ADD[] = "INSERT OR IGNORE INTO lanes (name) VALUES (?1)";
static const char SQL_LANE_ALL[] = "SELECT id, name FROM lanes ORDER BY id";
static const char SQL_EVICT[] =
    "DELETE FROM records WHERE rid IN (SELECT rid FROM records WHERE rid BETWEEN ?1"
    " AND ?2 ORDER BY rid LIMIT ?3)";
static const char SQL_HEAD[] =
    "SELECT ingest_ms FROM records WHERE rid BETWEEN ?1 AND ?2 ORDER BY rid LIMIT 1";
static const char SQL_AGE_EVICT[] =
    "DELETE FROM records WHERE rid IN (SELECT rid FROM (SELECT rid, ingest_ms FROM"
    " records WHERE rid BETWEEN ?1 AND ?2 ORDER BY rid LIMIT ?3) WHERE ingest_ms < ?4)";
static const char SQL_DEAD_ADD[] =
    "INSERT INTO dead_letters (at_ms, stage, error, mqtt_topic, kafka_topic, size)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
static const char SQL_JOURNAL_GEN[] =
    "INSERT INTO meta (k, v) VALUES ('journal_gen', ?1)"
    " ON CONFLICT (k) DO UPDATE SET v = excluded.v";
static const char SQL_DEAD_TRIM[] = "DELETE FROM dead_letters WHERE id <= ?1";
static const char SQL_DEAD_ALL[] =
    "SELECT at_ms, stage, error, mqtt_topic, kafka_topic, size FROM dead_letters"
    " ORDER BY id";
/* Lanes outer, each lane's rid range inner: no sort of the records, one pass. */
static const char SQL_STATS[] =
    "SELECT l.name, count(r.rid), coalesce(sum(r.size), 0), coalesce(min(r.ingest_ms), 0)"
    " FROM lanes l LEFT JOIN records r ON r.rid BETWEEN (l.id << 48)"
    " AND ((l.id << 48) | " SEQ_MASK_SQL ") GROUP BY l.id ORDER BY l.name";

struct spool_lane {
    int64_t id;        /* lanes.id */
    char   *name;      /* owned */
};

/* The retention policy of one configured lane, and its drops not yet logged. */
struct spool_plane {
    char    *name;         /* owned */
    int      priority;
    int64_t  max_age_ms;   /* 0 = the spool's */
    uint64_t drops[2];     /* [0] spool full, [1] max_age: since the last log line */
    bool     compact;      /* compact: latest_per_key */
};

struct spool {
    sqlite3                *db;
    char                   *path;          /* owned copies */
    char                   *wal_path;
    char                   *dir_path;
    enum config_durability  durability;
    bool                    readonly;
    int                     cache_kib;

    sqlite3_stmt *st_insert, *st_insert_at, *st_begin, *st_commit, *st_rollback;
    sqlite3_stmt *st_claim, *st_delete, *st_maxseq, *st_floor;
    sqlite3_stmt *st_lane_get, *st_lane_add, *st_lane_all, *st_stats;

    struct spool_lane *lanes;     /* cache of the lanes table; cleared on rollback */
    size_t             nlanes, lanecap;
    size_t             last_lane;     /* where spool_delete found the last row */
    uint64_t          *dsorted;       /* spool_delete's sorted copy of its sequences */
    size_t             dcap;

    uint64_t               max_bytes;     /* retention policy (spool_set_policy) */
    int64_t                max_age_ms;
    enum config_when_full  when_full;
    struct spool_plane    *plan;          /* configured lanes, owned */
    size_t                 nplan;
    uint64_t               other_drops[2];/* lanes found only in the file */
    int64_t                drops_since;   /* mono ms of the first unlogged drop, 0 none */
    int64_t                page_size;
    sqlite3_stmt *st_pages, *st_free, *st_evict, *st_head, *st_age_evict;
    sqlite3_stmt *st_dead_add, *st_dead_trim;
    sqlite3_stmt *st_state_put, *st_state_del;   /* prepared on first use */
    sqlite3_stmt *st_key_evict, *st_key_put;     /* compaction, prepared on first use */

    size_t  pending;              /* rows in the open batch transaction */
    int64_t pending_since;        /* clock_mono_ms when the batch began */
    bool    in_batch;             /* we hold BEGIN IMMEDIATE */
    int64_t next_seq;             /* in a batch: the next sequence, 0 = not read yet */
    bool    room_checked;         /* a merge checked the room once for all its rows */

    /* The intake journal (spool_conf.journal; see "The intake journal" above). */
    int        jfd;               /* -1: no journal */
    char      *jpath;
    struct buf jbuf;              /* frames of generation jgen not yet committed */
    size_t     jrows;             /* frames in jbuf */
    size_t     jwritten;          /* bytes of jbuf in the file (at offset 0) */
    size_t     jmerged;           /* bytes of jbuf inserted into the open batch */
    size_t     jmerged_rows;      /* ... of which rows inserted (not skipped) */
    size_t     jmerged_frames;    /* frames of jbuf the open batch has dealt with */
    size_t     jskipped;          /* ... of which skipped (sluice_spool_skipped_total) */
    uint64_t  *jseqs;             /* the sequence of each frame in jbuf */
    bool      *jskip;             /* per frame: acknowledged already (live_skip) */
    size_t     jseqcap;
    uint64_t   jnext;             /* the next sequence a frame gets */
    bool       jnext_stale;       /* re-read the newest sequence before using jnext */
    uint64_t   seq_high;          /* the newest sequence this handle handed out */
    struct live *live;            /* borrowed, NULL: no live path (spool_conf.live) */
    bool       offered;           /* the last append went to the live queue */
    size_t     jfile;             /* high-water mark of the file's size */
    uint64_t   jgen;
    int64_t    jsince;            /* clock_mono_ms of jbuf's first frame */
    uint64_t   jused;             /* live bytes after the last merge (room estimate) */
    bool       jrelax;            /* merging accepted frames: no backpressure refusal */
    sqlite3_stmt *st_jgen;

    pthread_mutex_t wal_mu;       /* guards the wal_* fields (spool_sync_wal) */
    bool            wal_mu_ok;
    int             wal_fd;       /* O_RDONLY descriptor of the -wal file, or -1 */
    sqlite3        *ckpt_db;      /* spool_sync_wal's own connection: checkpoints */
    dev_t           wal_dev;
    ino_t           wal_ino;

#ifdef SLUICE_FAULT_SEAMS
    unsigned fault_nth;           /* commits until the injected failure, 0 = off */
    bool     fault_all;
    bool     fault_fired;         /* the commit hook vetoed the last commit */
#endif
};

/* ---- helpers ---------------------------------------------------------------- */

static void spool_plan_free(struct spool *sp);
static void spool_log_drops(struct spool *sp, bool force);
static int  spool_journal_open(struct spool *sp, struct err *err);
static void spool_journal_close(struct spool *sp);
static int  spool_journal_merge(struct spool *sp, struct err *err);
static void spool_journal_next(struct spool *sp);
static int  spool_used_bytes(struct spool *sp, uint64_t *used);
static int  spool_insert(struct spool *sp, struct record *rec, bool commit,
                         struct err *err);
static int  spool_insert_seq(struct spool *sp, struct record *rec, bool commit,
                             uint64_t seq, struct err *err);
static void spool_dead_log(struct spool *sp, const struct record *rec);

static int
spool_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW:
        return 0;
    case SQLITE_FULL:     return -ENOSPC;
    case SQLITE_NOMEM:    return -ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:   return -EBUSY;
    case SQLITE_READONLY: return -EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:     return -EACCES;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:   return -EBADMSG;
    case SQLITE_TOOBIG:   return -E2BIG;
    default:              return -EIO;     /* IOERR, CANTOPEN, PROTOCOL, ... */
    }
}

/* Fills err from the connection's last error; returns the mapped errno. */
static int
spool_fail(struct spool *sp, struct err *err, int rc, const char *what)
{
    int code = spool_errno(rc);

    if (code == 0)
        code = -EIO;
#ifdef SLUICE_FAULT_SEAMS
    if (sp->fault_fired) {
        sp->fault_fired = false;
        return err_set(err, -EIO, "spool %s: %s: injected commit fault", sp->path, what);
    }
#endif
    if (code == -ENOSPC)
        return err_set(err, code, "spool %s: %s: disk or spool full (%s)", sp->path,
                       what, sp->db ? sqlite3_errmsg(sp->db) : "no connection");
    return err_set(err, code, "spool %s: %s: %s", sp->path, what,
                   sp->db ? sqlite3_errmsg(sp->db) : "no connection");
}

/* Runs a statement that returns no rows (or whose rows we ignore); resets it. */
static int
spool_step_done(sqlite3_stmt *st)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Reads one integer from a one-row query (PRAGMAs); *v untouched on no row. */
static int
spool_query_int(sqlite3 *db, const char *sql, int64_t *v)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL)) != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static char *
spool_strdup_cat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);

    if (s != NULL) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

static int
spool_fsync_dir(const char *dir)
{
    int fd, rc = 0;

    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -errno;
    if (fsync(fd) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* mkdir -p with mode 0700 for the components we create (chmod: umask-proof). */
static int
spool_mkdirs(struct spool *sp, struct err *err)
{
    char *p = spool_strdup_cat(sp->dir_path, "");
    struct stat st;
    char *s;
    int rc = 0;

    if (p == NULL)
        return err_set(err, -ENOMEM, "spool %s: out of memory", sp->path);
    if (stat(p, &st) == 0)
        goto out;
    for (s = p + 1; ; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0700) == 0) {
            if (chmod(p, 0700) < 0) {
                rc = err_set(err, -errno, "spool %s: chmod %s: %s", sp->path, p,
                             strerror(errno));
                goto out;
            }
        } else if (errno != EEXIST) {
            rc = err_set(err, -errno, "spool %s: cannot create directory %s: %s",
                         sp->path, p, strerror(errno));
            goto out;
        }
        *s = c;
        if (c == '\0')
            break;
    }
out:
    free(p);
    return rc;
}

/* Creates the database file ourselves so its mode is 0600 whatever the umask.
 * SQLite gives the -wal and -shm files the mode of the database file. */
static int
spool_create_file(struct spool *sp, struct err *err)
{
    int fd, rc;

    if ((rc = spool_mkdirs(sp, err)) < 0)
        return rc;
    fd = open(sp->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return 0;
        return err_set(err, -errno, "spool %s: cannot create: %s", sp->path,
                       strerror(errno));
    }
    if (fchmod(fd, 0600) < 0) {
        rc = err_set(err, -errno, "spool %s: chmod: %s", sp->path, strerror(errno));
        close(fd);
        return rc;
    }
    close(fd);
    /* An intake journal without its database (the operator removed spool.db) holds
     * rows of the old spool: a new spool must not replay them. */
    char *journal = spool_strdup_cat(sp->path, "-intake");
    if (journal != NULL)
        (void)unlink(journal);
    free(journal);
    /* The new name must survive a power cut as surely as the rows inside. */
    if ((rc = spool_fsync_dir(sp->dir_path)) < 0)
        return err_set(err, rc, "spool %s: fsync directory: %s", sp->path, strerror(-rc));
    return 0;
}

static int
spool_prepare(struct spool *sp, sqlite3_stmt **st, const char *sql, struct err *err)
{
    int rc = sqlite3_prepare_v3(sp->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);

    if (rc != SQLITE_OK)
        return spool_fail(sp, err, rc, "prepare");
    return 0;
}

/* ---- lanes ------------------------------------------------------------------ */

static void
spool_lanes_forget(struct spool *sp)
{
    for (size_t i = 0; i < sp->nlanes; i++)
        free(sp->lanes[i].name);
    sp->nlanes = 0;
    sp->last_lane = 0;
}

static int
spool_lanes_add(struct spool *sp, int64_t id, const char *name)
{
    struct spool_lane *l;

    if (sp->nlanes == sp->lanecap) {
        size_t cap = sp->lanecap ? sp->lanecap * 2 : 8;
        if ((l = realloc(sp->lanes, cap * sizeof(*l))) == NULL)
            return -ENOMEM;
        sp->lanes = l;
        sp->lanecap = cap;
    }
    if ((sp->lanes[sp->nlanes].name = strdup(name)) == NULL)
        return -ENOMEM;
    sp->lanes[sp->nlanes++].id = id;
    return 0;
}

/* Replaces the cache with the whole lanes table (spool_delete must try them all). */
static int
spool_lanes_load(struct spool *sp, struct err *err)
{
    int rc;

    spool_lanes_forget(sp);
    while ((rc = sqlite3_step(sp->st_lane_all)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(sp->st_lane_all, 1);
        if (spool_lanes_add(sp, sqlite3_column_int64(sp->st_lane_all, 0),
                            name ? name : "") < 0) {
            sqlite3_reset(sp->st_lane_all);
            spool_lanes_forget(sp);
            return err_set(err, -ENOMEM, "spool %s: out of memory", sp->path);
        }
    }
    sqlite3_reset(sp->st_lane_all);
    if (rc != SQLITE_DONE) {
        spool_lanes_forget(sp);
        return spool_fail(sp, err, rc, "load lanes");
    }
    return 0;
}

/* Finds the id of lane name; with create, adds it to the lanes table (inside the
 * open batch, if any: a rollback clears the cache with it). Returns 1 found,
 * 0 absent (only without create), or -errno. */
static int
spool_lane_id(struct spool *sp, const char *name, bool create, int64_t *id,
              struct err *err)
{
    int rc;

    for (size_t i = 0; i < sp->nlanes; i++) {
        if (strcmp(sp->lanes[i].name, name) == 0) {
            *id = sp->lanes[i].id;
            return 1;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        sqlite3_bind_text(sp->st_lane_get, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(sp->st_lane_get);
        if (rc == SQLITE_ROW) {
            *id = sqlite3_column_int64(sp->st_lane_get, 0);
            sqlite3_reset(sp->st_lane_get);
            if (*id < 1 || *id > SPOOL_LANE_MAX)
                return err_set(err, -EBADMSG, "spool %s: lane %s has id %lld, beyond %d",
                               sp->path, name, (long long)*id, SPOOL_LANE_MAX);
            (void)spool_lanes_add(sp, *id, name);     /* uncached is still correct */
            return 1;
        }
        sqlite3_reset(sp->st_lane_get);
        if (rc != SQLITE_DONE)
            return spool_fail(sp, err, rc, "lane lookup");
        if (!create)
            return 0;
        if (pass == 1)
            break;
        sqlite3_bind_text(sp->st_lane_add, 1, name, -1, SQLITE_STATIC);
        if ((rc = spool_step_done(sp->st_lane_add)) != SQLITE_OK)
            return spool_fail(sp, err, rc, "add lane");
    }
    return err_set(err, -EIO, "spool %s: lane %s vanished after insert", sp->path, name);
}

/* ---- open / close ----------------------------------------------------------- */

#ifdef SLUICE_FAULT_SEAMS
static int
spool_commit_hook(void *arg)
{
    struct spool *sp = arg;

    if (sp->fault_all || (sp->fault_nth > 0 && --sp->fault_nth == 0)) {
        sp->fault_fired = true;
        return 1;           /* turns this COMMIT into a ROLLBACK */
    }
    return 0;
}
#endif

static int
spool_migrate(struct spool *sp, struct err *err)
{
    int64_t v = 0;
    int rc;

    if ((rc = sqlite3_exec(sp->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK)
        return spool_fail(sp, err, rc, "migrate");
    /* Another handle may have migrated while we waited for the lock. */
    if ((rc = spool_query_int(sp->db, "PRAGMA user_version", &v)) != SQLITE_OK)
        goto fail;
    for (; v < SPOOL_SCHEMA_VERSION; v++) {
        if ((rc = sqlite3_exec(sp->db, spool_migrations[v], NULL, NULL, NULL)) != SQLITE_OK)
            goto fail;
    }
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SPOOL_SCHEMA_VERSION);
    if ((rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL)) != SQLITE_OK)
        goto fail;
    if ((rc = sqlite3_exec(sp->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
        goto fail;
    return 0;
fail:
    rc = spool_fail(sp, err, rc, "migrate");
    sqlite3_exec(sp->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int
spool_check(struct spool *sp, struct err *err)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = sqlite3_prepare_v2(sp->db, "PRAGMA quick_check", -1, &st, NULL)) != SQLITE_OK)
        return spool_fail(sp, err, rc, "integrity check");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *msg = (const char *)sqlite3_column_text(st, 0);
        if (msg == NULL || strcmp(msg, "ok") != 0) {
            rc = err_set(err, -EBADMSG, "spool %s: damaged (integrity check: %s); left "
                         "untouched, move it aside to start an empty spool", sp->path,
                         msg ? msg : "no result");
            sqlite3_finalize(st);
            for (char *c = err ? err->msg : NULL; c && *c; c++)
                if (*c == '\n')
                    *c = ' ';     /* quick_check lists problems one per line */
            return rc;
        }
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK) {
        rc = err_set(err, spool_errno(rc) ? spool_errno(rc) : -EIO, "spool %s: damaged "
                     "(integrity check: %s); left untouched, move it aside to start an "
                     "empty spool", sp->path, sqlite3_errmsg(sp->db));
        sqlite3_finalize(st);
        return rc;
    }
    sqlite3_finalize(st);
    return 0;
}

/* The WAL descriptor for spool_sync_wal; called with wal_mu held. */
static int
spool_wal_reopen(struct spool *sp)
{
    struct stat st;
    int fd;

    if (stat(sp->wal_path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;    /* no WAL: nothing un-synced */
    if (sp->wal_fd >= 0 && st.st_dev == sp->wal_dev && st.st_ino == sp->wal_ino)
        return 0;
    if (sp->wal_fd >= 0) {
        close(sp->wal_fd);
        sp->wal_fd = -1;
    }
    /* fsync(2) needs no write access on Linux: O_RDONLY says we never write. */
    if ((fd = open(sp->wal_path, O_RDONLY | O_CLOEXEC)) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(fd, &st) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    if ((st.st_mode & 077) != 0)
        (void)fchmod(fd, st.st_mode & 0700);     /* a lax umask must not leak rows */
    sp->wal_fd = fd;
    sp->wal_dev = st.st_dev;
    sp->wal_ino = st.st_ino;
    /* A new WAL: make its directory entry durable too. */
    return spool_fsync_dir(sp->dir_path);
}

static int
spool_configure(struct spool *sp, struct err *err)
{
    int64_t pages = -1;
    char sql[256];
    int rc;

    if ((rc = spool_query_int(sp->db, "PRAGMA page_count", &pages)) != SQLITE_OK)
        return spool_fail(sp, err, rc, "open");
    if (pages == 0) {
        /* Only a new file takes a page size; in WAL mode it is fixed forever. */
        snprintf(sql, sizeof(sql), "PRAGMA page_size = %d", SPOOL_PAGE_SIZE);
        if ((rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL)) != SQLITE_OK)
            return spool_fail(sp, err, rc, "page size");
    }
    sqlite3_stmt *st;
    if ((rc = sqlite3_prepare_v2(sp->db, "PRAGMA journal_mode = WAL", -1, &st, NULL))
        != SQLITE_OK)
        return spool_fail(sp, err, rc, "journal mode");
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = spool_fail(sp, err, rc, "journal mode");
        sqlite3_finalize(st);
        return rc;
    }
    if (sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        rc = err_set(err, -EIO, "spool %s: cannot switch to WAL mode (journal_mode %s)",
                     sp->path, sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        return rc;
    }
    sqlite3_finalize(st);
    snprintf(sql, sizeof(sql),
             "PRAGMA synchronous = %s; PRAGMA wal_autocheckpoint = %d;"
             " PRAGMA journal_size_limit = %d; PRAGMA secure_delete = %s;"
             " PRAGMA cache_size = -%d",
             sp->durability == DURABILITY_POWER ? "FULL" : "NORMAL",
             sp->durability == DURABILITY_POWER ? SPOOL_CKPT_PAGES : 4 * SPOOL_CKPT_PAGES,
             SPOOL_WAL_LIMIT, SPOOL_SECURE_DELETE, sp->cache_kib);
    if ((rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL)) != SQLITE_OK)
        return spool_fail(sp, err, rc, "configure");
    return 0;
}

int
spool_open(struct spool **out, const struct spool_conf *conf, struct err *err)
{
    struct spool *sp;
    int64_t version = 0;
    const char *slash;
    int rc, flags;

    *out = NULL;
    if (conf == NULL || conf->path == NULL || conf->path[0] == '\0')
        return err_set(err, -EINVAL, "spool: no path configured");
    if ((sp = calloc(1, sizeof(*sp))) == NULL)
        return err_set(err, -ENOMEM, "spool: out of memory");
    sp->wal_fd = -1;
    sp->jfd = -1;
    sp->jnext_stale = true;
    buf_init(&sp->jbuf);
    sp->durability = conf->durability;
    sp->cache_kib = conf->cache_kib > 0 ? conf->cache_kib : SPOOL_CACHE_KIB;
    sp->readonly = conf->readonly;
    if (pthread_mutex_init(&sp->wal_mu, NULL) == 0)
        sp->wal_mu_ok = true;
    sp->path = spool_strdup_cat(conf->path, "");
    sp->wal_path = spool_strdup_cat(conf->path, "-wal");
    if ((slash = strrchr(conf->path, '/')) == NULL)
        sp->dir_path = spool_strdup_cat(".", "");
    else if (slash == conf->path)
        sp->dir_path = spool_strdup_cat("/", "");
    else if ((sp->dir_path = spool_strdup_cat(conf->path, "")) != NULL)
        sp->dir_path[slash - conf->path] = '\0';
    if (sp->path == NULL || sp->wal_path == NULL || sp->dir_path == NULL ||
        !sp->wal_mu_ok) {
        rc = err_set(err, -ENOMEM, "spool: out of memory");
        goto fail;
    }

    if (!sp->readonly) {
        if ((rc = spool_create_file(sp, err)) < 0)
            goto fail;
        flags = SQLITE_OPEN_READWRITE;
    } else {
        struct stat st;
        if (stat(sp->path, &st) < 0) {
            rc = err_set(err, -errno, "spool %s: %s", sp->path, strerror(errno));
            goto fail;
        }
        flags = SQLITE_OPEN_READONLY;
    }
    /* NOMUTEX: a handle is used by one thread at a time (spool.h). */
    rc = sqlite3_open_v2(sp->path, &sp->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int e = sp->db ? sqlite3_system_errno(sp->db) : 0;
        rc = err_set(err, e > 0 ? -e : spool_errno(rc) ? spool_errno(rc) : -EIO,
                     "spool %s: cannot open: %s", sp->path,
                     sp->db ? sqlite3_errmsg(sp->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(sp->db, 1);
    /* Until the file has proven sound, closing must not checkpoint into it. */
    sqlite3_db_config(sp->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    sqlite3_busy_timeout(sp->db, SPOOL_BUSY_MS);

    if ((rc = spool_query_int(sp->db, "PRAGMA user_version", &version)) != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_NOTADB)
            rc = err_set(err, -EBADMSG, "spool %s: not a sluice spool: %s", sp->path,
                         sqlite3_errmsg(sp->db));
        else if ((rc & 0xff) == SQLITE_CORRUPT)
            rc = err_set(err, -EBADMSG, "spool %s: damaged: %s; left untouched, move it "
                         "aside to start an empty spool", sp->path, sqlite3_errmsg(sp->db));
        else
            rc = spool_fail(sp, err, rc, "open");
        goto fail;
    }
    if (version > SPOOL_SCHEMA_VERSION) {
        rc = err_set(err, -EBADMSG, "spool %s: schema version %lld is newer than this "
                     "sluice (%d)", sp->path, (long long)version, SPOOL_SCHEMA_VERSION);
        goto fail;
    }
    if (sp->readonly) {
        /* Version 1 lacks only the dead-letter log: stats still read it. */
        if (version < 1) {
            rc = err_set(err, -EBADMSG, "spool %s: schema version %lld needs a migration "
                         "a read-only open cannot do (run the bridge once)", sp->path,
                         (long long)version);
            goto fail;
        }
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%d", sp->cache_kib);
        if ((rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL)) != SQLITE_OK) {
            rc = spool_fail(sp, err, rc, "configure");
            goto fail;
        }
    } else {
        /* quick_check reads every page: O(file), seconds for a full 2 GiB spool on
         * slow flash, once per writable open. Read-only stats skip it. */
        if ((rc = spool_check(sp, err)) < 0)
            goto fail;
        if ((rc = spool_configure(sp, err)) < 0)
            goto fail;
        if (version < SPOOL_SCHEMA_VERSION && (rc = spool_migrate(sp, err)) < 0)
            goto fail;
    }

    if ((rc = spool_prepare(sp, &sp->st_lane_get, SQL_LANE_GET, err)) < 0 ||
        (rc = spool_prepare(sp, &sp->st_claim, SQL_CLAIM, err)) < 0 ||
        (rc = spool_prepare(sp, &sp->st_lane_all, SQL_LANE_ALL, err)) < 0 ||
        (rc = spool_prepare(sp, &sp->st_stats, SQL_STATS, err)) < 0)
        goto fail;
    if (!sp->readonly) {
        if ((rc = spool_prepare(sp, &sp->st_insert, SQL_INSERT, err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_insert_at, SQL_INSERT_AT, err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_begin, "BEGIN IMMEDIATE", err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_commit, "COMMIT", err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_rollback, "ROLLBACK", err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_delete, SQL_DELETE, err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_maxseq, SQL_MAXSEQ, err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_floor, SQL_FLOOR, err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_lane_add, SQL_LANE_ADD, err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_pages, "PRAGMA page_count", err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_free, "PRAGMA freelist_count", err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_evict, SQL_EVICT, err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_head, SQL_HEAD, err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_age_evict, SQL_AGE_EVICT, err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_dead_add, SQL_DEAD_ADD, err)) < 0 ||
            (rc = spool_prepare(sp, &sp->st_dead_trim, SQL_DEAD_TRIM, err)) < 0)
            goto fail;
        if ((rc = spool_query_int(sp->db, "PRAGMA page_size", &sp->page_size)) !=
            SQLITE_OK) {
            rc = spool_fail(sp, err, rc, "page size");
            goto fail;
        }
        if (conf->policy != NULL && spool_set_policy(sp, conf->policy) < 0) {
            rc = err_set(err, -ENOMEM, "spool: out of memory");
            goto fail;
        }
#ifdef SLUICE_FAULT_SEAMS
        /* Test builds only: a disk that fills at this many pages (disk_full test). */
        const char *fmp = getenv("SLUICE_FAULT_MAX_PAGES");
        if (fmp != NULL && *fmp != '\0')
            (void)spool_fault_max_pages(sp, (uint32_t)strtoul(fmp, NULL, 10));
#endif
        if (sp->durability == DURABILITY_PROCESS) {
            pthread_mutex_lock(&sp->wal_mu);
            rc = spool_wal_reopen(sp);
            pthread_mutex_unlock(&sp->wal_mu);
            if (rc < 0) {
                rc = err_set(err, rc, "spool %s: open WAL: %s", sp->path, strerror(-rc));
                goto fail;
            }
        }
        /* The -shm carries the WAL index (page numbers, not rows), but keep it
         * private all the same. */
        char *shm = spool_strdup_cat(sp->path, "-shm");
        struct stat st;
        if (shm != NULL && stat(shm, &st) == 0 && (st.st_mode & 077) != 0)
            (void)chmod(shm, st.st_mode & 0700);
        free(shm);
    }
#ifdef SLUICE_FAULT_SEAMS
    sqlite3_commit_hook(sp->db, spool_commit_hook, sp);
#endif
    if (conf->journal && !sp->readonly && (rc = spool_journal_open(sp, err)) < 0)
        goto fail;
    if (sp->jfd >= 0)
        sp->live = conf->live;      /* after the replay: nothing of it is in flight */
    sqlite3_db_config(sp->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, NULL);
    *out = sp;
    return 0;
fail:
    spool_close(sp);
    return rc;
}

/* Counts the rows a damaged file still yields, without changing a byte of it: a
 * read-only connection that never checkpoints. A WAL database opened read-only may
 * still create the -shm index beside it; that file holds no rows. -1 when the file
 * does not answer (not a database, or the records b-tree is broken). */
static int64_t
spool_salvage_rows(const char *path)
{
    sqlite3 *db = NULL;
    int64_t n = -1;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) ==
        SQLITE_OK) {
        sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        sqlite3_busy_timeout(db, SPOOL_BUSY_MS);
        if (spool_query_int(db, "SELECT count(*) FROM records", &n) != SQLITE_OK)
            n = -1;
    }
    sqlite3_close(db);
    return n;
}

int
spool_quarantine(const char *path, struct spool_damage *out, struct err *err)
{
    static const char *const sfx[] = { "", "-wal", "-shm", "-intake" };
    char stamp[32], from[sizeof(out->aside) + 8], to[sizeof(out->aside) + 8];
    struct stat st;
    struct tm tm;
    time_t now = time(NULL);
    int n;

    memset(out, 0, sizeof(*out));
    out->rows = -1;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    /* Never over an earlier quarantine (two in the same second): add -1, -2, ... */
    for (int i = 0;; i++) {
        if (i == 100)
            return err_set(err, -EEXIST, "spool %s: quarantine: too many %s.corrupt-%s*",
                           path, path, stamp);
        n = i == 0 ? snprintf(out->aside, sizeof(out->aside), "%s.corrupt-%s", path, stamp)
                   : snprintf(out->aside, sizeof(out->aside), "%s.corrupt-%s-%d", path,
                              stamp, i);
        if (n < 0 || (size_t)n >= sizeof(out->aside))
            return err_set(err, -ENAMETOOLONG, "spool %s: quarantine: path too long", path);
        bool taken = false;
        for (size_t k = 0; k < sizeof(sfx) / sizeof(sfx[0]); k++) {
            snprintf(to, sizeof(to), "%s%s", out->aside, sfx[k]);
            if (lstat(to, &st) == 0 || errno != ENOENT)
                taken = true;
        }
        if (!taken)
            break;
    }
    if (stat(path, &st) < 0)
        return err_set(err, -errno, "spool %s: quarantine: %s", path, strerror(errno));
    out->bytes = (int64_t)st.st_size;
    /* The main file first: once it is gone, a fresh spool cannot pair with the old
     * WAL (SQLite would replay a WAL into the wrong database), so the WAL and the
     * index must follow it or the start fails. */
    for (size_t k = 0; k < sizeof(sfx) / sizeof(sfx[0]); k++) {
        snprintf(from, sizeof(from), "%s%s", path, sfx[k]);
        snprintf(to, sizeof(to), "%s%s", out->aside, sfx[k]);
        if (k == 1 && stat(from, &st) == 0)
            out->wal_bytes = (int64_t)st.st_size;
        if (rename(from, to) < 0 && !(k > 0 && errno == ENOENT))
            return err_set(err, -errno, "spool %s: quarantine: rename %s to %s: %s", path,
                           from, to, strerror(errno));
    }
    out->rows = spool_salvage_rows(out->aside);
    return 0;
}

void
spool_close(struct spool *sp)
{
    if (sp == NULL)
        return;
    spool_journal_close(sp);
    if (sp->db != NULL && sp->in_batch)
        sqlite3_step(sp->st_rollback);     /* an uncommitted batch is not a promise */
    spool_log_drops(sp, true);
    sqlite3_stmt *sts[] = {sp->st_insert, sp->st_insert_at, sp->st_begin, sp->st_commit, sp->st_rollback,
                           sp->st_claim, sp->st_delete, sp->st_maxseq, sp->st_floor,
                           sp->st_lane_get, sp->st_lane_add, sp->st_lane_all,
                           sp->st_stats, sp->st_pages, sp->st_free, sp->st_evict,
                           sp->st_head, sp->st_age_evict, sp->st_dead_add,
                           sp->st_dead_trim, sp->st_state_put, sp->st_state_del,
                           sp->st_key_evict, sp->st_key_put, sp->st_jgen};
    for (size_t i = 0; i < sizeof(sts) / sizeof(sts[0]); i++)
        sqlite3_finalize(sts[i]);
    /* The last connection to close checkpoints and deletes the WAL (unless the
     * open failed: NO_CKPT_ON_CLOSE is still set then). */
    sqlite3_close_v2(sp->db);
    sqlite3_close_v2(sp->ckpt_db);
    if (sp->wal_fd >= 0)
        close(sp->wal_fd);
    if (sp->wal_mu_ok)
        pthread_mutex_destroy(&sp->wal_mu);
    spool_lanes_forget(sp);
    spool_plan_free(sp);
    free(sp->lanes);
    free(sp->path);
    free(sp->wal_path);
    free(sp->dir_path);
    free(sp->jpath);
    free(sp->dsorted);
    free(sp->jseqs);
    free(sp->jskip);
    buf_fini(&sp->jbuf);
    free(sp);
}

/* ---- append ----------------------------------------------------------------- */

/* Ends the open batch after a failure: rolls back what SQLite has not already
 * rolled back, and forgets lanes that may have been added inside it. */
static void
spool_abort(struct spool *sp)
{
    if (!sqlite3_get_autocommit(sp->db))
        sqlite3_step(sp->st_rollback);
    sqlite3_reset(sp->st_rollback);
    sp->in_batch = false;
    sp->pending = 0;
    sp->next_seq = 0;
    sp->jmerged = 0;            /* the journal's frames are still in jbuf */
    sp->jmerged_rows = sp->jmerged_frames = sp->jskipped = 0;
    spool_lanes_forget(sp);
}

static void
spool_note_lost(struct err *err, size_t lost)
{
    size_t len;

    if (err == NULL || lost == 0)
        return;
    len = strnlen(err->msg, sizeof(err->msg) - 1);
    snprintf(err->msg + len, sizeof(err->msg) - len,
             " (%zu row%s of the open batch rolled back)", lost, lost == 1 ? "" : "s");
}

static int
spool_batch_fail(struct spool *sp, struct err *err, int rc, const char *what, size_t lost)
{
    /* Rows that came from the journal are not lost: they stay in it. */
    lost -= lost < sp->jmerged_rows ? lost : sp->jmerged_rows;
    rc = spool_fail(sp, err, rc, what);
    spool_abort(sp);
    spool_note_lost(err, lost);
    return rc;
}

/* Opens the append batch (a write transaction) unless one is open: 1 if it opened
 * one, 0 if one was open already, or a negative errno. */
static int
spool_batch_begin(struct spool *sp, struct err *err)
{
    int rc;

    if (sp->in_batch)
        return 0;
    if ((rc = sqlite3_step(sp->st_begin)) != SQLITE_DONE) {
        sqlite3_reset(sp->st_begin);
        return spool_batch_fail(sp, err, rc, "begin batch", 0);
    }
    sqlite3_reset(sp->st_begin);
    sp->in_batch = true;
    sp->pending_since = clock_mono_ms();
    return 1;
}

/* ---- retention -------------------------------------------------------------- */

static void
spool_plan_free(struct spool *sp)
{
    for (size_t i = 0; i < sp->nplan; i++)
        free(sp->plan[i].name);
    free(sp->plan);
    sp->plan = NULL;
    sp->nplan = 0;
}

int
spool_set_policy(struct spool *sp, const struct config *cfg)
{
    struct spool_plane *plan = NULL;
    size_t n = cfg != NULL ? cfg->nlanes : 0;

    if (n > 0 && (plan = calloc(n, sizeof(*plan))) == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if ((plan[i].name = strdup(cfg->lanes[i].name)) == NULL) {
            while (i-- > 0)
                free(plan[i].name);
            free(plan);
            return -ENOMEM;
        }
        plan[i].priority = cfg->lanes[i].priority;
        plan[i].max_age_ms = cfg->lanes[i].max_age_ms;
        plan[i].compact = cfg->lanes[i].compact == COMPACT_LATEST_PER_KEY;
        /* Unlogged drops carry over to a lane of the same name. */
        for (size_t j = 0; j < sp->nplan; j++) {
            if (strcmp(sp->plan[j].name, plan[i].name) == 0) {
                plan[i].drops[0] = sp->plan[j].drops[0];
                plan[i].drops[1] = sp->plan[j].drops[1];
            }
        }
    }
    spool_plan_free(sp);
    sp->plan = plan;
    sp->nplan = n;
    sp->max_bytes = cfg != NULL ? cfg->spool.max_bytes : 0;
    sp->max_age_ms = cfg != NULL ? cfg->spool.max_age_ms : 0;
    sp->when_full = cfg != NULL ? cfg->spool.when_full : WHEN_FULL_DROP_OLDEST;
    return 0;
}

static struct spool_plane *
spool_plan_find(struct spool *sp, const char *name)
{
    for (size_t i = 0; i < sp->nplan; i++)
        if (strcmp(sp->plan[i].name, name) == 0)
            return &sp->plan[i];
    return NULL;
}

/* Counts n rows of lane name dropped for reason (0 spool full, 1 max_age). */
static void
spool_count_drops(struct spool *sp, const char *name, int reason, uint64_t n)
{
    struct spool_plane *pl = spool_plan_find(sp, name);

    if (n == 0)
        return;
    metrics_add(&metrics.dropped[reason == 0 ? DROP_SPOOL_FULL : DROP_MAX_AGE], n);
    if (pl != NULL)
        pl->drops[reason] += n;
    else
        sp->other_drops[reason] += n;
    if (sp->drops_since == 0)
        sp->drops_since = clock_mono_ms();
}

/* One line per lane and reason for the drops since the last lines: when
 * SPOOL_DROP_LOG_MS have passed since the first of them, or with force. */
static void
spool_log_drops(struct spool *sp, bool force)
{
    static const char *const why[2] = { "spool full", "max_age" };
    int64_t now = clock_mono_ms(), secs;

    if (sp->drops_since == 0 || (!force && now - sp->drops_since < SPOOL_DROP_LOG_MS))
        return;
    secs = (now - sp->drops_since + 999) / 1000;
    if (secs < 1)
        secs = 1;
    for (int r = 0; r < 2; r++) {
        for (size_t i = 0; i < sp->nplan; i++) {
            if (sp->plan[i].drops[r] > 0)
                log_warn("spool", "dropped %" PRIu64 " records (%s, lane %s) in the last "
                         "%" PRId64 " s", sp->plan[i].drops[r], why[r], sp->plan[i].name,
                         secs);
            sp->plan[i].drops[r] = 0;
        }
        if (sp->other_drops[r] > 0)
            log_warn("spool", "dropped %" PRIu64 " records (%s, lanes no longer "
                     "configured) in the last %" PRId64 " s", sp->other_drops[r], why[r],
                     secs);
        sp->other_drops[r] = 0;
    }
    sp->drops_since = 0;
}

/* The live size: pages in use, freelist excluded. */
static int
spool_used_bytes(struct spool *sp, uint64_t *used)
{
    int64_t pages = 0, freep = 0;
    int rc;

    if ((rc = sqlite3_step(sp->st_pages)) == SQLITE_ROW)
        pages = sqlite3_column_int64(sp->st_pages, 0);
    sqlite3_reset(sp->st_pages);
    if (rc != SQLITE_ROW)
        return rc;
    if ((rc = sqlite3_step(sp->st_free)) == SQLITE_ROW)
        freep = sqlite3_column_int64(sp->st_free, 0);
    sqlite3_reset(sp->st_free);
    if (rc != SQLITE_ROW)
        return rc;
    *used = (uint64_t)(pages > freep ? pages - freep : 0) * (uint64_t)sp->page_size;
    return SQLITE_OK;
}

/* Lane eviction rank: configured lanes by priority, highest number first; lanes
 * only the file knows go before all of them. */
static int
spool_evict_rank(struct spool *sp, size_t i)
{
    struct spool_plane *pl = spool_plan_find(sp, sp->lanes[i].name);

    return pl != NULL ? pl->priority : INT_MAX;
}

/* drop_oldest, inside the caller's write transaction: evicts the oldest rows of the
 * lowest-priority non-empty lane until the live size is SPOOL_EVICT_SLACK under
 * max_bytes (or the spool is empty). A SQLite code. */
static int
spool_evict(struct spool *sp, uint64_t used)
{
    uint64_t slack = SPOOL_EVICT_SLACK(sp->max_bytes);
    uint64_t low = sp->max_bytes > slack ? sp->max_bytes - slack : 0;
    bool *done;
    int rc = SQLITE_OK;

    if ((rc = spool_lanes_load(sp, NULL)) < 0)
        return SQLITE_NOMEM;
    if (sp->nlanes == 0)
        return SQLITE_OK;
    if ((done = calloc(sp->nlanes, sizeof(*done))) == NULL)
        return SQLITE_NOMEM;
    while (used > low) {
        size_t pick = SIZE_MAX;
        for (size_t i = 0; i < sp->nlanes; i++) {
            if (!done[i] && (pick == SIZE_MAX ||
                             spool_evict_rank(sp, i) > spool_evict_rank(sp, pick)))
                pick = i;
        }
        if (pick == SIZE_MAX)
            break;                       /* empty: a record larger than max_bytes */
        int64_t base = sp->lanes[pick].id << SPOOL_SEQ_BITS;
        sqlite3_bind_int64(sp->st_evict, 1, base);
        sqlite3_bind_int64(sp->st_evict, 2, base | SPOOL_SEQ_MASK);
        sqlite3_bind_int(sp->st_evict, 3, SPOOL_EVICT_ROWS);
        if ((rc = spool_step_done(sp->st_evict)) != SQLITE_OK)
            break;
        int n = sqlite3_changes(sp->db);
        spool_count_drops(sp, sp->lanes[pick].name, 0, (uint64_t)n);
        if (n < SPOOL_EVICT_ROWS)
            done[pick] = true;
        if ((rc = spool_used_bytes(sp, &used)) != SQLITE_OK)
            break;
    }
    free(done);
    return rc;
}

/* Before an append: 0 when there is room (after evicting, under drop_oldest), or
 * -ENOSPC under backpressure (an open batch stays open), or another -errno. */
static int
spool_room(struct spool *sp, struct err *err)
{
    uint64_t used = 0;
    bool own;
    int rc;

    if (sp->max_bytes == 0)
        return 0;
    if ((rc = spool_used_bytes(sp, &used)) != SQLITE_OK)
        return spool_fail(sp, err, rc, "size");
    if (used < sp->max_bytes)
        return 0;
    if (sp->when_full == WHEN_FULL_BACKPRESSURE && !sp->jrelax)
        return err_set(err, -ENOSPC, "spool %s: full (%" PRIu64 " of %" PRIu64 " bytes; "
                       "when_full: backpressure)", sp->path, used, sp->max_bytes);
    own = !sp->in_batch;
    if (own && (rc = sqlite3_step(sp->st_begin)) != SQLITE_DONE) {
        sqlite3_reset(sp->st_begin);
        return spool_fail(sp, err, rc, "evict");
    }
    sqlite3_reset(sp->st_begin);
    if ((rc = spool_evict(sp, used)) != SQLITE_OK)
        return spool_batch_fail(sp, err, rc, "evict", sp->pending);
    if (own) {
        rc = sqlite3_step(sp->st_commit);
        sqlite3_reset(sp->st_commit);
        if (rc != SQLITE_DONE)
            return spool_batch_fail(sp, err, rc, "evict", 0);
    }
    return 0;
}

int
spool_retain(struct spool *sp, int64_t now_ms, struct err *err)
{
    int rc = 0;

    if (sp == NULL || sp->readonly || sp->in_batch)
        return 0;
    bool any = sp->max_age_ms > 0;
    for (size_t i = 0; i < sp->nplan && !any; i++)
        any = sp->plan[i].max_age_ms > 0;
    if (any && (rc = spool_lanes_load(sp, err)) < 0)
        return rc;
    for (size_t i = 0; any && i < sp->nlanes; i++) {
        struct spool_plane *pl = spool_plan_find(sp, sp->lanes[i].name);
        int64_t age = pl != NULL && pl->max_age_ms > 0 ? pl->max_age_ms : sp->max_age_ms;
        int64_t base = sp->lanes[i].id << SPOOL_SEQ_BITS, head = 0;

        if (age <= 0)
            continue;
        /* One seek: is the lane's oldest row too old? */
        sqlite3_bind_int64(sp->st_head, 1, base);
        sqlite3_bind_int64(sp->st_head, 2, base | SPOOL_SEQ_MASK);
        rc = sqlite3_step(sp->st_head);
        if (rc == SQLITE_ROW)
            head = sqlite3_column_int64(sp->st_head, 0);
        sqlite3_reset(sp->st_head);
        if (rc == SQLITE_DONE || (rc == SQLITE_ROW && head >= now_ms - age))
            continue;
        if (rc != SQLITE_ROW)
            return spool_fail(sp, err, rc, "max_age");
        for (;;) {
            sqlite3_bind_int64(sp->st_age_evict, 1, base);
            sqlite3_bind_int64(sp->st_age_evict, 2, base | SPOOL_SEQ_MASK);
            sqlite3_bind_int(sp->st_age_evict, 3, SPOOL_AGE_ROWS);
            sqlite3_bind_int64(sp->st_age_evict, 4, now_ms - age);
            if ((rc = spool_step_done(sp->st_age_evict)) != SQLITE_OK)
                return spool_fail(sp, err, rc, "max_age");
            int n = sqlite3_changes(sp->db);
            spool_count_drops(sp, sp->lanes[i].name, 1, (uint64_t)n);
            if (n < SPOOL_AGE_ROWS)
                break;
        }
    }
    spool_log_drops(sp, false);
    return 0;
}

/* ---- the dead-letter log ---------------------------------------------------- */

static int
spool_dead_insert(struct spool *sp, int64_t at_ms, const char *stage, size_t stage_len,
                  const char *error, size_t error_len, const char *mqtt_topic,
                  size_t mqtt_len, const char *kafka_topic, uint64_t size)
{
    sqlite3_stmt *st = sp->st_dead_add;
    int rc;

    sqlite3_bind_int64(st, 1, at_ms);
    sqlite3_bind_text(st, 2, stage, (int)stage_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, error, (int)error_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, mqtt_topic, (int)mqtt_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, kafka_topic, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (int64_t)size);
    if ((rc = spool_step_done(st)) != SQLITE_OK)
        return rc;
    /* Bounded: drop what is SPOOL_DEAD_KEEP entries behind (one seek). */
    sqlite3_bind_int64(sp->st_dead_trim, 1,
                       sqlite3_last_insert_rowid(sp->db) - SPOOL_DEAD_KEEP);
    return spool_step_done(sp->st_dead_trim);
}

int
spool_dead_note(struct spool *sp, const struct spool_dead *d, struct err *err)
{
    int rc;

    if (sp->readonly || sp->st_dead_add == NULL)
        return err_set(err, -EROFS, "spool %s: dead-letter log: read-only", sp->path);
    rc = spool_dead_insert(sp, d->at_ms, d->stage, strlen(d->stage), d->error,
                           strlen(d->error), d->mqtt_topic, strlen(d->mqtt_topic),
                           d->kafka_topic, d->size);
    return rc == SQLITE_OK ? 0 : spool_fail(sp, err, rc, "dead-letter log");
}

int
spool_dead_letters(struct spool *sp, int (*fn)(const struct spool_dead *, void *),
                   void *arg, struct err *err)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = sqlite3_prepare_v2(sp->db, SQL_DEAD_ALL, -1, &st, NULL)) != SQLITE_OK)
        return spool_fail(sp, err, rc, "dead letters");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct spool_dead d;
        const char *t;

        memset(&d, 0, sizeof(d));
        d.at_ms = sqlite3_column_int64(st, 0);
        t = (const char *)sqlite3_column_text(st, 1);
        snprintf(d.stage, sizeof(d.stage), "%s", t ? t : "");
        t = (const char *)sqlite3_column_text(st, 2);
        snprintf(d.error, sizeof(d.error), "%s", t ? t : "");
        t = (const char *)sqlite3_column_text(st, 3);
        snprintf(d.mqtt_topic, sizeof(d.mqtt_topic), "%s", t ? t : "");
        t = (const char *)sqlite3_column_text(st, 4);
        snprintf(d.kafka_topic, sizeof(d.kafka_topic), "%s", t ? t : "");
        d.size = (uint64_t)sqlite3_column_int64(st, 5);
        if (fn(&d, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE) {
        rc = spool_fail(sp, err, rc, "dead letters");
        sqlite3_finalize(st);
        return rc;
    }
    sqlite3_finalize(st);
    return 0;
}

/* ---- the intake journal ------------------------------------------------------ */

/* Writes jbuf's frames that are not in the file yet, with one pwrite at their own
 * offset (the file mirrors jbuf from offset 0), and under durability: power
 * fdatasyncs them. 0 or -errno with a sentence. */
static int
spool_journal_write(struct spool *sp, struct err *err)
{
    while (sp->jwritten < sp->jbuf.len) {
        ssize_t n = pwrite(sp->jfd, sp->jbuf.data + sp->jwritten,
                           sp->jbuf.len - sp->jwritten, (off_t)sp->jwritten);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return err_set(err, n < 0 ? -errno : -EIO, "spool %s: intake journal write: %s",
                           sp->jpath, n < 0 ? strerror(errno) : "nothing written");
        sp->jwritten += (size_t)n;
    }
    if (sp->jwritten > sp->jfile)
        sp->jfile = sp->jwritten;
    if (sp->durability == DURABILITY_POWER && fdatasync(sp->jfd) < 0)
        return err_set(err, -errno, "spool %s: intake journal fdatasync: %s", sp->jpath,
                       strerror(errno));
    return 0;
}

/* Gives the next journal frame its sequence: past every sequence this handle or
 * the database ever had, so the live path and SQLite agree on it (live.c). Makes
 * room for it in jseqs/jskip. 0 or -errno. */
static int
spool_jseq_take(struct spool *sp, uint64_t *seq, struct err *err)
{
    int rc;

    if (sp->jrows == sp->jseqcap) {
        size_t ncap = sp->jseqcap ? 2 * sp->jseqcap : 256;
        uint64_t *q = realloc(sp->jseqs, ncap * sizeof(*q));
        bool *k;
        if (q == NULL)
            return err_set(err, -ENOMEM, "spool %s: append: out of memory", sp->path);
        sp->jseqs = q;
        if ((k = realloc(sp->jskip, ncap * sizeof(*k))) == NULL)
            return err_set(err, -ENOMEM, "spool %s: append: out of memory", sp->path);
        sp->jskip = k;
        sp->jseqcap = ncap;
    }
    if (sp->jnext_stale) {
        if ((rc = sqlite3_step(sp->st_maxseq)) == SQLITE_ROW &&
            (uint64_t)sqlite3_column_int64(sp->st_maxseq, 0) >= sp->jnext)
            sp->jnext = (uint64_t)sqlite3_column_int64(sp->st_maxseq, 0) + 1;
        sqlite3_reset(sp->st_maxseq);
        if (rc != SQLITE_ROW)
            return spool_fail(sp, err, rc, "append");
        sp->jnext_stale = false;
    }
    if (sp->jnext <= sp->seq_high)
        sp->jnext = sp->seq_high + 1;
    *seq = sp->jnext++;
    sp->seq_high = *seq;
    return 0;
}

/* Inserts jbuf's frames that are not in the open batch yet (opening one), except
 * those the live path says Kafka has (live_skip). They stay in jbuf (and the file)
 * until spool_commit has committed them. */
static int
spool_journal_merge(struct spool *sp, struct err *err)
{
    size_t off = sp->jmerged, skipped = 0;
    int rc;

    if (sp->jfd < 0 || off == sp->jbuf.len)
        return 0;
    if ((rc = spool_batch_begin(sp, err)) < 0)
        return rc;
    /* Asked once for all of them, so the forwarder waits on the lock for a moment,
     * not for the inserts. */
    if (sp->live != NULL) {
        live_skip_begin(sp->live);
        for (size_t k = sp->jmerged_frames; k < sp->jrows; k++)
            sp->jskip[k] = live_skip(sp->live, sp->jseqs[k]);
        live_skip_end(sp->live);
    }
    /* These were acknowledged already: a full spool under backpressure takes them
     * (overshooting by at most one journal's worth) instead of refusing, and one
     * room check (eviction under drop_oldest) serves them all. */
    sp->jrelax = true;
    if ((rc = spool_room(sp, err)) < 0) {
        sp->jrelax = false;
        if (sp->in_batch && sp->pending == 0)
            spool_abort(sp);        /* an empty batch must not keep the write lock */
        return rc;
    }
    sp->room_checked = true;
    while (off < sp->jbuf.len) {
        struct record rec;
        uint64_t gen;

        if (!journal_frame_next(sp->jbuf.data, sp->jbuf.len, &off, &gen, &rec)) {
            sp->jrelax = sp->room_checked = false;
            return spool_batch_fail(sp, err, SQLITE_CORRUPT, "intake journal frame",
                                    sp->pending);
        }
        if (sp->live == NULL || !sp->jskip[sp->jmerged_frames]) {
            if ((rc = spool_insert_seq(sp, &rec, false, sp->jseqs[sp->jmerged_frames],
                                       err)) < 0) {
                sp->jrelax = sp->room_checked = false;
                if (sp->in_batch)           /* refused before it changed anything */
                    spool_abort(sp);
                return rc;
            }
            sp->jmerged_rows++;
        } else {
            skipped++;
            if (rec.dead_letter)
                spool_dead_log(sp, &rec);   /* in Kafka already, but still in the log */
        }
        sp->jmerged = off;
        sp->jmerged_frames++;
    }
    sp->jrelax = sp->room_checked = false;
    sp->jskipped += skipped;
    /* Skipped sequences are never handed out again, even after a restart: the
     * floor covers them. Rows the batch adds after these take sequences past it. */
    sqlite3_bind_int64(sp->st_floor, 1, (int64_t)sp->jseqs[sp->jmerged_frames - 1]);
    if ((rc = spool_step_done(sp->st_floor)) != SQLITE_OK)
        return spool_batch_fail(sp, err, rc, "append", sp->pending);
    sp->next_seq = 0;
    return 0;
}

/* After the commit of jbuf's frames: the next generation starts at offset 0. A file
 * grown past SPOOL_JOURNAL_TRUNC by a burst of big records is cut back. */
static void
spool_journal_next(struct spool *sp)
{
    sp->jgen++;
    buf_reset(&sp->jbuf);
    sp->jrows = sp->jwritten = sp->jmerged = sp->jmerged_rows = sp->jmerged_frames = 0;
    sp->jskipped = 0;
    sp->jsince = 0;
    if (sp->jbuf.cap > SPOOL_JOURNAL_TRUNC) {
        buf_fini(&sp->jbuf);
        buf_init(&sp->jbuf);
    }
    if (sp->jfile > SPOOL_JOURNAL_TRUNC && ftruncate(sp->jfd, 0) == 0)
        sp->jfile = 0;
}

static int
spool_journal_append(struct spool *sp, struct record *rec, bool commit, struct err *err)
{
    size_t before = sp->jbuf.len, size;
    uint64_t seq;
    int rc;

    rec->seq = 0;
    if (rec->lane == NULL || rec->topic == NULL || rec->mqtt_topic == NULL)
        return err_set(err, -EINVAL, "spool %s: append: record without lane or topic",
                       sp->path);
    size = rec->topic_len + rec->key_len + rec->value_len + rec->mqtt_topic_len +
           rec->hdrs_len;
    if (size > (size_t)sqlite3_limit(sp->db, SQLITE_LIMIT_LENGTH, -1))
        return err_set(err, -E2BIG, "spool %s: append: record of %zu bytes over the "
                       "spool's limit", sp->path, size);
    /* A full journal, or one near max_bytes, goes into the database first: there
     * the size is exact, eviction runs, and backpressure refuses this record. */
    if (sp->jrows >= SPOOL_JOURNAL_ROWS || sp->jbuf.len >= SPOOL_JOURNAL_BYTES ||
        (sp->max_bytes > 0 && sp->jused + 2 * (sp->jbuf.len + size) >= sp->max_bytes)) {
        if ((rc = spool_commit(sp, err)) < 0)
            return rc;
        if (sp->max_bytes > 0) {
            if ((rc = spool_room(sp, err)) < 0)
                return rc;
            if ((rc = spool_used_bytes(sp, &sp->jused)) != SQLITE_OK)
                return spool_fail(sp, err, rc, "size");
        }
        before = sp->jbuf.len;
    }
    /* The frame carries its sequence: a replay after a crash gives the record the
     * one the live path may already have sent it to Kafka with. */
    if ((rc = spool_jseq_take(sp, &seq, err)) < 0)
        return rc;
    rec->seq = seq;
    if ((rc = journal_frame_add(&sp->jbuf, sp->jgen, rec)) < 0) {
        rec->seq = 0;
        return err_set(err, rc, "spool %s: append: %s", sp->path,
                       rc == -E2BIG ? "record over 2 GiB" : "out of memory");
    }
    sp->jseqs[sp->jrows] = seq;
    if (sp->jrows++ == 0)
        sp->jsince = clock_mono_ms();
    if (commit && (rc = spool_journal_write(sp, err)) < 0) {
        /* Not acknowledged, so not kept: the frame leaves jbuf (and is overwritten
         * in the file by the next one). Its sequence is not reused: seq_high has it. */
        sp->jbuf.len = before;
        if (sp->jwritten > before)
            sp->jwritten = before;
        if (--sp->jrows == 0)
            sp->jsince = 0;
        rec->seq = 0;
        return rc;
    }
    sp->offered = sp->live != NULL &&
                  live_offer(sp->live, seq, sp->jbuf.data + before, sp->jbuf.len - before);
    return 0;
}

int
spool_append(struct spool *sp, struct record *rec, bool commit, struct err *err)
{
    sp->offered = false;
    if (sp->readonly) {
        rec->seq = 0;
        return err_set(err, -EROFS, "spool %s: append: opened read-only", sp->path);
    }
    if (sp->jfd >= 0)
        return spool_journal_append(sp, rec, commit, err);
    return spool_insert(sp, rec, commit, err);
}

/* Opens (creating, mode 0600) the journal beside the database and moves the frames
 * a crash left in it into the database, unless the database already has them
 * (meta.journal_gen at or past their generation). */
static int
spool_journal_open(struct spool *sp, struct err *err)
{
    int64_t done = 0;
    uint64_t gen = 0;
    size_t end = 0, n;
    struct stat st;
    int rc;

    if ((sp->jpath = spool_strdup_cat(sp->path, "-intake")) == NULL)
        return err_set(err, -ENOMEM, "spool: out of memory");
    if ((rc = spool_prepare(sp, &sp->st_jgen, SQL_JOURNAL_GEN, err)) < 0)
        return rc;
    sp->jfd = open(sp->jpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sp->jfd < 0 || fstat(sp->jfd, &st) < 0)
        return err_set(err, -errno, "spool %s: intake journal: %s", sp->jpath,
                       strerror(errno));
    if ((st.st_mode & 077) != 0)
        (void)fchmod(sp->jfd, st.st_mode & 0700);
    if ((size_t)st.st_size > 0) {
        size_t size = (size_t)st.st_size, got = 0;
        if (buf_reserve(&sp->jbuf, size) < 0)
            return err_set(err, -ENOMEM, "spool %s: intake journal: out of memory",
                           sp->jpath);
        while (got < size) {
            ssize_t r = pread(sp->jfd, sp->jbuf.data + got, size - got, (off_t)got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return err_set(err, -errno, "spool %s: intake journal read: %s",
                               sp->jpath, strerror(errno));
            if (r == 0)
                break;
            got += (size_t)r;
        }
        sp->jbuf.len = got;
        sp->jfile = size;
    }
    n = journal_scan(sp->jbuf.data, sp->jbuf.len, &gen, &end);
    if ((rc = spool_query_int(sp->db, "SELECT v FROM meta WHERE k = 'journal_gen'",
                              &done)) != SQLITE_OK)
        return spool_fail(sp, err, rc, "intake journal");
    if (n > 0 && gen > (uint64_t)done) {
        size_t off = 0;
        sp->jbuf.len = end;
        sp->jwritten = end;
        sp->jgen = gen;
        sp->jsince = clock_mono_ms();
        /* Each frame keeps the sequence it was written with (an older sluice wrote
         * none: those get the next ones). */
        for (sp->jrows = 0; sp->jrows < n;) {
            struct record rec;
            uint64_t g, seq;
            if (!journal_frame_next(sp->jbuf.data, sp->jbuf.len, &off, &g, &rec))
                break;      /* journal_scan counted it: cannot happen */
            if ((rc = spool_jseq_take(sp, &seq, err)) < 0)
                return rc;
            if (rec.seq != 0) {
                seq = rec.seq;
                if (seq > sp->seq_high)
                    sp->seq_high = seq;
            }
            sp->jseqs[sp->jrows++] = seq;
        }
        if ((rc = spool_commit(sp, err)) < 0) {
            size_t len = strnlen(err->msg, sizeof(err->msg) - 1);
            buf_reset(&sp->jbuf);       /* the file keeps them; close must not retry */
            sp->jrows = sp->jwritten = 0;
            snprintf(err->msg + len, sizeof(err->msg) - len, " (replaying %zu record(s) "
                     "of the intake journal %s, left as it is)", n, sp->jpath);
            return rc;
        }
        log_info("spool", "%s: moved %zu acknowledged record(s) from the intake journal "
                 "into the spool", sp->path, n);
        return 0;
    }
    buf_reset(&sp->jbuf);
    sp->jgen = (gen > (uint64_t)done ? gen : (uint64_t)done) + 1;
    (void)spool_used_bytes(sp, &sp->jused);
    return 0;
}

/* Moves what jbuf still holds into the database; what cannot be moved is written to
 * the file (QoS 0 frames too), where the next open finds it. */
static void
spool_journal_close(struct spool *sp)
{
    struct err e = { 0 };

    if (sp->jfd < 0)
        return;
    if (sp->jrows > 0 && sp->db != NULL) {
        if (spool_journal_write(sp, &e) < 0)
            log_error("spool", "%s", e.msg);
        else if (spool_commit(sp, &e) < 0)
            log_warn("spool", "%s; its %zu record(s) stay in the intake journal %s for "
                     "the next start", e.msg, sp->jrows, sp->jpath);
    }
    close(sp->jfd);
    sp->jfd = -1;
}

int
spool_commit(struct spool *sp, struct err *err)
{
    int rc;

    if ((rc = spool_journal_merge(sp, err)) < 0)
        return rc;
    if (!sp->in_batch)
        return 0;
    if (sp->jmerged_frames > 0) {
        /* The generation goes in with its rows: a replay skips what this commits. */
        sqlite3_bind_int64(sp->st_jgen, 1, (int64_t)sp->jgen);
        if ((rc = spool_step_done(sp->st_jgen)) != SQLITE_OK)
            return spool_batch_fail(sp, err, rc, "commit", sp->pending);
        (void)spool_used_bytes(sp, &sp->jused);
    }
    rc = sqlite3_step(sp->st_commit);
    sqlite3_reset(sp->st_commit);
    if (rc != SQLITE_DONE)
        return spool_batch_fail(sp, err, rc, "commit", sp->pending);
    sp->in_batch = false;
    sp->pending = 0;
    sp->next_seq = 0;
    metrics_add(&metrics.spool_skipped, sp->jskipped);
    if (sp->jmerged_frames > 0)
        spool_journal_next(sp);
    /* Every sequence handed out so far is in SQLite now, or was skipped, or died
     * with a rolled-back batch: acknowledgements for them delete rows. */
    if (sp->live != NULL && sp->jrows == 0)
        live_committed(sp->live, sp->seq_high);
    return 0;
}

bool
spool_holding(const struct spool *sp)
{
    return sp->live != NULL && live_holding(sp->live) && !sp->in_batch;
}

bool
spool_offered(const struct spool *sp)
{
    return sp->offered;
}

int
spool_commit_or_hold(struct spool *sp, struct err *err)
{
    if (spool_holding(sp) && sp->jrows > 0 && sp->jrows < SPOOL_HOLD_ROWS &&
        sp->jbuf.len < SPOOL_JOURNAL_BYTES && clock_mono_ms() - sp->jsince < SPOOL_HOLD_MS) {
        /* QoS 0 frames reach the file as if committed: a crash finds them there. */
        int rc = sp->jwritten < sp->jbuf.len ? spool_journal_write(sp, err) : 0;
        return rc < 0 ? rc : 1;
    }
    return spool_commit(sp, err);
}

/* ---- compaction (lanes with compact: latest_per_key) ----------------------------- */

static const char SQL_KEY_EVICT[] =
    "DELETE FROM records WHERE rid = (SELECT rid FROM lane_keys WHERE lane = ?1 AND key = ?2)";
static const char SQL_KEY_PUT[] =
    "INSERT INTO lane_keys (lane, key, rid) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (lane, key) DO UPDATE SET rid = excluded.rid";

/* Does rec's lane compact it? Keyless records and dead letters are never superseded:
 * they have no identity to be superseded by. *plane receives the lane's index. */
static bool
spool_compacts(struct spool *sp, const struct record *rec, size_t *plane)
{
    if (rec->key == NULL || rec->dead_letter || rec->lane == NULL)
        return false;
    for (size_t i = 0; i < sp->nplan; i++) {
        if (sp->plan[i].compact && strcmp(sp->plan[i].name, rec->lane) == 0) {
            *plane = i;
            return true;
        }
    }
    return false;
}

/* Inside the append's transaction, after the insert: deletes the row the new one
 * supersedes and points the key at the new row. Why in the same transaction: a crash
 * must never leave both rows (a stale value delivered after the newer one) nor
 * neither. The superseded row may be claimed by the forwarder already: it is then
 * produced anyway, and its delete after delivery finds nothing, which is harmless
 * (the newer one follows it in sequence order). On error the batch is rolled back. */
static int
spool_compact(struct spool *sp, const struct record *rec, int64_t lane, size_t plane,
              struct err *err)
{
    int rc;

    if ((sp->st_key_evict == NULL &&
         (rc = spool_prepare(sp, &sp->st_key_evict, SQL_KEY_EVICT, err)) < 0) ||
        (sp->st_key_put == NULL &&
         (rc = spool_prepare(sp, &sp->st_key_put, SQL_KEY_PUT, err)) < 0)) {
        size_t lost = sp->pending + 1;
        spool_abort(sp);
        spool_note_lost(err, lost);
        return rc;
    }
    sqlite3_bind_int64(sp->st_key_evict, 1, lane);
    sqlite3_bind_blob(sp->st_key_evict, 2, rec->key_len ? rec->key : "", (int)rec->key_len,
                      SQLITE_STATIC);
    rc = sqlite3_step(sp->st_key_evict);
    sqlite3_reset(sp->st_key_evict);
    if (rc == SQLITE_DONE && sqlite3_changes(sp->db) > 0)
        metrics_add(&metrics.compacted[plane < METRICS_MAX_LANES ? plane
                                                                  : METRICS_MAX_LANES - 1],
                    (uint64_t)sqlite3_changes(sp->db));
    if (rc == SQLITE_DONE) {
        sqlite3_bind_int64(sp->st_key_put, 1, lane);
        sqlite3_bind_blob(sp->st_key_put, 2, rec->key_len ? rec->key : "", (int)rec->key_len,
                          SQLITE_STATIC);
        sqlite3_bind_int64(sp->st_key_put, 3, sqlite3_last_insert_rowid(sp->db));
        rc = sqlite3_step(sp->st_key_put);
        sqlite3_reset(sp->st_key_put);
    }
    if (rc != SQLITE_DONE)
        return spool_batch_fail(sp, err, rc, "compact", sp->pending + 1);
    return 0;
}

/* The dead-letter log line of a dead-letter record (`sluice spool dead-letters`).
 * It rides in the open batch, or follows the row in its own autocommit: it is a
 * log, so its failure fails nothing. */
static void
spool_dead_log(struct spool *sp, const struct record *rec)
{
    struct record_header eh = { 0 }, sh = { 0 };
    size_t size = rec->topic_len + rec->key_len + rec->value_len + rec->mqtt_topic_len +
                  rec->hdrs_len;

    (void)record_hdrs_find(rec->hdrs, rec->hdrs_len, "error", &eh);
    (void)record_hdrs_find(rec->hdrs, rec->hdrs_len, "error.stage", &sh);
    (void)spool_dead_insert(sp, rec->ingest_ms, sh.value ? sh.value : "", sh.value_len,
                            eh.value ? eh.value : "", eh.value_len, rec->mqtt_topic,
                            rec->mqtt_topic_len, "", size);
}

/* The append into the database: what spool_append is without a journal. seq 0:
 * the row gets the next sequence; otherwise (a journal frame, inside a batch) seq. */
static int
spool_insert_seq(struct spool *sp, struct record *rec, bool commit, uint64_t seq,
                 struct err *err)
{
    sqlite3_stmt *st;
    size_t plane = 0;
    bool compact;
    int64_t lane;
    size_t size;
    int rc;

    rec->seq = 0;
    if (sp->readonly)
        return err_set(err, -EROFS, "spool %s: append: opened read-only", sp->path);
    if (rec->lane == NULL || rec->topic == NULL || rec->mqtt_topic == NULL)
        return err_set(err, -EINVAL, "spool %s: append: record without lane or topic",
                       sp->path);
    if (rec->topic_len > INT_MAX || rec->key_len > INT_MAX || rec->value_len > INT_MAX ||
        rec->mqtt_topic_len > INT_MAX || rec->hdrs_len > INT_MAX)
        return err_set(err, -E2BIG, "spool %s: append: record over 2 GiB", sp->path);
    if (!sp->room_checked && (rc = spool_room(sp, err)) < 0)
        return rc;
    /* A compacting append is two more statements: it needs a transaction of its own
     * even on the QoS 1 path. */
    compact = spool_compacts(sp, rec, &plane);
    if ((!commit || compact) && (rc = spool_batch_begin(sp, err)) < 0)
        return rc;
    if ((rc = spool_lane_id(sp, rec->lane, true, &lane, err)) < 0) {
        size_t lost = sp->pending;
        if (sp->in_batch)
            spool_abort(sp);
        spool_note_lost(err, lost);
        return rc;
    }
    size = rec->topic_len + rec->key_len + rec->value_len + rec->mqtt_topic_len +
           rec->hdrs_len;
    if (seq != 0) {
        if (!sp->in_batch)
            return err_set(err, -EINVAL, "spool %s: append: a journal frame outside a "
                           "batch", sp->path);
        st = sp->st_insert_at;
        sqlite3_bind_int64(st, 1, lane << SPOOL_SEQ_BITS | (int64_t)seq);
    } else if (sp->in_batch) {
        if (sp->next_seq == 0) {
            if ((rc = sqlite3_step(sp->st_maxseq)) == SQLITE_ROW)
                sp->next_seq = sqlite3_column_int64(sp->st_maxseq, 0) + 1;
            sqlite3_reset(sp->st_maxseq);
            if (rc != SQLITE_ROW)
                return spool_batch_fail(sp, err, rc, "append", sp->pending + 1);
        }
        st = sp->st_insert_at;
        sqlite3_bind_int64(st, 1, lane << SPOOL_SEQ_BITS | sp->next_seq);
    } else {
        st = sp->st_insert;
        sqlite3_bind_int64(st, 1, lane);
    }
    /* SQLITE_STATIC: the row is copied into the page during the step below. */
    sqlite3_bind_text(st, 2, rec->topic, (int)rec->topic_len, SQLITE_STATIC);
    if (rec->key != NULL)
        sqlite3_bind_blob(st, 3, rec->key, (int)rec->key_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_blob(st, 4, rec->value_len ? rec->value : "", (int)rec->value_len,
                      SQLITE_STATIC);
    sqlite3_bind_text(st, 5, rec->mqtt_topic, (int)rec->mqtt_topic_len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, rec->hdrs_len ? rec->hdrs : "", (int)rec->hdrs_len,
                      SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, rec->event_ms);
    sqlite3_bind_int64(st, 8, rec->ingest_ms);
    sqlite3_bind_int64(st, 9, rec->route);
    sqlite3_bind_int(st, 10, rec->qos);
    sqlite3_bind_int(st, 11, rec->retained);
    sqlite3_bind_int(st, 12, rec->dead_letter);
    sqlite3_bind_int64(st, 13, (int64_t)size);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        sqlite3_reset(st);
        if (sp->in_batch)
            return spool_batch_fail(sp, err, rc, "append", sp->pending + 1);
        rc = spool_fail(sp, err, rc, "append");
        spool_abort(sp);      /* a failed autocommit insert may have added its lane */
        return rc;
    }
    sqlite3_reset(st);
    rec->seq = (uint64_t)(sqlite3_last_insert_rowid(sp->db) & SPOOL_SEQ_MASK);
    if (rec->seq > sp->seq_high)
        sp->seq_high = rec->seq;
    if (seq == 0) {
        if (sp->in_batch)
            sp->next_seq++;
        /* Journal frames take their sequences from jnext: past this one now. */
        sp->jnext_stale = true;
        if (sp->live != NULL)
            live_block(sp->live, rec->seq);   /* the forwarder claims it, in order */
    }
    if (compact && (rc = spool_compact(sp, rec, lane, plane, err)) < 0) {
        rec->seq = 0;
        return rc;
    }
    if (rec->dead_letter)
        spool_dead_log(sp, rec);
    if (sp->in_batch) {
        sp->pending++;
        if (commit && (rc = spool_commit(sp, err)) < 0) {
            rec->seq = 0;
            return rc;
        }
    }
    return 0;
}

static int
spool_insert(struct spool *sp, struct record *rec, bool commit, struct err *err)
{
    return spool_insert_seq(sp, rec, commit, 0, err);
}

/* ---- route state ---------------------------------------------------------------- */

static const char SQL_STATE_PUT[] =
    "INSERT INTO route_state (route, key, value) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (route, key) DO UPDATE SET value = excluded.value";
static const char SQL_STATE_DEL[] = "DELETE FROM route_state WHERE route = ?1 AND key = ?2";
static const char SQL_STATE_READ[] =
    "SELECT route, key, value FROM route_state WHERE substr(route, 1, ?2) = ?1";

/* Why the state rides in the record's transaction: a deadband's last value (or an
 * aggregate's accumulator) must describe exactly the records the spool holds. Were
 * they committed apart, a crash between the two commits would either forward a value
 * twice or suppress one against a value that never reached the spool. */
/* Prepares the route-state statements on first use. */
static int
spool_state_prepare(struct spool *sp, struct err *err)
{
    int rc;

    if ((sp->st_state_put == NULL &&
         (rc = spool_prepare(sp, &sp->st_state_put, SQL_STATE_PUT, err)) < 0) ||
        (sp->st_state_del == NULL &&
         (rc = spool_prepare(sp, &sp->st_state_del, SQL_STATE_DEL, err)) < 0))
        return rc;
    return 0;
}

/* Writes puts into the open batch. On failure the batch is rolled back (err says how
 * many rows went with it) and a negative errno returned. */
static int
spool_state_write(struct spool *sp, const struct spool_state_put *puts, size_t n,
                  struct err *err)
{
    for (size_t i = 0; i < n; i++) {
        const struct spool_state_put *p = &puts[i];
        sqlite3_stmt *st = p->value != NULL ? sp->st_state_put : sp->st_state_del;
        int rc;

        if (p->key_len > INT_MAX || p->value_len > INT_MAX) {
            size_t lost = sp->pending;

            spool_abort(sp);
            rc = err_set(err, -E2BIG, "spool %s: route state over 2 GiB", sp->path);
            spool_note_lost(err, lost);
            return rc;
        }
        sqlite3_bind_text(st, 1, p->route, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, p->key_len ? p->key : "", (int)p->key_len, SQLITE_STATIC);
        if (p->value != NULL)
            sqlite3_bind_blob(st, 3, p->value_len ? p->value : "", (int)p->value_len,
                              SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE)
            return spool_batch_fail(sp, err, rc, "route state", sp->pending);
    }
    return 0;
}

int
spool_append_with_state(struct spool *sp, struct record *rec, bool commit,
                        const struct spool_state_put *puts, size_t n, struct err *err)
{
    int rc, began;

    if (n == 0)
        return spool_append(sp, rec, commit, err);
    rec->seq = 0;
    sp->offered = false;
    if (sp->readonly)
        return err_set(err, -EROFS, "spool %s: append: opened read-only", sp->path);
    if ((rc = spool_state_prepare(sp, err)) < 0 || (rc = spool_journal_merge(sp, err)) < 0 ||
        (began = spool_batch_begin(sp, err)) < 0)
        return rc < 0 ? rc : began;
    if ((rc = spool_insert(sp, rec, false, err)) < 0) {
        /* Either the batch was rolled back, or (backpressure, a bad record) nothing
         * changed; an empty transaction we began must not keep the write lock. */
        if (began && sp->in_batch && sp->pending == 0 && sp->jmerged_frames == 0)
            spool_abort(sp);
        return rc;
    }
    if ((rc = spool_state_write(sp, puts, n, err)) < 0 ||
        (commit && (rc = spool_commit(sp, err)) < 0)) {
        rec->seq = 0;
        return rc;
    }
    return 0;
}

int
spool_append_all(struct spool *sp, struct record *recs, size_t nrecs,
                 const struct spool_state_put *puts, size_t n, struct err *err)
{
    int rc, began;

    sp->offered = false;
    if (sp->readonly)
        return err_set(err, -EROFS, "spool %s: append: opened read-only", sp->path);
    if ((rc = spool_state_prepare(sp, err)) < 0 || (rc = spool_journal_merge(sp, err)) < 0 ||
        (began = spool_batch_begin(sp, err)) < 0)
        return rc < 0 ? rc : began;
    for (size_t i = 0; i < nrecs; i++) {
        if ((rc = spool_insert(sp, &recs[i], false, err)) < 0) {
            /* A record refused before it changed anything leaves the batch open:
             * what it holds (ours, or the caller's) goes with the failure. */
            if ((began || i > 0) && sp->in_batch) {
                size_t lost = sp->pending;

                spool_abort(sp);
                spool_note_lost(err, lost);
            }
            goto failed;
        }
    }
    if ((rc = spool_state_write(sp, puts, n, err)) < 0 ||
        (sp->in_batch && (rc = spool_commit(sp, err)) < 0))
        goto failed;
    return 0;
failed:
    for (size_t i = 0; i < nrecs; i++)
        recs[i].seq = 0;
    return rc;
}

int
spool_state_read(const char *path, const char *prefix,
                 int (*fn)(const char *route, const void *key, size_t key_len,
                           const void *value, size_t value_len, void *arg),
                 void *arg, struct err *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc, stop = 0;

    if (access(path, F_OK) != 0)
        return 0;           /* no spool yet: no state */
    if ((rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL)) != SQLITE_OK) {
        rc = err_set(err, spool_errno(rc), "spool %s: route state: %s", path,
                     db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close_v2(db);
        return rc;
    }
    sqlite3_busy_timeout(db, 5000);
    if ((rc = sqlite3_prepare_v2(db, SQL_STATE_READ, -1, &st, NULL)) != SQLITE_OK) {
        /* An older schema (before route_state) has no state to read. */
        bool missing = strstr(sqlite3_errmsg(db), "no such table") != NULL;
        rc = missing ? 0 : err_set(err, spool_errno(rc), "spool %s: route state: %s", path,
                                   sqlite3_errmsg(db));
        sqlite3_close_v2(db);
        return rc;
    }
    sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)strlen(prefix));
    while (stop == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
        stop = fn((const char *)sqlite3_column_text(st, 0), sqlite3_column_blob(st, 1),
                  (size_t)sqlite3_column_bytes(st, 1), sqlite3_column_blob(st, 2),
                  (size_t)sqlite3_column_bytes(st, 2), arg);
    if (stop < 0)
        rc = err_set(err, stop, "spool %s: route state: out of memory", path);
    else if (stop == 0 && rc != SQLITE_DONE)
        rc = err_set(err, spool_errno(rc), "spool %s: route state: %s", path,
                     sqlite3_errmsg(db));
    else
        rc = 0;
    sqlite3_finalize(st);
    sqlite3_close_v2(db);
    return rc;
}

size_t
spool_pending(const struct spool *sp)
{
    return sp->pending + sp->jrows - sp->jmerged_rows;
}

int64_t
spool_pending_since_ms(const struct spool *sp)
{
    if (sp->in_batch && (sp->jrows == 0 || sp->pending_since < sp->jsince))
        return sp->pending_since;
    return sp->jrows > 0 ? sp->jsince : 0;
}

/* The checkpointer for spool_sync_wal: a third connection, so the ingest thread's
 * commits stop paying for checkpoints (called with wal_mu held). */
static sqlite3 *
spool_ckpt_db(struct spool *sp)
{
    if (sp->ckpt_db == NULL) {
        if (sqlite3_open_v2(sp->path, &sp->ckpt_db, SQLITE_OPEN_READWRITE |
                            SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
            sqlite3_exec(sp->ckpt_db, "PRAGMA synchronous = NORMAL", NULL, NULL,
                         NULL) != SQLITE_OK) {
            sqlite3_close_v2(sp->ckpt_db);
            sp->ckpt_db = NULL;
        }
    }
    return sp->ckpt_db;
}

int
spool_sync_wal(struct spool *sp)
{
    sqlite3 *db;
    int rc;

    /* FULL already fsynced at every commit; a read-only handle wrote nothing. */
    if (sp == NULL || sp->readonly || sp->durability != DURABILITY_PROCESS)
        return 0;
    /* The journal's frames are the newest acknowledged rows: on the disk first. */
    if (sp->jfd >= 0 && fdatasync(sp->jfd) < 0)
        return -errno;
    pthread_mutex_lock(&sp->wal_mu);
    /* Checkpoint first, on this thread: a PASSIVE checkpoint waits for nobody,
     * copies what no reader still needs into the database and fsyncs the WAL and
     * the database (synchronous=NORMAL), so the commits' connections only
     * checkpoint themselves as a backstop when these ticks stop. Its failure is
     * not ours to report: the fsync below is the promise. */
    if ((db = spool_ckpt_db(sp)) != NULL)
        (void)sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    rc = spool_wal_reopen(sp);
    if (rc == 0 && sp->wal_fd >= 0 && fdatasync(sp->wal_fd) < 0)
        rc = -errno;
    pthread_mutex_unlock(&sp->wal_mu);
    return rc;
}

/* ---- claim ------------------------------------------------------------------ */

void
spool_batch_init(struct spool_batch *b)
{
    b->recs = NULL;
    b->n = b->cap = 0;
    b->arena = NULL;
}

void
spool_batch_reset(struct spool_batch *b)
{
    b->n = 0;
    if (b->arena != NULL)
        buf_reset(b->arena);
}

void
spool_batch_fini(struct spool_batch *b)
{
    free(b->recs);
    if (b->arena != NULL) {
        buf_fini(b->arena);
        free(b->arena);
    }
    spool_batch_init(b);
}

/* Each claimed row occupies one contiguous run of the arena, rows in order:
 *   topic NUL key NUL value mqtt_topic NUL lane NUL hdrs
 * so when the arena moves (realloc), every pointer is recomputed from the lengths
 * alone, without touching the old block. NULL keys stay NULL (their slot is kept). */
static void
spool_batch_rebase(struct spool_batch *b)
{
    char *p = b->arena->data;

    for (size_t i = 0; i < b->n; i++) {
        struct record *r = &b->recs[i];
        /* The lane's length is read from its copy in the new block. */
        r->topic = p;              p += r->topic_len + 1;
        if (r->key != NULL)
            r->key = p;
        p += r->key_len + 1;
        r->value = p;              p += r->value_len;
        r->mqtt_topic = p;         p += r->mqtt_topic_len + 1;
        r->lane = p;               p += strlen(p) + 1;
        r->hdrs = p;               p += r->hdrs_len;
    }
}

static void
spool_put(char **p, const void *src, size_t n, bool nul)
{
    if (n > 0)
        memcpy(*p, src, n);
    *p += n;
    if (nul)
        *(*p)++ = '\0';
}

int
spool_claim(struct spool *sp, const char *lane, uint64_t after_seq, size_t max,
            struct spool_batch *b, struct err *err)
{
    return spool_claim_upto(sp, lane, after_seq, (uint64_t)SPOOL_SEQ_MASK, max, b, err);
}

int
spool_claim_upto(struct spool *sp, const char *lane, uint64_t after_seq, uint64_t upto,
                 size_t max, struct spool_batch *b, struct err *err)
{
    sqlite3_stmt *st = sp->st_claim;
    size_t n0 = b->n, len0, lane_len = strlen(lane);
    bool moved = false;
    int64_t lane_id;
    int rc;

    if (max == 0)
        return 0;
    if ((rc = spool_lane_id(sp, lane, false, &lane_id, err)) <= 0)
        return rc;     /* 0: no such lane yet, so no rows */
    if (b->arena == NULL) {
        if ((b->arena = malloc(sizeof(*b->arena))) == NULL)
            return err_set(err, -ENOMEM, "spool %s: claim: out of memory", sp->path);
        buf_init(b->arena);
    }
    len0 = b->arena->len;
    if (upto > (uint64_t)SPOOL_SEQ_MASK)
        upto = (uint64_t)SPOOL_SEQ_MASK;
    if (after_seq >= upto)
        return 0;
    /* The lane's rows are the rid range (lane << 48, lane << 48 | mask]. */
    sqlite3_bind_int64(st, 1, lane_id << SPOOL_SEQ_BITS | (int64_t)after_seq);
    sqlite3_bind_int64(st, 2, lane_id << SPOOL_SEQ_BITS | (int64_t)upto);
    sqlite3_bind_int64(st, 3, max > INT64_MAX ? -1 : (int64_t)max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct record *r;
        const void *topic = sqlite3_column_text(st, 1);
        size_t topic_len = (size_t)sqlite3_column_bytes(st, 1);
        const void *key = sqlite3_column_blob(st, 2);
        size_t key_len = (size_t)sqlite3_column_bytes(st, 2);
        bool key_null = sqlite3_column_type(st, 2) == SQLITE_NULL;
        const void *value = sqlite3_column_blob(st, 3);
        size_t value_len = (size_t)sqlite3_column_bytes(st, 3);
        const void *mtopic = sqlite3_column_text(st, 4);
        size_t mtopic_len = (size_t)sqlite3_column_bytes(st, 4);
        const void *hdrs = sqlite3_column_blob(st, 5);
        size_t hdrs_len = (size_t)sqlite3_column_bytes(st, 5);
        size_t need = topic_len + 1 + key_len + 1 + value_len + mtopic_len + 1 +
                      lane_len + 1 + hdrs_len;
        size_t cap0 = b->arena->cap;

        if (b->n == b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 64;
            if ((r = realloc(b->recs, cap * sizeof(*r))) == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            b->recs = r;
            b->cap = cap;
        }
        if (buf_reserve(b->arena, need) < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (b->arena->cap != cap0 && b->arena->len > 0)
            moved = true;
        char *p = b->arena->data + b->arena->len;
        r = &b->recs[b->n];
        r->topic = p;       spool_put(&p, topic, topic_len, true);
        r->key = key_null ? NULL : p;
        spool_put(&p, key, key_len, true);
        r->value = p;       spool_put(&p, value, value_len, false);
        r->mqtt_topic = p;  spool_put(&p, mtopic, mtopic_len, true);
        r->lane = p;        spool_put(&p, lane, lane_len, true);
        r->hdrs = p;        spool_put(&p, hdrs, hdrs_len, false);
        b->arena->len += need;
        r->topic_len = topic_len;
        r->key_len = key_len;
        r->value_len = value_len;
        r->mqtt_topic_len = mtopic_len;
        r->hdrs_len = hdrs_len;
        r->seq = (uint64_t)sqlite3_column_int64(st, 0);
        r->event_ms = sqlite3_column_int64(st, 6);
        r->ingest_ms = sqlite3_column_int64(st, 7);
        r->route = (uint32_t)sqlite3_column_int64(st, 8);
        r->qos = (uint8_t)sqlite3_column_int(st, 9);
        r->retained = sqlite3_column_int(st, 10) != 0;
        r->dead_letter = sqlite3_column_int(st, 11) != 0;
        b->n++;
    }
    if (rc != SQLITE_DONE) {
        int code = rc == SQLITE_NOMEM ? err_set(err, -ENOMEM, "spool %s: claim: out of "
                                                "memory", sp->path)
                                      : spool_fail(sp, err, rc, "claim");
        sqlite3_reset(st);
        b->n = n0;
        b->arena->len = len0;
        if (moved)
            spool_batch_rebase(b);
        return code;
    }
    sqlite3_reset(st);
    if (moved)
        spool_batch_rebase(b);
    return 0;
}

/* ---- delete ----------------------------------------------------------------- */

/* Deletes the row of seq, whichever lane holds it: the lane of the previous row
 * first (a claimed batch is one lane), then the others. 1 deleted, 0 not found. */
/* Deletes the rows of sequences [lo, hi] from every lane, starting with the one that
 * held the last hit; stops once want rows went. Returns the rows deleted or -rc. A
 * sequence is unique across lanes, so the range deletes exactly those rows. */
static int64_t
spool_delete_range(struct spool *sp, int64_t lo, int64_t hi, int64_t want)
{
    int64_t got = 0;

    for (size_t k = 0; k < sp->nlanes && got < want; k++) {
        size_t i = (sp->last_lane + k) % sp->nlanes;
        int64_t base = sp->lanes[i].id << SPOOL_SEQ_BITS;
        int rc, n;

        sqlite3_bind_int64(sp->st_delete, 1, base | lo);
        sqlite3_bind_int64(sp->st_delete, 2, base | hi);
        if ((rc = spool_step_done(sp->st_delete)) != SQLITE_OK)
            return -rc;
        if ((n = sqlite3_changes(sp->db)) > 0) {
            sp->last_lane = i;
            got += n;
        }
    }
    return got;
}

static int
spool_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

#define SPOOL_DELETE_SPAN (1u << 16)   /* widest range sorted by a bitmap (8 KiB) */

/* Sorts dsorted[0..m) and drops duplicates; returns the new count. The window in
 * flight keeps a batch's sequences within a few thousand of each other, so a
 * bitmap over [min, max] sorts them in one pass (qsort cost the forwarder 5% of its
 * time in a drain); a wider spread falls back to qsort. */
static size_t
spool_sort_seqs(struct spool *sp, size_t m)
{
    uint64_t lo = UINT64_MAX, hi = 0, *v = sp->dsorted;
    size_t k = 0;

    for (size_t i = 0; i < m; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    if (hi - lo < SPOOL_DELETE_SPAN) {
        uint64_t bits[SPOOL_DELETE_SPAN / 64];
        size_t words = (size_t)((hi - lo) / 64 + 1);

        memset(bits, 0, words * sizeof(bits[0]));
        for (size_t i = 0; i < m; i++)
            bits[(v[i] - lo) / 64] |= UINT64_C(1) << ((v[i] - lo) % 64);
        for (size_t w = 0; w < words; w++)
            for (uint64_t b = bits[w]; b != 0; b &= b - 1)
                v[k++] = lo + w * 64 + (uint64_t)__builtin_ctzll(b);
        return k;
    }
    qsort(v, m, sizeof(v[0]), spool_cmp_u64);
    for (size_t i = 0; i < m; i++)
        if (k == 0 || v[i] != v[k - 1])
            v[k++] = v[i];
    return k;
}

/* Acknowledgements come back nearly in sequence order, so sorted they form a few
 * runs of consecutive sequences: one range statement per run (and lane) instead of
 * one statement per row. */
int
spool_delete(struct spool *sp, const uint64_t *seqs, size_t n, struct err *err)
{
    int64_t maxseq = 0;
    bool floor = false, reloaded = false;
    size_t m = 0;
    int rc;

    if (n == 0)
        return 0;
    if (sp->readonly)
        return err_set(err, -EROFS, "spool %s: delete: opened read-only", sp->path);
    if (sp->in_batch)
        return err_set(err, -EBUSY, "spool %s: delete: an append batch is open on this "
                       "handle", sp->path);
    if (n > sp->dcap) {
        uint64_t *p = realloc(sp->dsorted, n * sizeof(*p));
        if (p == NULL)
            return err_set(err, -ENOMEM, "spool %s: delete: out of memory", sp->path);
        sp->dsorted = p;
        sp->dcap = n;
    }
    for (size_t i = 0; i < n; i++)
        if (seqs[i] != 0 && seqs[i] <= (uint64_t)SPOOL_SEQ_MASK)
            sp->dsorted[m++] = seqs[i];
    if (m == 0)
        return 0;
    m = spool_sort_seqs(sp, m);
    if ((rc = sqlite3_step(sp->st_begin)) != SQLITE_DONE) {
        sqlite3_reset(sp->st_begin);
        rc = spool_fail(sp, err, rc, "delete");
        spool_abort(sp);
        return rc;
    }
    sqlite3_reset(sp->st_begin);
    if ((rc = sqlite3_step(sp->st_maxseq)) == SQLITE_ROW)
        maxseq = sqlite3_column_int64(sp->st_maxseq, 0);
    sqlite3_reset(sp->st_maxseq);
    if (rc != SQLITE_ROW)
        goto fail;
    for (size_t i = 0; i < m;) {
        int64_t lo = (int64_t)sp->dsorted[i], hi = lo, want, got;

        while (++i < m && (int64_t)sp->dsorted[i] <= hi + 1)
            hi = (int64_t)sp->dsorted[i];
        want = hi - lo + 1;
        if ((got = spool_delete_range(sp, lo, hi, want)) < want && got >= 0 && !reloaded) {
            /* Maybe a lane this handle has not seen yet: learn them all, once. The
             * rest of a short run is rows that are gone already (compacted). */
            reloaded = true;
            if ((rc = spool_lanes_load(sp, err)) < 0) {
                spool_abort(sp);
                return rc;
            }
            int64_t more = spool_delete_range(sp, lo, hi, want - got);
            got = more < 0 ? more : got + more;
        }
        if (got < 0) {
            rc = (int)-got;
            goto fail;
        }
        if (lo <= maxseq && maxseq <= hi)
            floor = true;
    }
    if (floor) {
        /* The highest sequence handed out goes: remember it, so no later append,
         * after a reopen or not, can hand it out again. */
        sqlite3_bind_int64(sp->st_floor, 1, maxseq);
        if ((rc = spool_step_done(sp->st_floor)) != SQLITE_OK)
            goto fail;
    }
    rc = sqlite3_step(sp->st_commit);
    sqlite3_reset(sp->st_commit);
    if (rc != SQLITE_DONE)
        goto fail;
    return 0;
fail:
    rc = spool_fail(sp, err, rc, "delete");
    spool_abort(sp);
    return rc;
}

/* ---- stats ------------------------------------------------------------------ */

static uint64_t
spool_file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

int
spool_stats(struct spool *sp, struct spool_stats *st, struct err *err)
{
    sqlite3_stmt *q = sp->st_stats;
    size_t cap = 0;
    int rc;

    memset(st, 0, sizeof(*st));
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (st->nlanes == cap) {
            struct spool_lane_stats *l;
            cap = cap ? cap * 2 : 8;
            if ((l = realloc(st->lanes, cap * sizeof(*l))) == NULL) {
                sqlite3_reset(q);
                spool_stats_fini(st);
                return err_set(err, -ENOMEM, "spool %s: stats: out of memory", sp->path);
            }
            st->lanes = l;
        }
        struct spool_lane_stats *ls = &st->lanes[st->nlanes++];
        const char *name = (const char *)sqlite3_column_text(q, 0);
        snprintf(ls->name, sizeof(ls->name), "%s", name ? name : "");
        ls->records = (uint64_t)sqlite3_column_int64(q, 1);
        ls->bytes = (uint64_t)sqlite3_column_int64(q, 2);
        ls->oldest_ms = sqlite3_column_int64(q, 3);
        st->records += ls->records;
        st->bytes += ls->bytes;
    }
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) {
        rc = spool_fail(sp, err, rc, "stats");
        spool_stats_fini(st);
        return rc;
    }
    st->file_bytes = spool_file_size(sp->path) + spool_file_size(sp->wal_path);
    return 0;
}

void
spool_stats_fini(struct spool_stats *st)
{
    if (st == NULL)
        return;
    free(st->lanes);
    memset(st, 0, sizeof(*st));
}

/* ---- fault seams ------------------------------------------------------------ */

#ifdef SLUICE_FAULT_SEAMS
void
spool_fault_fail_commit(struct spool *sp, unsigned nth)
{
    sp->fault_nth = nth;
}

void
spool_fault_fail_all(struct spool *sp, bool on)
{
    sp->fault_all = on;
}

int
spool_fault_max_pages(struct spool *sp, uint32_t pages)
{
    char sql[64];
    int rc;

    /* 0 restores SQLite's default limit (0xfffffffe pages). */
    snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lu",
             pages ? (unsigned long)pages : 0xfffffffeUL);
    rc = sqlite3_exec(sp->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : spool_errno(rc);
}

uint32_t
spool_fault_page_count(struct spool *sp)
{
    int64_t v = 0;

    spool_query_int(sp->db, "PRAGMA page_count", &v);
    return (uint32_t)v;
}
#endif
