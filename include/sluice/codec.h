/* codec.h - payload formats: raw, json, sparkplug.
 *
 * A codec turns an MQTT payload into the Kafka value plus, for structured formats, a
 * JSON document that templates and the timestamp path read. Codecs are const vtables
 * in one NULL-terminated table, looked up by name at config load.
 *
 * A codec may keep state between messages (Sparkplug: metric aliases learned from
 * BIRTH messages). Such a codec has create/destroy; its state is made once per
 * mapper (so per thread: no locking) and handed to every decode. Stateless codecs
 * leave create NULL and get a NULL state. */
#ifndef SLUICE_CODEC_H
#define SLUICE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "sluice/record.h"

#include "sluice/route.h"

struct config;
struct err;

#define CODEC_MAX_EXTRA 4
#define CODEC_MAX_HDRS  2

/* What decode produces. Reset by codec->release; fields are owned by the codec
 * output and valid until then. */
struct codec_out {
    json_t        *doc;        /* owned reference or NULL: what {$.path} templates read */
    const void    *value;      /* the Kafka value (may point into the payload) */
    size_t         value_len;
    char          *owned;      /* owned value storage when the codec re-encoded; or NULL */
    size_t         nextra;     /* extra captures, named by codec->capture_names */
    struct capture extra[CODEC_MAX_EXTRA];
    bool           has_time;   /* the payload carries its own event time ... */
    int64_t        time_ms;    /* ... in epoch ms (used when the route has no timestamp) */
    size_t         nhdrs;      /* extra Kafka headers (static or owned by the state) */
    struct record_header hdrs[CODEC_MAX_HDRS];
};

/* What the MQTT side lends a stateful codec (ingest installs it through the mapper;
 * `sluice map`, tests and fuzzers have none). Both run on the thread that decodes,
 * inside decode, with whatever lock that thread holds (ingest: its mutex), so they
 * must not block. */
struct codec_hooks {
    void *arg;
    /* Publishes payload (copied) to topic (copied) at QoS 0, not retained. Queued:
     * the message goes out after the current one is handled. Returns 0 or -errno. */
    int  (*publish)(void *arg, const char *topic, const void *payload, size_t len);
    /* Called right before the codec writes durable state: ends the caller's own open
     * spool write transaction (ingest's QoS 0 batch), so that the codec's write may
     * wait for the database lock instead of deferring. NULL: the caller never holds
     * one at decode time, or cannot give it up; the codec then never waits. */
    void (*before_write)(void *arg);
};

/* What a stateful codec learns about its surroundings: at create, and again before
 * every decode (a reload may have changed the config). */
struct codec_env {
    const char *state_path;    /* SQLite file for durable state (the spool), or NULL */
    bool        read_only;     /* `sluice map`: read state if it exists, never write */
    const struct config      *cfg;    /* borrowed, valid for this call; may be NULL */
    const struct codec_hooks *hooks;  /* borrowed, valid until destroy; or NULL */
};

struct codec {
    const char        *name;           /* as in the config: "raw", "json", "sparkplug" */
    const char *const *capture_names;  /* extra captures it offers templates, or NULL */
    size_t             ncapture_names;
    /* Optional. Returns 0 and owned *state (free with destroy), or -errno with a
     * sentence; env is borrowed. A codec must still decode with a NULL state (it
     * then knows nothing from earlier messages). */
    int  (*create)(void **state, const struct codec_env *env, struct err *err);
    void (*destroy)(void *state);      /* NULL is fine */
    /* Optional. Takes a new env (borrowed, as in create) before a decode; cheap. */
    void (*configure)(void *state, const struct codec_env *env);
    /* Decodes payload (borrowed; must outlive out) with state (borrowed, may be NULL).
     * Returns 0, or -EBADMSG with a sentence when the payload is not of this format
     * (the record is dead-lettered), or -ENOMEM. */
    int  (*decode)(void *state, const char *topic, size_t topic_len, const void *payload,
                   size_t len, struct codec_out *out, struct err *err);
    void (*release)(struct codec_out *out);
};

extern const struct codec *const codec_table[];   /* NULL-terminated */

/* Returns borrowed (static) or NULL. */
const struct codec *codec_find(const char *name);

/* JSON payload limits: larger or deeper payloads are rejected as bad payloads. */
#define CODEC_JSON_MAX_BYTES (16u << 20)
#define CODEC_JSON_MAX_DEPTH 64

#endif
