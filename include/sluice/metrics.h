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

struct metrics {
    atomic_uint_fast64_t mqtt_messages[METRICS_MAX_ROUTES];
    atomic_uint_fast64_t delivered[METRICS_MAX_ROUTES];
    atomic_uint_fast64_t dropped[DROP__COUNT];
    atomic_uint_fast64_t dead_letter[DEAD__COUNT];
    atomic_uint_fast64_t kafka_errors[KERR__COUNT];
    atomic_uint_fast64_t kafka_retries;   /* produce requests librdkafka retried */
    atomic_uint_fast64_t forward_bytes;
    atomic_uint_fast64_t spool_appends;
    atomic_uint_fast64_t spool_errors;
    atomic_int           mqtt_connected;
    atomic_int           kafka_connected;
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

const char *metrics_drop_name(enum metrics_drop r);
const char *metrics_dead_name(enum metrics_dead r);
const char *metrics_kafka_err_name(enum metrics_kafka_err r);

#endif
