/* metrics.c - the process-wide counters, the latency histogram's buckets, and the
 * names of the reason labels. */
#include "sluice/metrics.h"

struct metrics metrics;

const int64_t metrics_latency_bounds_ms[METRICS_LATENCY_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000,
};

void
metrics_observe_latency(int64_t ms)
{
    size_t i = 0;

    if (ms < 0)
        ms = 0;
    while (i < METRICS_LATENCY_BUCKETS && ms > metrics_latency_bounds_ms[i])
        i++;
    metrics_add(&metrics.latency[i], 1);
    metrics_add(&metrics.latency_sum_ms, (uint64_t)ms);
}

const char *
metrics_drop_name(enum metrics_drop r)
{
    static const char *const names[DROP__COUNT] = { "no_route", "spool_full", "max_age" };
    return (unsigned)r < DROP__COUNT ? names[r] : "unknown";
}

const char *
metrics_dead_name(enum metrics_dead r)
{
    static const char *const names[DEAD__COUNT] = { "decode", "route", "kafka" };
    return (unsigned)r < DEAD__COUNT ? names[r] : "unknown";
}

const char *
metrics_kafka_err_name(enum metrics_kafka_err r)
{
    static const char *const names[KERR__COUNT] = { "transient", "permanent", "fatal" };
    return (unsigned)r < KERR__COUNT ? names[r] : "unknown";
}

const char *
metrics_spool_state_name(enum metrics_spool_state st)
{
    static const char *const names[] = { "ok", "full", "failing" };
    return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "failing";
}
