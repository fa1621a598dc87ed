/* mapper.h - one MQTT message through the routes: the heart of `sluice map` and ingest.
 *
 * route match -> codec decode -> templates (topic, key, headers) -> event time ->
 * struct record. The mapper owns scratch buffers reused for every message, so the
 * hot path allocates nothing once warm. One mapper per thread. */
#ifndef SLUICE_MAPPER_H
#define SLUICE_MAPPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/record.h"

struct codec_hooks;
struct config;
struct err;
struct mapper;
struct spool_state_put;

/* What the MQTT layer knows about a message besides topic and payload. */
struct mapper_msg {
    const char *topic;        size_t topic_len;
    const void *payload;      size_t payload_len;
    int         qos;
    bool        retained;
    int64_t     arrival_ms;   /* wall clock at arrival */
    /* MQTT 5 user properties, name/value pairs (borrowed), become mqtt.user.<name>. */
    const struct record_header *user_props;
    size_t      nuser_props;
};

enum mapper_result {
    MAPPER_OK = 0,        /* rec is a record for the route's Kafka topic */
    MAPPER_NO_ROUTE,      /* nothing matched: count and drop */
    MAPPER_DEAD_LETTER,   /* rec is addressed to dead_letter.topic with an error header;
                             why says what went wrong */
    MAPPER_FILTERED,      /* the route's where: is false: count, drop, acknowledge;
                             rec->route and rec->lane are set, nothing else */
    MAPPER_SUPPRESSED,    /* inside the route's deadband: count, drop, acknowledge;
                             rec is complete (what would have gone) */
    MAPPER_AGGREGATED,    /* taken into the route's aggregate window: no record of its
                             own; write mapper_aggregate()'s records and puts with
                             spool_append_all, then mapper_state_committed */
    MAPPER_LATE,          /* its aggregate window is closed, late: drop: count, drop,
                             acknowledge (with late_topic it is MAPPER_OK, readdressed,
                             and mapper_aggregate()->late is set) */
};

int  mapper_create(struct mapper **out);
void mapper_destroy(struct mapper *mp);
/* For `sluice map`: stateful codecs read their state (Sparkplug aliases from the
 * spool file, if it exists) but never create or write anything. Call before the
 * first mapper_map. */
void mapper_set_read_only(struct mapper *mp);

/* Lends stateful codecs the MQTT side's hooks (borrowed: must outlive mp). Call
 * before the first mapper_map; ingest does, `sluice map` does not. */
void mapper_set_hooks(struct mapper *mp, const struct codec_hooks *hooks);

/* Maps msg under cfg (borrowed). Returns a mapper_result (>= 0), or -ENOMEM.
 * rec's pointers borrow from mp and msg and are valid until the next call.
 * On MAPPER_DEAD_LETTER, why (if not NULL) receives the reason; rec->dead_letter is
 * set and rec carries headers error, error.stage ("decode" | "route") and the original
 * topic as mqtt.topic; its value is the original payload. */
int  mapper_map(struct mapper *mp, const struct config *cfg, const struct mapper_msg *msg,
                struct record *rec, struct err *why);

/* The deadband's decision on the last mapper_map (see deadband.h). The last forwarded
 * values come from the spool file (cfg->spool.path) on first use, and stay in memory. */
enum mapper_deadband {
    MAPPER_DEADBAND_NONE = 0,   /* no deadband on the route, or not a MAPPER_OK/SUPPRESSED */
    MAPPER_DEADBAND_FIRST,      /* forwarded: no last value of this key */
    MAPPER_DEADBAND_PAST,       /* forwarded: moved past the band */
    MAPPER_DEADBAND_INSIDE,     /* suppressed (MAPPER_SUPPRESSED) */
    MAPPER_DEADBAND_NOT_NUMERIC,/* forwarded: the field is absent or not a number */
};
struct mapper_deadband_info {
    enum mapper_deadband verdict;
    double value;               /* FIRST, PAST, INSIDE: the message's value */
    double last;                /* PAST, INSIDE: the last forwarded value */
    double band;                /* PAST, INSIDE: the band around last */
};
/* Borrowed, valid until the next mapper_map. */
const struct mapper_deadband_info *mapper_deadband(const struct mapper *mp);

/* The aggregate side of the last mapper_map (see aggregate.h); borrowed, valid until
 * the next mapper_map or mapper_aggregate_expire. aggregate is false when the route
 * has none. `sluice map` (read only) fills only the window. */
struct mapper_aggregate_info {
    bool     aggregate;
    bool     late;
    int64_t  window_start, window_end;
    struct record *recs;                size_t nrecs;    /* windows it closed */
    const struct spool_state_put *puts; size_t nputs;
};
const struct mapper_aggregate_info *mapper_aggregate(const struct mapper *mp);
/* Closes the aggregate windows whose keys were quiet for a window of wall time (the
 * flusher, once a second); the result as for MAPPER_AGGREGATED. 0 or -ENOMEM. */
int  mapper_aggregate_expire(struct mapper *mp, const struct config *cfg, int64_t now_ms,
                             const struct mapper_aggregate_info **out);

/* The durable state that goes with the last MAPPER_OK record (a deadband's new last
 * value): pass it to spool_append_with_state, then call mapper_state_committed once
 * the append succeeded, so memory follows the spool. *puts borrows from mp, valid
 * until the next mapper_map. Returns the count (0: plain spool_append). */
size_t mapper_state_puts(const struct mapper *mp, const struct spool_state_put **puts);
void   mapper_state_committed(struct mapper *mp);
/* A spool batch was rolled back: forget the in-memory state; the next message that
 * needs it reloads what the spool committed. */
void   mapper_state_reset(struct mapper *mp);

#endif
