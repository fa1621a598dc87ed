/* codec.c - the payload format table: raw and json (sparkplug: codec_sparkplug.c).
 *
 * raw passes the payload through untouched and offers templates no JSON document.
 * json validates the payload and keeps it byte for byte as the Kafka value (no
 * re-encoding: downstream sees exactly what the device sent), while the parsed
 * document feeds {$.path} templates and the event-time path. Deliberate choices:
 * - any JSON value is accepted as the root (objects, arrays, scalars);
 * - duplicate object keys are accepted and the last one wins for $.path lookups,
 *   as in Jansson and most consumers' parsers; the value keeps both as sent;
 * - NaN/Infinity are not JSON and are rejected, as is invalid UTF-8;
 * - payloads over CODEC_JSON_MAX_BYTES or nested deeper than CODEC_JSON_MAX_DEPTH
 *   are rejected before parsing, so a hostile payload cannot make the parser
 *   recurse or allocate without bound. */
#include <errno.h>
#include <string.h>

#include "sluice/codec.h"
#include "sluice/err.h"

extern const struct codec codec_sparkplug;   /* codec_sparkplug.c */

static int
codec_raw_decode(void *state, const char *topic, size_t topic_len, const void *payload,
                 size_t len, struct codec_out *out, struct err *err)
{
    memset(out, 0, sizeof(*out));
    out->value = payload;
    out->value_len = len;
    return 0;
}

static void
codec_release(struct codec_out *out)
{
    if (out->doc != NULL)
        json_decref(out->doc);
    free(out->owned);
    memset(out, 0, sizeof(*out));
}

/* Nesting depth of a JSON text, counting brackets outside strings. Stops early once
 * past the limit. Malformed text is left for the parser to reject. */
static size_t
codec_json_depth(const char *p, size_t len, size_t limit)
{
    size_t depth = 0, max = 0;
    bool in_str = false;

    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max && (max = depth) > limit)
                return max;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return max;
}

static int
codec_json_decode(void *state, const char *topic, size_t topic_len, const void *payload,
                  size_t len, struct codec_out *out, struct err *err)
{
    json_error_t jerr;

    memset(out, 0, sizeof(*out));
    if (len > CODEC_JSON_MAX_BYTES)
        return err_set(err, -EBADMSG, "json: payload of %zu bytes is over the %u byte limit",
                       len, CODEC_JSON_MAX_BYTES);
    if (codec_json_depth(payload, len, CODEC_JSON_MAX_DEPTH) > CODEC_JSON_MAX_DEPTH)
        return err_set(err, -EBADMSG, "json: nested deeper than %d levels",
                       CODEC_JSON_MAX_DEPTH);
    out->doc = json_loadb(payload, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (out->doc == NULL)
        return err_set(err, -EBADMSG, "json: %s at byte %d", jerr.text, jerr.position);
    out->value = payload;
    out->value_len = len;
    return 0;
}

static const struct codec codec_raw = {
    .name = "raw",
    .decode = codec_raw_decode,
    .release = codec_release,
};

static const struct codec codec_json = {
    .name = "json",
    .decode = codec_json_decode,
    .release = codec_release,
};

const struct codec *const codec_table[] = { &codec_raw, &codec_json, &codec_sparkplug, NULL };

const struct codec *
codec_find(const char *name)
{
    for (size_t i = 0; codec_table[i] != NULL; i++) {
        if (strcmp(codec_table[i]->name, name) == 0)
            return codec_table[i];
    }
    return NULL;
}
