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

struct config;
struct err;
struct mapper;

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
};

int  mapper_create(struct mapper **out);
void mapper_destroy(struct mapper *mp);
/* For `sluice map`: stateful codecs read their state (Sparkplug aliases from the
 * spool file, if it exists) but never create or write anything. Call before the
 * first mapper_map. */
void mapper_set_read_only(struct mapper *mp);

/* Maps msg under cfg (borrowed). Returns a mapper_result (>= 0), or -ENOMEM.
 * rec's pointers borrow from mp and msg and are valid until the next call.
 * On MAPPER_DEAD_LETTER, why (if not NULL) receives the reason; rec->dead_letter is
 * set and rec carries headers error, error.stage ("decode" | "route") and the original
 * topic as mqtt.topic; its value is the original payload. */
int  mapper_map(struct mapper *mp, const struct config *cfg, const struct mapper_msg *msg,
                struct record *rec, struct err *why);

#endif
