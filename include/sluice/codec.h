/* codec.h - payload formats: raw, json (sparkplug arrives with the formats issue).
 *
 * A codec turns an MQTT payload into the Kafka value plus, for structured formats, a
 * JSON document that templates and the timestamp path read. Codecs are const vtables
 * in one NULL-terminated table, looked up by name at config load. */
#ifndef SLUICE_CODEC_H
#define SLUICE_CODEC_H

#include <stddef.h>
#include <jansson.h>

#include "sluice/route.h"

struct err;

#define CODEC_MAX_EXTRA 4

/* What decode produces. Reset by codec->release; fields are owned by the codec
 * output and valid until then. */
struct codec_out {
    json_t        *doc;        /* owned reference or NULL: what {$.path} templates read */
    const void    *value;      /* the Kafka value (may point into the payload) */
    size_t         value_len;
    char          *owned;      /* owned value storage when the codec re-encoded; or NULL */
    size_t         nextra;     /* extra captures, named by codec->capture_names */
    struct capture extra[CODEC_MAX_EXTRA];
};

struct codec {
    const char        *name;           /* as in the config: "raw", "json" */
    const char *const *capture_names;  /* extra captures it offers templates, or NULL */
    size_t             ncapture_names;
    /* Decodes payload (borrowed; must outlive out). Returns 0, or -EBADMSG with a
     * sentence when the payload is not of this format (the record is dead-lettered). */
    int  (*decode)(const char *topic, size_t topic_len, const void *payload, size_t len,
                   struct codec_out *out, struct err *err);
    void (*release)(struct codec_out *out);
};

extern const struct codec *const codec_table[];   /* NULL-terminated */

/* Returns borrowed (static) or NULL. */
const struct codec *codec_find(const char *name);

/* JSON payload limits: larger or deeper payloads are rejected as bad payloads. */
#define CODEC_JSON_MAX_BYTES (16u << 20)
#define CODEC_JSON_MAX_DEPTH 64

#endif
