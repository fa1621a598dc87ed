/* metrics.h - process-wide counters, C11 atomics, bounded labels only.
 *
 * Every thread bumps counters with relaxed atomics; readers (HTTP, the shutdown
 * summary) take a racy-but-consistent-enough snapshot. Labels are routes (by index,
 * at most METRICS_MAX_ROUTES; later routes share the last slot), lanes, and the
 * fixed reason enums below: never per device or per topic. */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define METRICS_MAX_ROUTES 256
#define METRICS_MAX_LANES  64    /* by config lane index; later lanes share the last */

enum metrics_drop {
    DROP_NO_ROUTE = 0,     /* no route matched */
    DROP_SPOOL_FULL,       /* evicted by when_full: drop_oldest */
    DROP_MAX_AGE,          /* older than max_age */
    DROP__COUNT
};
enum metrics_dead {
    DEAD_DECODE = 0,       /* payload is not of the route's format */
    DEAD_ROUTE,            /* topic/key rendered empty, illegal Kafka topic, missing field */
    DEAD_KAFKA,            /* Kafka rejected it permanently */
    DEAD__COUNT
};
enum metrics_kafka_err {
    KERR_TRANSIENT = 0,    /* retried: broker down, timeouts, not enough replicas... */
    KERR_PERMANENT,        /* dead-lettered */
    KERR_FATAL,            /* idempotence fatal error: producer recreated */
    KERR__COUNT
};
enum metrics_spool_state {
    SPOOL_STATE_OK = 0,    /* the last append or commit succeeded */
    SPOOL_STATE_FULL,      /* the last append failed with -ENOSPC (disk, or backpressure) */
    SPOOL_STATE_FAILING,   /* the last append or commit failed otherwise */
};

/* Upper bounds (ms) of the delivery latency histogram buckets, MQTT arrival to Kafka
 * acknowledgement: 5 ms to 5 min. One more bucket (+Inf) follows them. */
#define METRICS_LATENCY_BUCKETS 15
extern const int64_t metrics_latency_bounds_ms[METRICS_LATENCY_BUCKETS];

struct metrics {
    atomic_uint_fast64_t mqtt_messages[METRICS_MAX_ROUTES];
    atomic_uint_fast64_t delivered[METRICS_MAX_ROUTES];
    atomic_uint_fast64_t filtered[METRICS_MAX_ROUTES];   /* where: was false: dropped */
    atomic_uint_fast64_t deadband_suppressed[METRICS_MAX_ROUTES];  /* inside the band */
    atomic_uint_fast64_t deadband_not_numeric[METRICS_MAX_ROUTES]; /* forwarded unchecked */
    atomic_uint_fast64_t aggregate_windows[METRICS_MAX_ROUTES];    /* closed, spooled */
    atomic_uint_fast64_t aggregate_late[METRICS_MAX_ROUTES];       /* window already closed */
    atomic_uint_fast64_t compacted[METRICS_MAX_LANES];  /* superseded by a newer record */
    atomic_uint_fast64_t dropped[DROP__COUNT];
    atomic_uint_fast64_t dead_letter[DEAD__COUNT];
    atomic_uint_fast64_t kafka_errors[KERR__COUNT];
    atomic_uint_fast64_t kafka_retries;   /* produce requests librdkafka retried */
    atomic_uint_fast64_t forward_bytes;
    atomic_uint_fast64_t spool_appends;
    atomic_uint_fast64_t spool_skipped;  /* acknowledged before the merge: never in SQLite */
    atomic_uint_fast64_t spool_errors;
    atomic_uint_fast64_t config_reload_failures;
    atomic_uint_fast64_t sparkplug_seq_gaps;       /* seq did not follow the node's last */
    atomic_uint_fast64_t sparkplug_unknown_alias;  /* DATA with an alias or node unknown */
    atomic_uint_fast64_t sparkplug_rebirths;       /* Rebirth NCMDs queued (request_rebirth) */
    atomic_uint_fast64_t latency[METRICS_LATENCY_BUCKETS + 1];  /* per bucket, not cumulative */
    atomic_uint_fast64_t latency_sum_ms;
    atomic_int           mqtt_connected;
    atomic_int           kafka_connected;
    atomic_int           spool_state;     /* enum metrics_spool_state, set by ingest */
};

extern struct metrics metrics;   /* the one instance */

static inline void
metrics_add(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t
metrics_get(atomic_uint_fast64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static inline size_t
metrics_route_slot(size_t route)
{
    return route < METRICS_MAX_ROUTES ? route : METRICS_MAX_ROUTES - 1;
}

static inline void
metrics_set_spool_state(enum metrics_spool_state st)
{
    atomic_store_explicit(&metrics.spool_state, (int)st, memory_order_relaxed);
}

/* Counts one delivery that took ms (negative, after a wall clock step: 0). */
void metrics_observe_latency(int64_t ms);

const char *metrics_drop_name(enum metrics_drop r);
const char *metrics_dead_name(enum metrics_dead r);
const char *metrics_kafka_err_name(enum metrics_kafka_err r);
const char *metrics_spool_state_name(enum metrics_spool_state st);   /* ok|full|failing */

#endif
