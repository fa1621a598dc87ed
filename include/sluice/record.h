/* record.h - a Kafka-ready record: what one MQTT message becomes.
 *
 * Routing and decoding happen before a record exists; the spool stores records and
 * the forwarder produces them. Every pointer in struct record is borrowed from
 * whoever filled it (the mapper's scratch, or a spool batch) and valid until that
 * owner is reset. The SPEC headers that every record carries (mqtt.topic, mqtt.qos,
 * mqtt.retained, event.time, ingest.time, sluice.instance, sluice.seq) are derived
 * from the fields by record_header_* at produce time; `hdrs` carries only the extra
 * ones (route headers, MQTT 5 user properties, error, event.time.source). */
#ifndef SLUICE_RECORD_H
#define SLUICE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

struct record {
    const char *topic;        size_t topic_len;       /* Kafka topic */
    const char *key;          size_t key_len;         /* Kafka key (may be empty) */
    const void *value;        size_t value_len;       /* Kafka value */
    const char *mqtt_topic;   size_t mqtt_topic_len;  /* where it came from */
    const char *lane;                                 /* lane name, NUL-terminated */
    const void *hdrs;         size_t hdrs_len;        /* extra headers, encoded below */
    int64_t     event_ms;     /* event time (epoch ms): Kafka CreateTime */
    int64_t     ingest_ms;    /* MQTT arrival (epoch ms) */
    uint64_t    seq;          /* spool sequence; 0 until appended */
    uint32_t    route;        /* route index in the config that mapped it */
    uint8_t     qos;          /* MQTT QoS it arrived with */
    bool        retained;     /* MQTT retained flag */
    bool        dead_letter;  /* addressed to dead_letter.topic because of an error */
};

/* One header, borrowed from the encoded block. Values are bytes, not NUL-terminated. */
struct record_header {
    const char *name;   size_t name_len;
    const char *value;  size_t value_len;
};

/* Encoding of the extra headers: repeated [u16 name_len][name][u32 value_len][value],
 * little endian. Appends one; 0 or -ENOMEM / -E2BIG (name over 65535 bytes). */
int  record_hdrs_add(struct buf *b, const char *name, size_t name_len,
                     const char *value, size_t value_len);
/* Iterates: start with *off = 0; returns false at the end or on a damaged block. */
bool record_hdrs_next(const void *hdrs, size_t len, size_t *off, struct record_header *h);
/* Looks up the first header named name; false if absent. */
bool record_hdrs_find(const void *hdrs, size_t len, const char *name, struct record_header *h);

/* The fixed SPEC headers of a record, for the forwarder and `sluice map`: fills
 * out[0..n) with borrowed names and values that point into rec or into scratch
 * (which must hold at least RECORD_SCRATCH bytes and outlive out). Returns n. */
#define RECORD_FIXED_HEADERS 7
#define RECORD_SCRATCH       96
size_t record_fixed_headers(const struct record *rec, const char *instance,
                            char scratch[RECORD_SCRATCH],
                            struct record_header out[RECORD_FIXED_HEADERS]);

#endif
