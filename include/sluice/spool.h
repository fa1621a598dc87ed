/* spool.h - durable FIFO between MQTT ingest and the Kafka forwarder.
 *
 * One SQLite file in WAL mode. Only the ingest side appends; only the forwarder
 * claims and deletes; each opens its own handle (connection) on the same path, and
 * a handle is used by one thread at a time. Records are Kafka-ready: routing and
 * decoding happened before the append. Order: a global, monotonic sequence; within
 * a lane, records are claimed in sequence order. See spool.c for the durability
 * essay. */
#ifndef SLUICE_SPOOL_H
#define SLUICE_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"
#include "sluice/record.h"

struct err;
struct spool;

/* Exit code for a spool that cannot be opened or written (EX_IOERR). */
#define SPOOL_EXIT_IOERR 74

struct spool_conf {
    const char            *path;
    enum config_durability durability;
    bool                   readonly;     /* `sluice spool stats`: never writes */
    const struct config   *policy;       /* borrowed during the open: retention
                                            (spool.max_bytes/max_age/when_full, lanes);
                                            NULL = keep everything */
    bool                   journal;      /* the ingest handle: plain appends go through
                                            the intake journal (spool.c) */
    struct live           *live;         /* with journal: the live path to offer
                                            records to (live.h); borrowed, NULL: none */
    int                    cache_kib;    /* page cache; 0: SPOOL_CACHE_KIB (spool.c) */
};

/* Opens (creating with mode 0600, parent directory 0700, when absent), migrates the
 * schema (PRAGMA user_version), runs a quick integrity check. Errors: -EIO / -EACCES /
 * -ENOSPC / -EBADMSG (corrupt, or a newer schema version) with a sentence naming the
 * path and reason. Never deletes or rewrites a damaged file. Returns owned *out. */
int  spool_open(struct spool **out, const struct spool_conf *conf, struct err *err);
void spool_close(struct spool *sp);        /* NULL and half-built spools are fine */

/* Replaces the retention policy with a copy of cfg's spool and lanes sections (on
 * SIGHUP, by the thread that uses the handle). 0 or -ENOMEM (the old one stays). */
int  spool_set_policy(struct spool *sp, const struct config *cfg);

/* Appends a copy of rec and sets rec->seq. With commit true the row is committed
 * before return (the QoS 1/2 path: the PUBACK follows). With commit false it joins an
 * open transaction that spool_commit ends (the QoS 0 batch path). On a handle opened
 * with conf.journal the row goes to the intake journal instead: commit true makes it
 * durable there (one write), spool_commit moves the journal into the database
 * (the sequence rec->seq receives at the append goes with it). Errors: -ENOSPC
 * (disk or spool full), -EIO, with a sentence; the row is then not in the spool and
 * any open batch was rolled back (the count of rows lost is in err).
 *
 * Retention (spool.max_bytes): the spool's size is its live pages, (page_count -
 * freelist_count) x page_size, which two header reads give per append. At or over
 * max_bytes, when_full: drop_oldest first evicts whole batches of the oldest rows
 * of the lowest-priority lane that has any (inside the open batch, if one is open),
 * counting them in metrics.dropped[DROP_SPOOL_FULL]; when_full: backpressure
 * returns -ENOSPC instead and leaves an open batch as it was. A record that is a
 * dead letter also leaves a line in the dead-letter log (spool_dead_letters). */
int  spool_append(struct spool *sp, struct record *rec, bool commit, struct err *err);
int  spool_commit(struct spool *sp, struct err *err);      /* no-op without a batch */
/* spool_commit, unless the live path is producing from the queue (live_holding) and
 * the journal is young and small: then its frames are only written to the file, and
 * the merge waits for Kafka's acknowledgements (so it can skip those records).
 * 1 when it waited, else spool_commit's result. */
int  spool_commit_or_hold(struct spool *sp, struct err *err);
/* Whether merges wait for the live path now (no open database batch, the forwarder
 * producing from the queue): then a big QoS 0 batch need not be committed inline. */
bool spool_holding(const struct spool *sp);
/* Whether the last spool_append went to the live queue (wake the forwarder). */
bool spool_offered(const struct spool *sp);

/* Durable per-route state (deadband last values, aggregate accumulators): rows of
 * the route_state table, (route, key) -> value, where route names the owner (e.g.
 * "deadband/<route name>") and key is the Kafka key. */
struct spool_state_put {
    const char *route;                       /* borrowed, NUL-terminated */
    const void *key;    size_t key_len;      /* borrowed */
    const void *value;  size_t value_len;    /* borrowed; value NULL deletes the row */
};
/* As spool_append, with puts[0..n) written in the same transaction as the record:
 * after a crash either both are in the file or neither. With commit false they join
 * the open batch (and are rolled back with it). n == 0 is spool_append. */
int  spool_append_with_state(struct spool *sp, struct record *rec, bool commit,
                             const struct spool_state_put *puts, size_t n,
                             struct err *err);
/* Aggregates: recs[0..nrecs) (closed windows; may be none) and puts[0..n) (the
 * accumulators) in one transaction that is committed before it returns, joining
 * (and so committing) an open QoS 0 batch. All or nothing: when anything fails after
 * a row was written, the whole open batch is rolled back (the sentence says how many
 * rows), so route state never waits uncommitted and a reload of it is exact. */
int  spool_append_all(struct spool *sp, struct record *recs, size_t nrecs,
                      const struct spool_state_put *puts, size_t n, struct err *err);
/* Calls fn for every route_state row whose route starts with prefix, in the spool
 * file at path, through a read-only connection of its own (any thread; works while
 * the bridge runs; reads only committed state). A missing file, or a spool from
 * before route_state, has no rows. fn returns 0 to go on, > 0 to stop, < 0 (-errno)
 * to fail. 0 or -errno with a sentence. */
int  spool_state_read(const char *path, const char *prefix,
                      int (*fn)(const char *route, const void *key, size_t key_len,
                                const void *value, size_t value_len, void *arg),
                      void *arg, struct err *err);
size_t spool_pending(const struct spool *sp);              /* rows in the open batch */
int64_t spool_pending_since_ms(const struct spool *sp);    /* mono ms the batch began */

/* fsync(2) of the WAL file: the `durability: process` sync_interval tick. Any thread
 * (it uses its own descriptor, and its own connection to checkpoint the WAL first,
 * so the appending thread does not), but not concurrently with spool_close.
 * 0 or -errno. */
int  spool_sync_wal(struct spool *sp);

/* Evicts rows older than their lane's max_age (or spool.max_age), counting them in
 * metrics.dropped[DROP_MAX_AGE], and logs the drops of both kinds in aggregate, one
 * line per lane and reason at most every SPOOL_DROP_LOG_MS. Cheap when there is
 * nothing to do (one seek per lane): call it about once a second, on the appending
 * handle's thread, outside an append batch (it skips its work while one is open). */
#define SPOOL_DROP_LOG_MS 10000
int  spool_retain(struct spool *sp, int64_t now_ms, struct err *err);

/* The dead-letter log: metadata of the last SPOOL_DEAD_KEEP dead letters (not their
 * payloads), kept so they can be inspected while Kafka is unreachable. The ingest
 * side adds undecodable messages (spool_append); the forwarder adds records Kafka
 * rejected (spool_dead_note). */
#define SPOOL_DEAD_KEEP 10000
struct spool_dead {
    int64_t  at_ms;          /* wall clock */
    char     stage[16];      /* decode | route | kafka */
    char     error[128];
    char     mqtt_topic[256];
    char     kafka_topic[256];   /* "" for decode/route dead letters */
    uint64_t size;           /* bytes of the record */
};
int  spool_dead_note(struct spool *sp, const struct spool_dead *d, struct err *err);
/* Calls fn for each kept dead letter, oldest first, until it returns non-zero. */
int  spool_dead_letters(struct spool *sp, int (*fn)(const struct spool_dead *, void *),
                        void *arg, struct err *err);

/* Claimed rows: records whose pointers borrow from the batch until reset/fini. */
struct spool_batch {
    struct record *recs;
    size_t         n, cap;
    struct buf    *arena;     /* owned storage for the rows' bytes */
};
void spool_batch_init(struct spool_batch *b);
void spool_batch_reset(struct spool_batch *b);
void spool_batch_fini(struct spool_batch *b);

/* Appends to b up to max records of lane with seq > after_seq, in seq order.
 * Claiming does not change the spool: records stay until spool_delete. */
int  spool_claim(struct spool *sp, const char *lane, uint64_t after_seq, size_t max,
                 struct spool_batch *b, struct err *err);
/* The same, only records with after_seq < seq <= upto. */
int  spool_claim_upto(struct spool *sp, const char *lane, uint64_t after_seq, uint64_t upto,
                      size_t max, struct spool_batch *b, struct err *err);
/* Deletes the given sequences in one transaction. Unknown sequences are ignored. */
int  spool_delete(struct spool *sp, const uint64_t *seqs, size_t n, struct err *err);

struct spool_lane_stats {
    char     name[64];
    uint64_t records;
    uint64_t bytes;         /* payload + key + topic + header bytes */
    int64_t  oldest_ms;     /* ingest time of the oldest record, 0 when empty */
};
struct spool_stats {
    struct spool_lane_stats *lanes;   /* owned, free with spool_stats_fini */
    size_t                   nlanes;
    uint64_t                 records, bytes;
    uint64_t                 file_bytes;   /* database + WAL on disk */
};
int  spool_stats(struct spool *sp, struct spool_stats *st, struct err *err);
void spool_stats_fini(struct spool_stats *st);

/* spool.on_corrupt: quarantine. Moves a spool spool_open refused with -EBADMSG aside:
 * renames path, path-wal and path-shm (those present) to <path>.corrupt-<UTC
 * yyyymmddThhmmssZ> plus the same suffixes, never over an existing file, so SQLite
 * still pairs the aside file with its WAL. Then describes what was lost: sizes, and
 * the rows of the records table counted through a read-only connection when the file
 * still answers (rows -1 when not). The aside files' bytes are never changed.
 * 0 or -errno with a sentence; on error the spool may be partly moved (the sentence
 * says which file failed), and the caller must not start a fresh spool. */
struct spool_damage {
    char    aside[4096];       /* the new path of the main file (PATH_MAX) */
    int64_t bytes;             /* size of the main file */
    int64_t wal_bytes;         /* size of its WAL; 0 when absent */
    int64_t rows;              /* records table rows, or -1 when unreadable */
};
int  spool_quarantine(const char *path, struct spool_damage *out, struct err *err);

#ifdef SLUICE_FAULT_SEAMS
/* Test builds only: the Nth commit from now (1 = next) fails with -EIO, and every
 * commit fails while spool_fault_fail_all is set. */
void spool_fault_fail_commit(struct spool *sp, unsigned nth);
void spool_fault_fail_all(struct spool *sp, bool on);
/* Caps the file at pages pages (PRAGMA max_page_count on this handle), so appends
 * hit SQLITE_FULL like a full disk; 0 lifts the cap. 0 or -errno. */
int  spool_fault_max_pages(struct spool *sp, uint32_t pages);
uint32_t spool_fault_page_count(struct spool *sp);   /* PRAGMA page_count */
#endif

#endif
