/* forward.c - claim from the spool -> produce -> delivery report -> delete.
 *
 * Design. One thread owns the rd_kafka_t and the forwarder's spool connection and is
 * the only caller of rd_kafka_poll, so every librdkafka callback (delivery reports,
 * errors) runs here and the state below needs no locks. The loop:
 *
 *   1. claims records lane by lane in priority order (lower number first; ties in
 *      config order; lanes found only in the spool last), each lane from a cursor
 *      (the last sequence claimed from it), while fewer than FORWARD_WINDOW records
 *      are in flight and the byte budget of forward.max_rate allows, and not at all
 *      while Kafka is unreachable (see fw_fill);
 *   2. produces each with a copy of key, value and headers and a slot from a fixed
 *      pool as the opaque (the slot carries the sequence home in the delivery report);
 *   3. sleeps in poll(2), at most 50 ms so it never depends on a wake-up alone, on two
 *      eventfds: cfd, written by librdkafka's main queue (rd_kafka_queue_io_event_enable)
 *      and by stop and config requests, always; and efd, written by forward_notify
 *      (a record was committed), only while a claim could follow (fw_can_claim). While
 *      the claims are paced, the window is full or Kafka is away, the ingest thread's
 *      notifies wait in efd unread, and since forward_notify writes only when the last
 *      write was read, it makes no system call per message either;
 *   4. serves delivery reports: an acknowledged sequence joins a pending list that is
 *      deleted from the spool in one transaction per 1000 acks or 20 ms, in whole
 *      runs below the oldest record in flight (fw_delete_flush). Deleting in batches
 *      keeps SQLite commits (and their fsyncs) off the per-record path; a crash in
 *      between only re-sends those records (at-least-once, bounded by the window and
 *      FW_PEND_MAX).
 *
 * The live path (live.c has the protocol). Once every lane is drained and Kafka is
 * there, the loop stops claiming and produces the ingest handle's records from the
 * live queue as their journal frames are written (fw_live_fill); its cursors follow,
 * so the claims pick up exactly where the queue stopped whenever the path steps
 * aside (an outage, a full window or queue, a refusal, a record on the database path,
 * forward.max_rate, a stop). A record acknowledged before the journal is merged is
 * not deleted but reported to live_ack, and the merge never writes it (fw_done).
 *
 * Order. The producer is idempotent with acks=all and message.timeout.ms=0:
 * librdkafka retries every transient error itself, in order, forever, so a record
 * never times out (a timed-out record leaves a sequence gap, and re-sending it later
 * would put it behind younger records of its key). What does reach a delivery report
 * with an error is therefore one of:
 *   - a fatal idempotence error (rd_kafka_fatal_error), or a producer-state error
 *     on the record (INVALID_PRODUCER_EPOCH, PRODUCER_FENCED, UNKNOWN_PRODUCER_ID,
 *     OUT_OF_ORDER_SEQUENCE_NUMBER): the producer is purged, destroyed and
 *     recreated, and every cursor rewinds to 0, so everything not yet acknowledged
 *     is re-sent from the spool in sequence order (test_kafka_fatal);
 *   - our own purge, or a timeout that configuration should have made impossible:
 *     handled like the fatal case (re-send, never skip);
 *   - a permanent rejection of this one record: see fw_dead_letter.
 *
 * Permanent errors. Because librdkafka already retried everything it considers
 * retriable, any other error is final for the record. The ones we expect are
 * MSG_SIZE_TOO_LARGE (local or broker), RECORD_LIST_TOO_LARGE, INVALID_RECORD (e.g.
 * no key on a compacted topic), INVALID_TIMESTAMP (an event time outside the
 * broker's message.timestamp.difference.max.ms: a device with a wrong clock),
 * _UNKNOWN_TOPIC / UNKNOWN_TOPIC_OR_PART (librdkafka reports these only after
 * topic.metadata.propagation.max.ms of the topic being absent), TOPIC_EXCEPTION (an
 * illegal topic name), TOPIC_AUTHORIZATION_FAILED, POLICY_VIOLATION,
 * UNSUPPORTED_FOR_MESSAGE_FORMAT and _INVALID_ARG. Anything else is treated the same
 * way (it is logged as unexpected): the SPEC promises never to block the records
 * behind one, so the conservative choice of retrying an unknown error forever would
 * stall its whole partition.
 *
 * A permanently rejected record is produced again to dead_letter.topic with its
 * original key, timestamp and headers plus error=<librdkafka error name>,
 * error.stage=kafka and kafka.topic=<where it was going>; a too-large record goes
 * without its value (error.value.bytes says how big it was), since it would not fit
 * there either. The spool row is deleted once the dead-letter copy is acknowledged.
 * A record that was already a dead letter, or whose dead-letter copy is rejected
 * too, is logged, counted and deleted: it cannot go anywhere else.
 *
 * Thread rules: forward_notify and forward_set_config may be called from any thread;
 * everything else from the owner (main). The config pointer is swapped at a loop
 * boundary: forward_set_config publishes it and waits until the thread has taken it,
 * so the caller may free the old one when it returns. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "sluice/buf.h"
#include "sluice/clock.h"
#include "sluice/config.h"
#include "sluice/err.h"
#include "sluice/forward.h"
#include "sluice/live.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/record.h"
#include "sluice/spool.h"

#define FW_CLAIM_MAX      1000   /* rows per spool_claim: bounds the batch arena */
#define FW_CLAIM_RATED    64     /* smaller claims under max_rate: less re-reading */
#define FW_REFILL_MIN     1000   /* claim only when this many window slots are free */
#define FW_IDLE_MS        50     /* spool poll interval without a notify */
#define FW_FULL_WAIT_MS   2      /* one wait while the window is full (fw_wait_full) */
#define FW_FULL_LINGER_MS 20     /* ... used from this linger.ms on */
/* After a claim that found less than a full batch (the spool is nearly empty: live
 * traffic), the next claim waits this long, so a stream of single-record notifies
 * costs one SQL query per interval rather than one per message. It bounds the added
 * latency; a backlog (full batches) is claimed back to back. */
#define FW_CLAIM_PACE_MS  3
#define FW_DELETE_BATCH   1000   /* new acks per spool_delete transaction ... */
#define FW_DELETE_MS      20     /* ... or this old, whichever comes first */
#define FW_PEND_MAX       FORWARD_WINDOW   /* acks held back for whole runs, at most */
#define FW_PROBE_MS       500    /* reachability probe while down and idle */
#define FW_PROBE_WAIT_MS  500    /* its first wait for an answer ... */
#define FW_PROBE_WAIT_MAX 8000   /* ... doubled up to this while answers come late */
#define FW_GRACE_MS       3000   /* no "unreachable" line for a slow first connect */
#define FW_PURGE_WAIT_MS  2000   /* delivery reports of purged messages */
#define FW_LOG_EVERY_MS   60000  /* repeated librdkafka complaints */

enum fw_msg_kind {
    FW_MSG_FREE = 0,
    FW_MSG_RECORD,      /* the record, going to its own topic */
    FW_MSG_DEAD,        /* its dead-letter copy */
};

/* One in-flight record: the delivery report's opaque. */
struct fw_msg {
    uint64_t       seq;           /* the spool row to delete once acknowledged */
    uint32_t       route;         /* for delivered{route} */
    uint8_t        kind;          /* enum fw_msg_kind */
    bool           final;         /* already a dead letter: never dead-letter again */
    bool           live;          /* produced from the live queue: see fw_done */
    size_t         bytes;         /* key + value + headers, for forward_bytes */
    int64_t        ingest_ms;     /* MQTT arrival (epoch ms), for the latency histogram */
    struct fw_msg *next_free;     /* free list link while FW_MSG_FREE */
};

struct fw_lane {
    char     *name;       /* owned copy: survives a config swap */
    int       priority;
    size_t    order;      /* config order, or SIZE_MAX for spool-only lanes */
    uint64_t  cursor;     /* last claimed sequence */
};

struct forward {
    /* Owner / any thread. */
    pthread_t        thread;
    bool             started;        /* owner: the thread exists and is not joined */
    atomic_bool      stop;           /* owner -> thread: stop claiming, flush, exit */
    int              stop_flush_ms;  /* written before stop is set */
    int              efd;            /* eventfd: forward_notify (records committed) */
    int              cfd;            /* eventfd: librdkafka main queue, stop, config */
    atomic_bool      connected;      /* forward_is_connected */
    atomic_bool      wake_pending;   /* a notify wrote efd and the thread has not woken */
    atomic_uint_fast64_t heartbeat;  /* forward_heartbeat: +1 per loop pass / retry */

    pthread_mutex_t  mu;             /* guards the four fields below */
    pthread_cond_t   cv;
    const struct config *cfg_next;
    uint64_t         cfg_req, cfg_ack;
    bool             running;        /* thread takes config swaps */

    /* Forwarder thread (or the owner while the thread is not running). */
    const struct config *cfg;        /* borrowed; swapped by fw_config_sync */
    struct spool    *sp;             /* owned: the forwarder's own handle */
    rd_kafka_t      *rk;             /* the producer; NULL between recreations */
    rd_kafka_queue_t *mainq;         /* rk's main queue, wired to efd */
    rd_kafka_t      *mock_rk;        /* "embedded": hosts the mock cluster */
    rd_kafka_mock_cluster_t *mock;
    char            *bootstrap;      /* owned: what the producer connects to */

    struct fw_lane  *lanes;          /* in claim order */
    size_t           nlanes;

    struct fw_msg   *pool;           /* FORWARD_WINDOW slots */
    struct fw_msg   *free_list;
    size_t           inflight;

    uint64_t        *pend;           /* acknowledged, not yet deleted */
    size_t           npend, cap_pend;
    size_t           npend_held;     /* of them, held back by the last flush */
    int64_t          pend_since_ms;  /* the first ack, or the last flush */

    struct spool_batch batch;

    /* The live path (live.h; the phases are described in live.c). */
    struct live     *live;           /* borrowed; NULL: claims only */
    enum { FW_LIVE_OFF, FW_LIVE_BARRIER, FW_LIVE_ON } live_phase;
    uint64_t         live_barrier;   /* in BARRIER: claim up to this sequence first */
    struct buf       live_buf;       /* live_take's copies */
    uint64_t        *live_acks;      /* acknowledged, for one live_ack_many */
    size_t           nlive_acks;

    uint64_t         txretries;      /* retransmissions seen for the current producer */
    uint64_t         reports;        /* delivery reports from the current producer */
    bool             fatal;          /* recreate the producer at the loop boundary */
    bool             purging;        /* failed reports only free their slots */
    bool             queue_full;     /* librdkafka refused: wait for reports */
    bool             ever_up;        /* reachability logged once at least */
    bool             down_logged;    /* an outage is in progress and was logged */
    bool             suspect;        /* all brokers down while idle: probe to confirm */
    int64_t          down_since_ms;  /* mono ms the outage was noticed */
    int64_t          next_probe_ms;  /* mono ms of the next reachability probe */
    int              probe_wait_ms;  /* how long it waits for the answer (fw_probe) */
    int64_t          start_ms;       /* thread start: first-connect grace */
    int64_t          paced_until_ms; /* no claim before this (FW_CLAIM_PACE_MS) */
    double           linger_ms;      /* the producer's linger.ms (fw_wait_full) */

    double           tokens;         /* max_rate budget, bytes */
    int64_t          tokens_ms;      /* mono ms of the last refill */

    struct log_limiter lim_perm, lim_dead, lim_spool, lim_queue;  /* one per call site */
};

/* librdkafka logs from its own threads; the limiter is shared, so it is locked. */
static pthread_mutex_t fw_log_mu = PTHREAD_MUTEX_INITIALIZER;
static struct log_limiter fw_log_lim;

static void fw_live_leave(struct forward *fw, const char *why);

static int64_t
fw_now(void)
{
    return clock_mono_ms();
}

/* ---- connection state ---------------------------------------------------- */

static void
fw_set_connected(struct forward *fw, bool up)
{
    atomic_store(&fw->connected, up);
    atomic_store_explicit(&metrics.kafka_connected, up ? 1 : 0, memory_order_relaxed);
}

static void
fw_mark_down(struct forward *fw, const char *why)
{
    bool was = atomic_load(&fw->connected);

    if (!was && fw->down_logged)
        return;
    fw_set_connected(fw, false);
    fw->down_since_ms = fw_now();
    fw->down_logged = true;
    fw->next_probe_ms = fw->down_since_ms + FW_PROBE_MS;
    log_warn("forward", "kafka unreachable (%s); records wait in the spool", why);
}

static void
fw_mark_up(struct forward *fw)
{
    if (atomic_load(&fw->connected))
        return;
    fw_set_connected(fw, true);
    if (fw->down_logged)
        log_info("forward", "kafka reachable again after %.1f s",
                 (double)(fw_now() - fw->down_since_ms) / 1000.0);
    else if (!fw->ever_up)
        log_info("forward", "kafka reachable at %s", fw->bootstrap);
    fw->ever_up = true;
    fw->down_logged = false;
}

/* While nothing is in flight no delivery report can tell us Kafka is back, so a
 * metadata request asks. It blocks the loop while it waits, and only while Kafka is
 * unreachable and there is nothing to send. The wait starts at FW_PROBE_WAIT_MS, and
 * doubles each time a broker took the request and did not answer in time: a link
 * with more round-trip time than the wait (a vessel's satellite uplink) would
 * otherwise never count as back. Twice the answer's time is the next outage's first
 * wait. With no broker connected (refused, unreachable) nothing was sent, the error
 * is not a timeout, and the wait stays as it was. */
static int
fw_probe_wait(int64_t ms)
{
    return ms < FW_PROBE_WAIT_MS ? FW_PROBE_WAIT_MS
           : ms > FW_PROBE_WAIT_MAX ? FW_PROBE_WAIT_MAX : (int)ms;
}

static void
fw_probe(struct forward *fw)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e;
    int64_t t0 = fw_now(), took;

    fw->probe_wait_ms = fw_probe_wait(fw->probe_wait_ms);
    fw->next_probe_ms = t0 + FW_PROBE_MS;
    e = rd_kafka_metadata(fw->rk, 0, NULL, &md, fw->probe_wait_ms);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    took = fw_now() - t0;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        fw->probe_wait_ms = fw_probe_wait(took * 2);
        fw->suspect = false;
        fw_mark_up(fw);
        return;
    }
    if (e == RD_KAFKA_RESP_ERR__TIMED_OUT)
        fw->probe_wait_ms = fw_probe_wait((int64_t)fw->probe_wait_ms * 2);
    if (fw->suspect ||
        (!fw->ever_up && !fw->down_logged && fw_now() - fw->start_ms >= FW_GRACE_MS)) {
        fw->suspect = false;
        fw_mark_down(fw, "all brokers down");
    }
}

/* ---- the pool of in-flight slots ------------------------------------------ */

static void
fw_pool_reset(struct forward *fw)
{
    fw->free_list = NULL;
    for (size_t i = FORWARD_WINDOW; i-- > 0;) {
        fw->pool[i].kind = FW_MSG_FREE;
        fw->pool[i].next_free = fw->free_list;
        fw->free_list = &fw->pool[i];
    }
    fw->inflight = 0;
}

static struct fw_msg *
fw_msg_get(struct forward *fw)
{
    struct fw_msg *m = fw->free_list;

    if (m != NULL) {
        fw->free_list = m->next_free;
        fw->inflight++;
    }
    return m;
}

static void
fw_msg_put(struct forward *fw, struct fw_msg *m)
{
    m->kind = FW_MSG_FREE;
    m->next_free = fw->free_list;
    fw->free_list = m;
    fw->inflight--;
}

/* ---- deleting acknowledged rows ------------------------------------------- */

/* The oldest sequence still in flight, UINT64_MAX if none. */
static uint64_t
fw_inflight_min(const struct forward *fw)
{
    uint64_t lo = UINT64_MAX;

    for (size_t i = 0; fw->inflight > 0 && i < FORWARD_WINDOW; i++)
        if (fw->pool[i].kind != FW_MSG_FREE && fw->pool[i].seq < lo)
            lo = fw->pool[i].seq;
    return lo;
}

/* Deletes acknowledged rows: those below the oldest record still in flight, or,
 * with all (a stop, a producer going away, FW_PEND_MAX held), every one.
 *
 * Why hold any back. Records go to many partitions and come home a partition's
 * batch at a time, so right after a report the acknowledged sequences are
 * scattered: a 600k drain into 256 partitions deleted 1.45 rows per range statement,
 * at 2.7 us of the forwarder's CPU per row (half its time), and every partial
 * delete rewrites a leaf that a later one frees. Below the oldest in-flight
 * sequence nothing the forwarder produced is missing (it is acknowledged: pending
 * or deleted already), so those rows are long runs (broken only where another
 * lane's unclaimed rows sit): one range statement each, whole leaves freed. The
 * rest wait for the next flush; at most FW_PEND_MAX of them, so a record stuck in
 * flight (its partition's leader is away) costs scattered deletes again, never an
 * unbounded list. Measured on a 600k drain (bench/run-pipeline.sh): with
 * FW_PEND_MAX 4000, 19 rows per statement (the cap was hit on 5% of the flushes,
 * whose holes break later runs), 1.67-1.75 us per row, disk bytes written per
 * payload byte 3.8 -> 2.7; with 2000, the cap on a quarter of the flushes and 2.15
 * us; with 8000, 330 rows per statement but still 1.61 us (SQLite's per-row cost
 * of a delete), for twice the re-sends after a crash. Held acknowledgements are
 * re-sent after a crash, like the in-flight records: see RESEND_PER_KILL in
 * tests/integration. */
static void
fw_delete_flush(struct forward *fw, bool all)
{
    struct err e = {0};
    size_t n = fw->npend;

    if (fw->npend == 0)
        return;
    if (!all && fw->npend < FW_PEND_MAX) {
        uint64_t lo = fw_inflight_min(fw);
        n = 0;
        for (size_t i = 0; i < fw->npend; i++) {
            if (fw->pend[i] < lo) {
                uint64_t t = fw->pend[n];
                fw->pend[n++] = fw->pend[i];
                fw->pend[i] = t;
            }
        }
    }
    fw->pend_since_ms = fw_now();
    if (n > 0 && spool_delete(fw->sp, fw->pend, n, &e) < 0) {
        /* The rows stay and are retried at the next flush; if the spool keeps
         * failing, a restart re-sends them (duplicates, never losses). */
        log_limited(&fw->lim_spool, FW_LOG_EVERY_MS, LOG_ERROR, "forward",
                    "cannot delete %zu acknowledged records from the spool: %s",
                    fw->npend, e.msg);
        if (fw->npend < (size_t)FORWARD_WINDOW * 10)
            return;
        log_error("forward", "dropping %zu pending deletes; they will be sent again "
                  "after a restart", fw->npend);
        n = fw->npend;
    }
    memmove(fw->pend, fw->pend + n, (fw->npend - n) * sizeof(*fw->pend));
    fw->npend -= n;
    fw->npend_held = fw->npend;
}

static void
fw_delete_add(struct forward *fw, uint64_t seq)
{
    if (fw->npend == fw->cap_pend) {
        size_t ncap = fw->cap_pend * 2;
        uint64_t *p = realloc(fw->pend, ncap * sizeof(*p));
        if (p == NULL) {
            fw_delete_flush(fw, true);
            if (fw->npend == fw->cap_pend)
                return;   /* the row stays in the spool: re-sent after a restart */
        } else {
            fw->pend = p;
            fw->cap_pend = ncap;
        }
    }
    if (fw->npend == 0)
        fw->pend_since_ms = fw_now();
    fw->pend[fw->npend++] = seq;
    if (fw->npend - fw->npend_held >= FW_DELETE_BATCH)
        fw_delete_flush(fw, false);
}

/* The record of m is in Kafka (or its dead-letter copy is, or it can go nowhere):
 * its row goes, now, or, for a record the live path produced before the journal
 * was merged, by the merge skipping it (live_ack). */
static void fw_live_acks(struct forward *fw);

static void
fw_done(struct forward *fw, const struct fw_msg *m)
{
    if (!m->live || fw->live == NULL) {
        fw_delete_add(fw, m->seq);
        return;
    }
    if (fw->nlive_acks == FORWARD_WINDOW)
        fw_live_acks(fw);                           /* full: report these first */
    fw->live_acks[fw->nlive_acks++] = m->seq;       /* see fw_live_acks */
}

/* Reports the acknowledgements fw_done collected (one lock for a poll's worth, not
 * one per record: the ingest thread offers under the same lock), deletes the rows
 * that are in SQLite already, and those a merge inserted while their
 * acknowledgement was on its way (live_late). */
static void
fw_live_acks(struct forward *fw)
{
    uint64_t late[256];
    size_t n;

    if (fw->live == NULL)
        return;
    n = live_ack_many(fw->live, fw->live_acks, fw->nlive_acks);
    for (size_t i = 0; i < n; i++)
        fw_delete_add(fw, fw->live_acks[i]);
    fw->nlive_acks = 0;
    while ((n = live_late(fw->live, late, 256)) > 0)
        for (size_t i = 0; i < n; i++)
            fw_delete_add(fw, late[i]);
}

/* ---- producing ------------------------------------------------------------ */

static bool
fw_err_is_size(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

/* The errors we expect to see as final for one record (see the top of the file). */
static bool
fw_err_is_known_permanent(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return true;
    default:
        return false;
    }
}

/* Errors after which the record must be sent again, in order, by a new producer.
 * The producer-state errors are among them: they say nothing about the record, and
 * librdkafka 2.0.2 reports INVALID_PRODUCER_EPOCH per record without raising a fatal
 * error (measured with the mock cluster: treated as permanent, 10 healthy records
 * went to the dead-letter topic). */
static bool
fw_err_is_resend(struct forward *fw, rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR__FATAL || e == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
           e == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT || e == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ||
           e == RD_KAFKA_RESP_ERR__TIMED_OUT || e == RD_KAFKA_RESP_ERR__DESTROY ||
           e == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH ||
           e == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           e == RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID ||
           e == RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER ||
           rd_kafka_fatal_error(fw->rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Builds the Kafka headers of rec: the SPEC's fixed ones, then the extra block. */
static rd_kafka_headers_t *
fw_headers(const struct forward *fw, const struct record *rec, size_t *bytes)
{
    struct record_header fixed[RECORD_FIXED_HEADERS], h;
    char scratch[RECORD_SCRATCH];
    rd_kafka_headers_t *hdrs;
    size_t n, off = 0, extra = 0;

    while (record_hdrs_next(rec->hdrs, rec->hdrs_len, &off, &h))
        extra++;
    hdrs = rd_kafka_headers_new(RECORD_FIXED_HEADERS + extra);
    n = record_fixed_headers(rec, fw->cfg->instance, scratch, fixed);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_header_add(hdrs, fixed[i].name, (ssize_t)fixed[i].name_len,
                            fixed[i].value, (ssize_t)fixed[i].value_len);
        *bytes += fixed[i].name_len + fixed[i].value_len;
    }
    off = 0;
    while (record_hdrs_next(rec->hdrs, rec->hdrs_len, &off, &h)) {
        rd_kafka_header_add(hdrs, h.name, (ssize_t)h.name_len, h.value,
                            (ssize_t)h.value_len);
        *bytes += h.name_len + h.value_len;
    }
    return hdrs;
}

/* Leaves a line in the spool's dead-letter log (`sluice spool dead-letters`), so a
 * rejection is visible even before its copy reaches the dead-letter topic. */
static void
fw_dead_note(struct forward *fw, rd_kafka_headers_t *hdrs, const char *reason,
             const char *topic, size_t bytes)
{
    struct spool_dead d = { .at_ms = clock_wall_ms(), .size = bytes };
    struct err e = { 0 };
    const void *v = NULL;
    size_t vlen = 0;

    snprintf(d.stage, sizeof(d.stage), "kafka");
    snprintf(d.error, sizeof(d.error), "%s", reason);
    snprintf(d.kafka_topic, sizeof(d.kafka_topic), "%s", topic);
    if (rd_kafka_header_get_last(hdrs, "mqtt.topic", &v, &vlen) ==
            RD_KAFKA_RESP_ERR_NO_ERROR && v != NULL)
        snprintf(d.mqtt_topic, sizeof(d.mqtt_topic), "%.*s", (int)vlen, (const char *)v);
    if (spool_dead_note(fw->sp, &d, &e) < 0)
        log_limited(&fw->lim_spool, FW_LOG_EVERY_MS, LOG_ERROR, "forward",
                    "cannot note a dead letter in the spool: %s", e.msg);
}

/* A record Kafka refused for good: it is gone from the spool after this (at once,
 * or when its dead-letter copy is acknowledged). Takes m and hdrs. */
static void
fw_dead_letter(struct forward *fw, struct fw_msg *m, const char *topic, const void *key,
               size_t key_len, const void *value, size_t value_len, int64_t ts_ms,
               rd_kafka_headers_t *hdrs, rd_kafka_resp_err_t why)
{
    const char *dlt = fw->cfg->dead_letter_topic;
    const char *reason = rd_kafka_err2name(why);
    char size[24];
    rd_kafka_resp_err_t e;

    metrics_add(&metrics.kafka_errors[KERR_PERMANENT], 1);
    if (m->final || m->kind == FW_MSG_DEAD || strcmp(topic, dlt) == 0) {
        log_limited(&fw->lim_dead, FW_LOG_EVERY_MS, LOG_ERROR, "forward",
                    "kafka rejected dead-letter record %" PRIu64 " for %s (%s); "
                    "deleted, it has nowhere else to go", m->seq, topic,
                    rd_kafka_err2str(why));
        rd_kafka_headers_destroy(hdrs);
        fw_done(fw, m);
        fw_msg_put(fw, m);
        return;
    }
    log_limited(&fw->lim_perm, FW_LOG_EVERY_MS, LOG_WARN, "forward",
                "kafka rejected a record for %s (%s%s); sending it to %s", topic,
                rd_kafka_err2str(why),
                fw_err_is_known_permanent(why) ? "" : ", unexpected: treated as permanent",
                dlt);
    rd_kafka_header_add(hdrs, "error", 5, reason, -1);
    rd_kafka_header_add(hdrs, "error.stage", 11, "kafka", 5);
    rd_kafka_header_add(hdrs, "kafka.topic", 11, topic, -1);
    fw_dead_note(fw, hdrs, reason, topic, key_len + value_len);
    if (fw_err_is_size(why)) {
        snprintf(size, sizeof(size), "%zu", value_len);
        rd_kafka_header_add(hdrs, "error.value.bytes", 17, size, -1);
        value = NULL;
        value_len = 0;
    }
    m->kind = FW_MSG_DEAD;
    e = rd_kafka_producev(fw->rk, RD_KAFKA_V_TOPIC(dlt),
                          RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_KEY(key, key_len),
                          RD_KAFKA_V_VALUE((void *)(uintptr_t)value, value_len),
                          RD_KAFKA_V_TIMESTAMP(ts_ms), RD_KAFKA_V_HEADERS(hdrs),
                          RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    rd_kafka_headers_destroy(hdrs);
    if (e == RD_KAFKA_RESP_ERR__FATAL) {
        fw->fatal = true;           /* the record stays; re-sent by the new producer */
        fw_msg_put(fw, m);
    } else if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        /* Only with huge records: the row stays in the spool and goes again after
         * the next producer restart or bridge restart. Never blocks the others. */
        log_limited(&fw->lim_queue, FW_LOG_EVERY_MS, LOG_WARN, "forward",
                    "producer queue full; dead-letter copy of record %" PRIu64
                    " postponed to the next restart", m->seq);
        fw_msg_put(fw, m);
    } else {
        log_limited(&fw->lim_dead, FW_LOG_EVERY_MS, LOG_ERROR, "forward",
                    "cannot dead-letter record %" PRIu64 " to %s (%s); deleted",
                    m->seq, dlt, rd_kafka_err2str(e));
        metrics_add(&metrics.kafka_errors[KERR_PERMANENT], 1);
        fw_done(fw, m);
        fw_msg_put(fw, m);
    }
}

/* Produces one claimed record. 0 when it is on its way (or was dealt with for good),
 * -EAGAIN when librdkafka cannot take it now (retry later, from this record on). */
static int
fw_produce(struct forward *fw, const struct record *rec, bool live)
{
    struct fw_msg *m;
    rd_kafka_headers_t *hdrs;
    rd_kafka_resp_err_t e;
    char topic[256];
    size_t bytes = rec->key_len + rec->value_len;

    if ((m = fw_msg_get(fw)) == NULL)
        return -EAGAIN;
    /* Spool strings are length-delimited; librdkafka wants a C string. Topic names
     * are at most 249 bytes; a longer one is an illegal topic and dead-letters. */
    snprintf(topic, sizeof(topic), "%.*s", (int)(rec->topic_len < 255 ? rec->topic_len : 255),
             rec->topic);
    hdrs = fw_headers(fw, rec, &bytes);
    *m = (struct fw_msg){.seq = rec->seq, .route = rec->route, .kind = FW_MSG_RECORD,
                         .final = rec->dead_letter, .live = live, .bytes = bytes,
                         .ingest_ms = rec->ingest_ms};
    e = rd_kafka_producev(fw->rk, RD_KAFKA_V_TOPIC(topic),
                          RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_KEY(rec->key, rec->key_len),
                          RD_KAFKA_V_VALUE((void *)(uintptr_t)rec->value, rec->value_len),
                          RD_KAFKA_V_TIMESTAMP(rec->event_ms), RD_KAFKA_V_HEADERS(hdrs),
                          RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* The cap counts what crosses the uplink per record: key, value, headers. */
        if (fw->cfg->forward_max_rate > 0)
            fw->tokens -= (double)bytes;
        return 0;
    }
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL || e == RD_KAFKA_RESP_ERR__FATAL ||
        fw_err_is_resend(fw, e)) {
        rd_kafka_headers_destroy(hdrs);
        fw_msg_put(fw, m);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            fw->queue_full = true;
        else
            fw->fatal = true;
        return -EAGAIN;
    }
    fw_dead_letter(fw, m, topic, rec->key, rec->key_len, rec->value, rec->value_len,
                   rec->event_ms, hdrs, e);
    return 0;
}

/* ---- librdkafka callbacks (all on the forwarder thread, from rd_kafka_poll) -- */

static void
fw_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    struct forward *fw = opaque;
    struct fw_msg *m = msg->_private;
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t e = msg->err;

    (void)rk;
    if (m == NULL || m->kind == FW_MSG_FREE)
        return;
    fw->reports++;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        fw_mark_up(fw);
        if (m->kind == FW_MSG_DEAD) {
            metrics_add(&metrics.dead_letter[DEAD_KAFKA], 1);
        } else {
            metrics_add(&metrics.delivered[metrics_route_slot(m->route)], 1);
            metrics_add(&metrics.forward_bytes, m->bytes);
            metrics_observe_latency(clock_wall_ms() - m->ingest_ms);
        }
        fw_done(fw, m);
        fw_msg_put(fw, m);
        return;
    }
    if (fw->purging || fw_err_is_resend(fw, e)) {
        /* Still in the spool; the recreated producer sends it again, in order. */
        if (!fw->purging)
            fw->fatal = true;
        fw_msg_put(fw, m);
        return;
    }
    if (rd_kafka_message_detach_headers((rd_kafka_message_t *)msg, &hdrs) !=
            RD_KAFKA_RESP_ERR_NO_ERROR || hdrs == NULL)
        hdrs = rd_kafka_headers_new(4);
    fw_dead_letter(fw, m, rd_kafka_topic_name(msg->rkt), msg->key, msg->key_len,
                   msg->payload, msg->len, rd_kafka_message_timestamp(msg, NULL), hdrs, e);
}

static void
fw_on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    struct forward *fw = opaque;
    rd_kafka_resp_err_t e = (rd_kafka_resp_err_t)code;

    (void)rk;
    if (e == RD_KAFKA_RESP_ERR__FATAL) {
        fw->fatal = true;
        return;
    }
    metrics_add(&metrics.kafka_errors[KERR_TRANSIENT], 1);
    if (e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        /* With records waiting, that is an outage. While idle it is often only
         * brokers closing idle connections (connections.max.idle.ms), which the
         * next request reopens: a probe tells the two apart. */
        if (fw->inflight > 0) {
            fw_mark_down(fw, "all brokers down");
        } else {
            fw->suspect = true;
            fw->next_probe_ms = 0;
        }
    }
    else
        log_debug("forward", "kafka: %s: %s", rd_kafka_err2name(e), reason);
}

/* librdkafka's own log lines (any of its threads). Errors and warnings are kept,
 * but at most one a minute: a broker that refuses connections for hours would
 * otherwise log every reconnect; the outage itself is reported by fw_mark_down. */
static void
fw_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 4) {
        pthread_mutex_lock(&fw_log_mu);
        log_limited(&fw_log_lim, FW_LOG_EVERY_MS, LOG_WARN, "kafka", "%s: %s", fac, buf);
        pthread_mutex_unlock(&fw_log_mu);
    } else {
        log_debug("kafka", "%s: %s", fac, buf);
    }
}

/* ---- producer lifecycle --------------------------------------------------- */

/* librdkafka retries transient produce errors on its own, in order, by putting the
 * messages back on their partition queue, and no callback tells. Its statistics do:
 * "txmsgs" counts every transmission, so transmissions beyond one per reported or
 * in-flight message are retransmissions (exact once nothing is in flight, a lower
 * bound before). Runs on this thread, from rd_kafka_poll.
 *
 * The statistics carry every partition twice (under its broker and its topic): about
 * 1 MB a second with 256 partitions. Parsing that into a jansson tree took a fifth of
 * the forwarder's CPU in a backlog drain and stalled it ~100 ms a second, with the
 * window going dry meanwhile; forward_stats_txmsgs reads the one number instead. */
static int
fw_on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    struct forward *fw = opaque;
    uint64_t tx, once;

    (void)rk;
    if (forward_stats_txmsgs(json, len, &tx) < 0)
        return 0;
    once = fw->reports + fw->inflight;
    if (tx > once && tx - once > fw->txretries) {
        metrics_add(&metrics.kafka_retries, tx - once - fw->txretries);
        fw->txretries = tx - once;
    }
    return 0;   /* librdkafka frees json */
}

/* librdkafka (rd_kafka_stats_emit_all, 2.0.2) writes the totals last, and the
 * brokers, topics, partitions, cgrp and eos objects before them: the top level's
 * "txmsgs" is the key's last occurrence (a topic named "txmsgs" comes before it too).
 * test_forward checks this against a full parse of real statistics. */
int
forward_stats_txmsgs(const char *json, size_t len, uint64_t *out)
{
    static const char key[] = "\"txmsgs\":";
    const size_t klen = sizeof(key) - 1;
    uint64_t v = 0;
    size_t i, at;

    if (json == NULL || len < klen)
        return -1;
    for (at = len - klen + 1; at-- > 0;)
        if (memcmp(json + at, key, klen) == 0)
            break;
    if (at == SIZE_MAX)
        return -1;
    for (i = at + klen; i < len && json[i] == ' '; i++)
        ;
    if (i == len || json[i] < '0' || json[i] > '9')
        return -1;
    for (; i < len && json[i] >= '0' && json[i] <= '9'; i++) {
        if (v > (UINT64_MAX - (uint64_t)(json[i] - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(json[i] - '0');
    }
    *out = v;
    return 0;
}

static int
fw_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, struct err *err)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        return err_set(err, -EINVAL, "forward: kafka.properties.%s: %s", key, errstr);
    return 0;
}

static int
fw_producer_create(struct forward *fw, struct err *err)
{
    const struct config *cfg = fw->cfg;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512], client_id[300];
    int rc;

    snprintf(client_id, sizeof(client_id), "sluice-%s", cfg->instance);
    if ((rc = fw_conf_set(conf, "client.id", client_id, err)) < 0)
        goto fail;
    /* librdkafka backs off reconnects up to 10 s; an edge uplink that comes back
     * should drain within a second. Each broker keeps its own backoff, and a drain's
     * window holds records for all of them: capped at 2 s, the first broker back was
     * acknowledging within 0.2 s while the window waited up to a second more for the
     * others (alternating 400,000-record drains, with the probe at 2 s as well:
     * 120-130k/s against 173-194k/s). While down, a connect attempt every 0.5 s per
     * broker. Before the user's properties: theirs win. */
    if ((rc = fw_conf_set(conf, "reconnect.backoff.max.ms", "500", err)) < 0)
        goto fail;
    for (size_t i = 0; i < cfg->kafka.nprops; i++) {
        if ((rc = fw_conf_set(conf, cfg->kafka.props[i].key, cfg->kafka.props[i].value,
                              err)) < 0)
            goto fail;
    }
    /* After the user's properties, so they cannot be overridden: the delivery
     * promises rest on these three. */
    if ((rc = fw_conf_set(conf, "bootstrap.servers", fw->bootstrap, err)) < 0 ||
        (rc = fw_conf_set(conf, "enable.idempotence", "true", err)) < 0 ||
        (rc = fw_conf_set(conf, "acks", "all", err)) < 0 ||
        (rc = fw_conf_set(conf, "message.timeout.ms", "0", err)) < 0)
        goto fail;
    if (rd_kafka_conf_get(conf, "statistics.interval.ms", errstr, &(size_t){ sizeof(errstr) }) ==
            RD_KAFKA_CONF_OK &&
        strcmp(errstr, "0") == 0 &&
        (rc = fw_conf_set(conf, "statistics.interval.ms", "1000", err)) < 0)
        goto fail;
    fw->txretries = 0;
    fw->reports = 0;
    {
        char v[32];
        size_t vlen = sizeof(v);
        fw->linger_ms = rd_kafka_conf_get(conf, "linger.ms", v, &vlen) == RD_KAFKA_CONF_OK
                        ? atof(v) : 0.0;
    }
    rd_kafka_conf_set_stats_cb(conf, fw_on_stats);
    rd_kafka_conf_set_opaque(conf, fw);
    rd_kafka_conf_set_dr_msg_cb(conf, fw_on_delivery);
    rd_kafka_conf_set_error_cb(conf, fw_on_error);
    rd_kafka_conf_set_log_cb(conf, fw_on_log);
    if ((fw->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))) == NULL) {
        rc = err_set(err, -EINVAL, "forward: cannot create the kafka producer: %s", errstr);
        goto fail;
    }
    /* Delivery reports and errors land on the main queue; have it write to our
     * control eventfd, which fw_wait always watches. */
    {
        static const uint64_t one = 1;
        fw->mainq = rd_kafka_queue_get_main(fw->rk);
        rd_kafka_queue_io_event_enable(fw->mainq, fw->cfd, &one, sizeof(one));
    }
    return 0;
fail:
    rd_kafka_conf_destroy(conf);
    return rc;
}

/* Purges what is still in flight (those rows stay in the spool), serves the
 * reports, deletes what was acknowledged, and destroys the producer. */
static void
fw_producer_destroy(struct forward *fw)
{
    int64_t deadline = fw_now() + FW_PURGE_WAIT_MS;

    if (fw->rk == NULL)
        return;
    fw->purging = true;
    rd_kafka_purge(fw->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    while (fw->inflight > 0 && fw_now() < deadline)
        rd_kafka_poll(fw->rk, 10);
    fw->purging = false;
    fw_live_acks(fw);
    fw_delete_flush(fw, true);
    if (fw->mainq != NULL) {
        rd_kafka_queue_io_event_enable(fw->mainq, -1, NULL, 0);
        rd_kafka_queue_destroy(fw->mainq);
        fw->mainq = NULL;
    }
    rd_kafka_destroy(fw->rk);
    fw->rk = NULL;
    fw_pool_reset(fw);   /* reports that never came home are not coming now */
}

/* After a fatal idempotence error: new producer, and every record not yet
 * acknowledged is sent again from the spool, in sequence order. */
static void
fw_recover(struct forward *fw)
{
    char reason[512] = "";
    struct err e = {0};

    if (fw->rk != NULL &&
        rd_kafka_fatal_error(fw->rk, reason, sizeof(reason)) == RD_KAFKA_RESP_ERR_NO_ERROR)
        snprintf(reason, sizeof(reason), "a record could not be delivered in order");
    metrics_add(&metrics.kafka_errors[KERR_FATAL], 1);
    log_error("forward", "kafka producer failed (%s); recreating it and re-sending "
              "%zu unacknowledged records from the spool", reason, fw->inflight);
    fw_live_leave(fw, "producer failed");
    fw_producer_destroy(fw);
    for (size_t i = 0; i < fw->nlanes; i++)
        fw->lanes[i].cursor = 0;
    fw->fatal = false;
    fw->queue_full = false;
    while (fw_producer_create(fw, &e) < 0 && !atomic_load(&fw->stop)) {
        atomic_fetch_add_explicit(&fw->heartbeat, 1, memory_order_relaxed);
        log_error("forward", "%s (retrying in 1 s)", e.msg);
        usleep(1000 * 1000);
    }
}

/* ---- lanes and config ----------------------------------------------------- */

static int
fw_lane_cmp(const void *a, const void *b)
{
    const struct fw_lane *x = a, *y = b;

    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order ? 1 : 0;
}

static struct fw_lane *
fw_lane_find(struct fw_lane *lanes, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(lanes[i].name, name) == 0)
            return &lanes[i];
    }
    return NULL;
}

/* Rebuilds the claim order from cfg plus extra names (lanes that only the spool or
 * an older config knows: they drain last). Cursors survive by lane name. On
 * -ENOMEM the old order stays. */
static int
fw_lanes_build(struct forward *fw, const struct config *cfg, const char *const *extra,
               size_t nextra)
{
    size_t cap = cfg->nlanes + fw->nlanes + nextra, n = 0;
    struct fw_lane *nl = calloc(cap ? cap : 1, sizeof(*nl)), *old;

    if (nl == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->nlanes; i++)
        nl[n++] = (struct fw_lane){.name = strdup(cfg->lanes[i].name),
                                   .priority = cfg->lanes[i].priority, .order = i};
    for (size_t i = 0; i < fw->nlanes; i++) {
        if (fw_lane_find(nl, n, fw->lanes[i].name) == NULL)
            nl[n++] = (struct fw_lane){.name = strdup(fw->lanes[i].name),
                                       .priority = INT_MAX, .order = SIZE_MAX};
    }
    for (size_t i = 0; i < nextra; i++) {
        if (fw_lane_find(nl, n, extra[i]) == NULL)
            nl[n++] = (struct fw_lane){.name = strdup(extra[i]), .priority = INT_MAX,
                                       .order = SIZE_MAX};
    }
    for (size_t i = 0; i < n; i++) {
        if (nl[i].name == NULL) {
            for (size_t j = 0; j < n; j++)
                free(nl[j].name);
            free(nl);
            return -ENOMEM;
        }
        if ((old = fw_lane_find(fw->lanes, fw->nlanes, nl[i].name)) != NULL)
            nl[i].cursor = old->cursor;
    }
    qsort(nl, n, sizeof(*nl), fw_lane_cmp);
    for (size_t i = 0; i < fw->nlanes; i++)
        free(fw->lanes[i].name);
    free(fw->lanes);
    fw->lanes = nl;
    fw->nlanes = n;
    return 0;
}

/* Lanes that hold records but are not in the config (renamed or removed since
 * those records were spooled): drained after all configured lanes. */
static void
fw_lanes_from_spool(struct forward *fw)
{
    struct spool_stats st = {0};
    struct err e = {0};
    const char **names;

    if (spool_stats(fw->sp, &st, &e) < 0) {
        log_warn("forward", "cannot list the spool's lanes: %s", e.msg);
        return;
    }
    if (st.nlanes > 0 && (names = calloc(st.nlanes, sizeof(*names))) != NULL) {
        for (size_t i = 0; i < st.nlanes; i++) {
            names[i] = st.lanes[i].name;
            if (st.lanes[i].records > 0 && config_lane_index(fw->cfg, names[i]) < 0)
                log_warn("forward", "spool lane %s is not in the config; its %" PRIu64
                         " records are sent after all other lanes", names[i],
                         st.lanes[i].records);
        }
        fw_lanes_build(fw, fw->cfg, names, st.nlanes);
        free(names);
    }
    spool_stats_fini(&st);
}

/* Takes a config published by forward_set_config. Runs at loop boundaries only, so
 * no borrowed pointer into the old config is live when the swap is acknowledged. */
static void
fw_config_sync(struct forward *fw)
{
    const struct config *ncfg;
    uint64_t req;

    pthread_mutex_lock(&fw->mu);
    req = fw->cfg_req;
    ncfg = fw->cfg_next;
    pthread_mutex_unlock(&fw->mu);
    if (req == fw->cfg_ack)
        return;
    if (strcmp(ncfg->kafka.bootstrap, fw->cfg->kafka.bootstrap) != 0 ||
        ncfg->kafka.nprops != fw->cfg->kafka.nprops)
        log_warn("forward", "kafka settings changed; they take effect at the next restart");
    fw->cfg = ncfg;
    if (fw_lanes_build(fw, ncfg, NULL, 0) < 0)
        log_error("forward", "out of memory applying the new lanes; keeping the old order");
    pthread_mutex_lock(&fw->mu);
    fw->cfg_ack = req;
    pthread_cond_broadcast(&fw->cv);
    pthread_mutex_unlock(&fw->mu);
}

/* ---- the loop ------------------------------------------------------------- */

static void
fw_tokens_refill(struct forward *fw)
{
    uint64_t rate = fw->cfg->forward_max_rate;
    int64_t now = fw_now();
    double burst;

    if (rate == 0)
        return;
    /* Burst of 200 ms worth (at least 64 KiB), so the cap is smooth but a single
     * record larger than the budget still goes (the debt is paid off after). */
    burst = (double)rate / 5.0;
    if (burst < 65536.0)
        burst = 65536.0;
    fw->tokens += (double)rate * (double)(now - fw->tokens_ms) / 1000.0;
    if (fw->tokens > burst)
        fw->tokens = burst;
    fw->tokens_ms = now;
}

/* Whether fw_fill would claim now, so whether a notify from ingest can start work. */
static bool
fw_can_claim(struct forward *fw)
{
    return atomic_load(&fw->connected) && !fw->fatal && !fw->queue_full &&
           !(fw->inflight > 0 && FORWARD_WINDOW - fw->inflight < FW_REFILL_MIN) &&
           fw_now() >= fw->paced_until_ms;
}

/* ---- the live path ---------------------------------------------------------- */

/* Whether records may skip SQLite now: Kafka is there, nothing paces or refuses the
 * producer, and the thread is not stopping. */
static bool
fw_live_eligible(struct forward *fw)
{
    return fw->live != NULL && fw->cfg->forward_max_rate == 0 &&
           atomic_load(&fw->connected) && !fw->suspect && !fw->fatal && !fw->queue_full &&
           !atomic_load(&fw->stop);
}

/* Back to claims only. The queue is dropped: its records are in the journal, after
 * their lanes' cursors, so the claims take them once they are merged. */
static void
fw_live_leave(struct forward *fw, const char *why)
{
    if (fw->live_phase == FW_LIVE_OFF)
        return;
    live_off(fw->live);
    fw->live_phase = FW_LIVE_OFF;
    log_debug("forward", "live path off (%s)", why);
}

/* FW_LIVE_ON: produces the queue in order while the window allows. */
static void
fw_live_fill(struct forward *fw)
{
    for (;;) {
        size_t room = FORWARD_WINDOW - fw->inflight, want, n, off = 0;

        if (room == 0)
            return;
        want = room < FW_CLAIM_MAX ? room : FW_CLAIM_MAX;
        buf_reset(&fw->live_buf);
        if ((n = live_take(fw->live, &fw->live_buf, want)) == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            struct fw_lane *lane;
            struct record rec;
            uint64_t seq;

            /* Not produced (a copy that does not decode, a lane the forwarder does
             * not know yet, a producer that refuses): this record and the rest go
             * through SQLite, where their cursors have not passed them. */
            if (!live_next(fw->live_buf.data, fw->live_buf.len, &off, &seq, &rec) ||
                (lane = fw_lane_find(fw->lanes, fw->nlanes, rec.lane)) == NULL ||
                fw_produce(fw, &rec, true) < 0) {
                fw_live_leave(fw, "a record could not be produced from the queue");
                return;
            }
            lane->cursor = seq;
        }
        if (n < want)
            break;
    }
    fw->paced_until_ms = fw_now() + FW_CLAIM_PACE_MS;
}

/* Claims and produces while the window and the byte budget allow; on the live
 * path, from the queue instead (see live.c for the phases). */
static void
fw_fill(struct forward *fw)
{
    bool rated = fw->cfg->forward_max_rate > 0, ready = false;
    uint64_t upto = UINT64_MAX;
    struct err e = {0};

    /* Ingest turns the path off too (a record that went around the journal, a full
     * queue): then the claims take over. */
    if (fw->live_phase != FW_LIVE_OFF && !fw_live_eligible(fw))
        fw_live_leave(fw, "kafka away, paced or stopping");
    else if (fw->live_phase != FW_LIVE_OFF && !live_is_on(fw->live))
        fw_live_leave(fw, "ingest: a record on the database path, or the queue full");
    /* With records in flight, wait until a useful number of slots is free rather
     * than claiming a row or two per delivery report. */
    /* While Kafka is unreachable nothing more goes into librdkafka's queue: the
     * records wait in the spool, where the catch-up takes them lane by lane (urgent
     * first) and retention (max_bytes, max_age) sees them. Without this, the first
     * FORWARD_WINDOW records of an outage, whatever their lane, would go first
     * when Kafka returns, and drop_oldest would evict rows that are in flight. A
     * probe (fw_probe) or a delivery report notices when Kafka is back. */
    if (!fw_can_claim(fw))
        return;
    if (fw->live_phase == FW_LIVE_ON) {
        fw_live_fill(fw);
        return;
    }
    if (fw->live_phase == FW_LIVE_BARRIER) {
        /* Committed up to the barrier before these claims: if they drain every lane
         * up to it, nothing older than the queue is left unsent. */
        ready = live_committed_upto(fw->live) >= fw->live_barrier;
        upto = fw->live_barrier;
    }
    fw_tokens_refill(fw);
    for (size_t l = 0; l < fw->nlanes; l++) {
        struct fw_lane *lane = &fw->lanes[l];
        for (;;) {
            size_t room = FORWARD_WINDOW - fw->inflight, want, i;

            if (room == 0 || (rated && fw->tokens <= 0))
                return;
            want = room < FW_CLAIM_MAX ? room : FW_CLAIM_MAX;
            if (rated && want > FW_CLAIM_RATED)
                want = FW_CLAIM_RATED;
            spool_batch_reset(&fw->batch);
            if (spool_claim_upto(fw->sp, lane->name, lane->cursor, upto, want, &fw->batch,
                                 &e) < 0) {
                log_limited(&fw->lim_spool, FW_LOG_EVERY_MS, LOG_ERROR, "forward",
                            "cannot read lane %s from the spool: %s", lane->name, e.msg);
                return;
            }
            for (i = 0; i < fw->batch.n; i++) {
                const struct record *rec = &fw->batch.recs[i];
                if (rated && fw->tokens <= 0)
                    break;
                if (fw_produce(fw, rec, false) < 0)
                    break;
                lane->cursor = rec->seq;
            }
            if (i < fw->batch.n)
                return;         /* budget, queue full or fatal: later, from here */
            if (fw->batch.n < want)
                break;          /* lane drained: the next one */
        }
    }
    /* Every lane is drained: what comes next is live traffic. */
    fw->paced_until_ms = fw_now() + FW_CLAIM_PACE_MS;
    if (fw->live_phase == FW_LIVE_BARRIER && ready) {
        fw->live_phase = FW_LIVE_ON;
        live_set_holding(fw->live, true);
        log_debug("forward", "live path on");
        fw_live_fill(fw);
    } else if (fw->live_phase == FW_LIVE_OFF && fw_live_eligible(fw)) {
        live_try_on(fw->live, &fw->live_barrier);
        fw->live_phase = FW_LIVE_BARRIER;
    }
}

static int
fw_wait_ms(struct forward *fw)
{
    int64_t now = fw_now(), t = FW_IDLE_MS;

    if (fw->npend > 0) {
        int64_t left = fw->pend_since_ms + FW_DELETE_MS - now;
        if (left < t)
            t = left;
    }
    if (fw->paced_until_ms > now && fw->paced_until_ms - now < t)
        t = fw->paced_until_ms - now;
    if (fw->cfg->forward_max_rate > 0 && fw->tokens <= 0) {
        int64_t need = (int64_t)(-fw->tokens * 1000.0 / (double)fw->cfg->forward_max_rate) + 1;
        if (need < t)
            t = need;
    }
    return t < 0 ? 0 : (int)t;
}

static void
fw_wait(struct forward *fw)
{
    struct pollfd pfd[2] = {{.fd = fw->cfd, .events = POLLIN},
                            {.fd = fw->efd, .events = POLLIN}};
    uint64_t v;

    if (poll(pfd, fw_can_claim(fw) ? 2 : 1, fw_wait_ms(fw)) <= 0)
        return;
    if (pfd[0].revents != 0)
        while (read(fw->cfd, &v, sizeof(v)) == (ssize_t)sizeof(v))
            ;
    if (pfd[1].revents != 0) {
        /* Cleared before the drain: a notify racing with it writes again. */
        atomic_store(&fw->wake_pending, false);
        while (read(fw->efd, &v, sizeof(v)) == (ssize_t)sizeof(v))
            ;
    }
}

/* Whether the window is what holds the claims back (a backlog draining, or live
 * traffic faster than Kafka acknowledges it). */
static bool
fw_window_bound(struct forward *fw)
{
    return fw->linger_ms >= FW_FULL_LINGER_MS && atomic_load(&fw->connected) && !fw->fatal &&
           fw->cfg->forward_max_rate == 0 && fw->inflight > 0 &&
           FORWARD_WINDOW - fw->inflight < FW_REFILL_MIN;
}

/* The wait while the window is full. rd_kafka_flush serves the delivery reports like
 * rd_kafka_poll, and while it runs librdkafka's broker threads take linger.ms as
 * zero: every record the window holds is on its way at once. With a plain wait, a
 * window spread thin over many partitions never fills a batch, and each partition's
 * records would wait out linger.ms (with linger.ms 50, a 1M-record drain over 256
 * partitions ran at 57k/s). So linger.ms batches live traffic, where it saves
 * librdkafka's CPU, and never holds back a drain. Called back to back while the
 * window stays full, so the override is on nearly all the time; short, so the slots
 * freed are refilled within FW_FULL_WAIT_MS. Only with linger.ms of FW_FULL_LINGER_MS
 * or more: with librdkafka's default of 5 the plain wait drained as fast or faster
 * (alternating runs: 174-203k/s against 167-195k/s), and with 50 this wait drained at
 * 147-161k/s. */
static void
fw_wait_full(struct forward *fw)
{
    (void)rd_kafka_flush(fw->rk, FW_FULL_WAIT_MS);   /* a timeout is the usual case */
}

/* Wakes the thread whatever it waits for (stop, a new config). */
static void
fw_wake(struct forward *fw)
{
    uint64_t one = 1;

    if (write(fw->cfd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is huge, the thread is due to wake anyway */
    }
}

static void
fw_stop_flush(struct forward *fw)
{
    int64_t deadline = fw_now() + fw->stop_flush_ms;
    size_t before = fw->inflight;

    while (fw->inflight > 0 && !fw->fatal) {
        int64_t left = deadline - fw_now();
        if (left <= 0)
            break;
        fw_config_sync(fw);
        rd_kafka_flush(fw->rk, (int)(left < FW_IDLE_MS ? left : FW_IDLE_MS));
        rd_kafka_poll(fw->rk, 0);
        fw_live_acks(fw);
        if (fw->npend > 0 && fw_now() - fw->pend_since_ms >= FW_DELETE_MS)
            fw_delete_flush(fw, false);
    }
    fw_delete_flush(fw, true);
    if (before > 0)
        log_info("forward", "stopped: %zu of %zu in-flight records acknowledged, %zu left "
                 "in the spool", before - fw->inflight, before, fw->inflight);
}

static void *
fw_main(void *arg)
{
    struct forward *fw = arg;

    pthread_setname_np(pthread_self(), "sluice-forward");   /* top -H, perf */
    fw_lanes_from_spool(fw);
    fw->start_ms = fw->tokens_ms = fw_now();
    fw->next_probe_ms = 0;
    while (!atomic_load(&fw->stop)) {
        atomic_fetch_add_explicit(&fw->heartbeat, 1, memory_order_relaxed);
        fw_config_sync(fw);
        if (fw->fatal)
            fw_recover(fw);
        if (fw->rk == NULL)
            break;
        fw_fill(fw);
        if ((!atomic_load(&fw->connected) || fw->suspect) && fw->inflight == 0 &&
            fw_now() >= fw->next_probe_ms)
            fw_probe(fw);
        if (fw_window_bound(fw))
            fw_wait_full(fw);
        else
            fw_wait(fw);
        fw->queue_full = false;
        rd_kafka_poll(fw->rk, 0);
        fw_live_acks(fw);
        if (fw->npend > 0 &&
            (fw->npend - fw->npend_held >= FW_DELETE_BATCH ||
             fw_now() - fw->pend_since_ms >= FW_DELETE_MS))
            fw_delete_flush(fw, false);
    }
    fw_live_leave(fw, "stopping");
    if (fw->rk != NULL)
        fw_stop_flush(fw);
    fw_producer_destroy(fw);
    pthread_mutex_lock(&fw->mu);
    fw->running = false;
    pthread_cond_broadcast(&fw->cv);
    pthread_mutex_unlock(&fw->mu);
    return NULL;
}

/* ---- public API ----------------------------------------------------------- */

static int
fw_mock_create(struct forward *fw, struct err *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];

    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    rd_kafka_conf_set_log_cb(conf, fw_on_log);
    if ((fw->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))) == NULL) {
        rd_kafka_conf_destroy(conf);
        return err_set(err, -EINVAL, "forward: embedded kafka: %s", errstr);
    }
    if ((fw->mock = rd_kafka_mock_cluster_new(fw->mock_rk, 1)) == NULL)
        return err_set(err, -EIO, "forward: embedded kafka: cannot start the mock cluster");
    if ((fw->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(fw->mock))) == NULL)
        return err_set(err, -ENOMEM, "forward: out of memory");
    log_info("forward", "embedded kafka (librdkafka mock cluster, memory only, keeps about "
             "the last 5 MiB per partition) listening at %s", fw->bootstrap);
    return 0;
}

int
forward_create(struct forward **out, const struct config *cfg, struct spool *sp,
               struct live *live, struct err *err)
{
    struct forward *fw;
    int rc;

    *out = NULL;
    if ((fw = calloc(1, sizeof(*fw))) == NULL)
        return err_set(err, -ENOMEM, "forward: out of memory");
    fw->efd = fw->cfd = -1;
    fw->cfg = cfg;
    fw->live = live;
    buf_init(&fw->live_buf);
    pthread_mutex_init(&fw->mu, NULL);
    pthread_cond_init(&fw->cv, NULL);
    spool_batch_init(&fw->batch);
    atomic_init(&fw->stop, false);
    atomic_init(&fw->connected, false);
    atomic_init(&fw->heartbeat, 0);
    atomic_store_explicit(&metrics.kafka_connected, 0, memory_order_relaxed);
    fw->cap_pend = FW_DELETE_BATCH * 2;
    fw->pool = calloc(FORWARD_WINDOW, sizeof(*fw->pool));
    fw->pend = malloc(fw->cap_pend * sizeof(*fw->pend));
    fw->live_acks = malloc(FORWARD_WINDOW * sizeof(*fw->live_acks));
    if (fw->pool == NULL || fw->pend == NULL || fw->live_acks == NULL ||
        fw_lanes_build(fw, cfg, NULL, 0) < 0) {
        rc = err_set(err, -ENOMEM, "forward: out of memory");
        goto fail;
    }
    fw_pool_reset(fw);
    if ((fw->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
        (fw->cfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        rc = err_set(err, -errno, "forward: eventfd: %s", strerror(errno));
        goto fail;
    }
    if (strcmp(cfg->kafka.bootstrap, "embedded") == 0) {
        if ((rc = fw_mock_create(fw, err)) < 0)
            goto fail;
    } else if ((fw->bootstrap = strdup(cfg->kafka.bootstrap)) == NULL) {
        rc = err_set(err, -ENOMEM, "forward: out of memory");
        goto fail;
    }
    if ((rc = fw_producer_create(fw, err)) < 0)
        goto fail;
    fw->sp = sp;     /* taken only on success */
    *out = fw;
    return 0;
fail:
    forward_destroy(fw);
    return rc;
}

int
forward_start(struct forward *fw, struct err *err)
{
    int rc;

    if (fw->started)
        return 0;
    atomic_store(&fw->stop, false);
    fw->running = true;
    if ((rc = pthread_create(&fw->thread, NULL, fw_main, fw)) != 0) {
        fw->running = false;
        return err_set(err, -rc, "forward: cannot start the thread: %s", strerror(rc));
    }
    fw->started = true;
    return 0;
}

void
forward_notify(void *arg)
{
    struct forward *fw = arg;
    uint64_t one = 1;

    /* One write per wake-up, not per message: the ingest thread pays a syscall only
     * when the forwarder has consumed the previous one. EAGAIN means the counter is
     * already huge: the thread is due to wake anyway. */
    if (atomic_exchange(&fw->wake_pending, true))
        return;
    if (write(fw->efd, &one, sizeof(one)) < 0) {
        /* nothing to do */
    }
}

void
forward_stop(struct forward *fw, int flush_ms)
{
    if (fw == NULL || !fw->started)
        return;
    fw->stop_flush_ms = flush_ms < 0 ? 0 : flush_ms;
    atomic_store(&fw->stop, true);
    fw_wake(fw);
    pthread_join(fw->thread, NULL);
    fw->started = false;
}

void
forward_destroy(struct forward *fw)
{
    if (fw == NULL)
        return;
    forward_stop(fw, 0);
    fw_producer_destroy(fw);
    if (fw->mock != NULL)
        rd_kafka_mock_cluster_destroy(fw->mock);
    if (fw->mock_rk != NULL)
        rd_kafka_destroy(fw->mock_rk);
    spool_batch_fini(&fw->batch);
    buf_fini(&fw->live_buf);
    spool_close(fw->sp);
    for (size_t i = 0; i < fw->nlanes; i++)
        free(fw->lanes[i].name);
    free(fw->lanes);
    free(fw->pool);
    free(fw->pend);
    free(fw->live_acks);
    free(fw->bootstrap);
    if (fw->efd >= 0)
        close(fw->efd);
    if (fw->cfd >= 0)
        close(fw->cfd);
    pthread_cond_destroy(&fw->cv);
    pthread_mutex_destroy(&fw->mu);
    free(fw);
}

void
forward_set_config(struct forward *fw, const struct config *cfg)
{
    bool taken;

    pthread_mutex_lock(&fw->mu);
    if (!fw->running) {
        /* No thread reads it: apply here (the owner is the only caller). */
        pthread_mutex_unlock(&fw->mu);
        fw->cfg = cfg;
        if (fw_lanes_build(fw, cfg, NULL, 0) < 0)
            log_error("forward", "out of memory applying the new lanes");
        return;
    }
    fw->cfg_next = cfg;
    fw->cfg_req++;
    fw_wake(fw);
    while (fw->running && fw->cfg_ack != fw->cfg_req)
        pthread_cond_wait(&fw->cv, &fw->mu);
    taken = fw->cfg_ack == fw->cfg_req;
    pthread_mutex_unlock(&fw->mu);
    if (!taken) {
        /* The thread ended before the swap; it no longer reads the config. */
        fw->cfg = cfg;
        if (fw_lanes_build(fw, cfg, NULL, 0) < 0)
            log_error("forward", "out of memory applying the new lanes");
    }
}

bool
forward_is_connected(const struct forward *fw)
{
    return fw != NULL && atomic_load(&((struct forward *)fw)->connected);
}

uint64_t
forward_heartbeat(const struct forward *fw)
{
    return fw == NULL ? 0
                      : atomic_load_explicit(&((struct forward *)fw)->heartbeat,
                                             memory_order_relaxed);
}
