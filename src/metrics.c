/* metrics.c - the process-wide counters and the names of their reason labels. */
#include "sluice/metrics.h"

struct metrics metrics;

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
