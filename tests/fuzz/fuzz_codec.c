/* fuzz_codec.c - the json codec and the mapper on hostile payloads and topics.
 *
 * Input: byte 0 picks the MQTT topic (one of three fixed topics that hit a json
 * route, a raw route, or no route; or, for 3, the first line of the rest is the
 * topic); the remaining bytes are the payload. Every input goes through the json
 * codec's decode directly and then through mapper_map under a small fixed config.
 * Beyond "no crash, no leak, no UB" it checks:
 *   - decode returns 0 or -EBADMSG with a sentence; on 0 there is a document, the
 *     value is the payload byte for byte, and the payload is strict UTF-8 nested at
 *     most CODEC_JSON_MAX_DEPTH deep;
 *   - the mapper agrees: a json route whose payload the codec refused dead-letters
 *     it (stage decode), with an error header and the original payload as value;
 *   - a mapped record has a legal Kafka topic and a non-empty key where the route
 *     has one; mapping the same message twice gives the same result (scratch reuse). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/codec.h"
#include "sluice/config.h"
#include "sluice/err.h"
#include "sluice/mapper.h"
#include "sluice/record.h"

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char config_text[] =
    "instance: fuzz\n"
    "kafka: { bootstrap: \"127.0.0.1:9092\" }\n"
    "spool: { path: /nonexistent/spool.db }\n"
    "http: { listen: \"\" }\n"
    "lanes: { urgent: { priority: 0 }, bulk: { priority: 9 } }\n"
    "routes:\n"
    "  - name: telemetry\n"
    "    match: factory/{site}/{line}/{device}/telemetry\n"
    "    format: json\n"
    "    topic: telemetry.{site}\n"
    "    key: \"{device}\"\n"
    "    timestamp: $.ts\n"
    "    lane: bulk\n"
    "    headers: { line: \"{line}\", v: \"{$.v}\" }\n"
    "  - name: by-payload\n"
    "    match: keyed/#\n"
    "    format: json\n"
    "    topic: \"t.{$.kind}\"\n"
    "    key: \"{$.device}\"\n"
    "    timestamp: $.when\n"
    "    lane: urgent\n"
    "  - name: raw\n"
    "    match: raw/{x}\n"
    "    topic: raw\n"
    "    key: \"{x}\"\n";

static const char *const fixed_topics[] = {
    "factory/berlin/l1/dev-0001/telemetry",
    "keyed/a/b",
    "raw/x",
};

static struct config *cfg;
static struct mapper *mp;
static const struct codec *json;

static void
setup(void)
{
    struct config_diags diags = { 0 };

    if (config_load_string(&cfg, "fuzz_codec.yaml", config_text, sizeof(config_text) - 1,
                           &diags) < 0) {
        config_diags_print(&diags, stderr);
        abort();
    }
    CHECK(mapper_create(&mp) == 0);
    CHECK((json = codec_find("json")) != NULL);
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing past U+10FFFF. */
static bool
is_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned c = s[i], n, cp, k;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07;
        else
            return false;
        if (len - i <= n)
            return false;
        for (k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

/* Bracket depth outside strings, as any JSON parser sees it for valid text. */
static size_t
json_depth(const char *p, size_t len)
{
    size_t depth = 0, max = 0;
    bool in_str = false;

    for (size_t i = 0; i < len; i++) {
        if (in_str) {
            if (p[i] == '\\')
                i++;
            else if (p[i] == '"')
                in_str = false;
        } else if (p[i] == '"') {
            in_str = true;
        } else if (p[i] == '{' || p[i] == '[') {
            if (++depth > max)
                max = depth;
        } else if ((p[i] == '}' || p[i] == ']') && depth > 0) {
            depth--;
        }
    }
    return max;
}

static int
json_decode(const char *topic, size_t topic_len, const void *payload, size_t len,
            struct codec_out *out, struct err *e)
{
#ifdef CODEC_MAX_HDRS   /* the stateful codec interface (Sparkplug) */
    return json->decode(NULL, topic, topic_len, payload, len, out, e);
#else
    return json->decode(topic, topic_len, payload, len, out, e);
#endif
}

static bool
is_kafka_topic(const char *t, size_t len)
{
    if (len == 0 || len > 249)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
              (t[i] >= '0' && t[i] <= '9') || t[i] == '.' || t[i] == '_' || t[i] == '-'))
            return false;
    return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mapper_msg msg = { 0 };
    struct codec_out out = { 0 };
    struct record rec, rec2;
    struct record_header h;
    struct err e = { 0 }, why = { 0 };
    const char *topic;
    const uint8_t *payload;
    size_t topic_len, len;
    char *topic_copy = NULL;
    int rc, res, res2;
    bool decoded;

    if (cfg == NULL)
        setup();
    if (size == 0)
        return 0;
    if (data[0] % 4 < 3) {
        topic = fixed_topics[data[0] % 4];
        topic_len = strlen(topic);
        payload = data + 1;
        len = size - 1;
    } else {
        const uint8_t *nl = memchr(data + 1, '\n', size - 1);

        topic_len = nl != NULL ? (size_t)(nl - (data + 1)) : size - 1;
        /* A copy of exactly topic_len bytes, so reads past the topic are caught. */
        if ((topic_copy = malloc(topic_len + 1)) == NULL)
            return 0;
        memcpy(topic_copy, data + 1, topic_len);
        topic = topic_copy;
        payload = data + 1 + topic_len + (nl != NULL);
        len = size - 1 - topic_len - (nl != NULL);
    }

    /* The codec alone. */
    rc = json_decode(topic, topic_len, payload, len, &out, &e);
    CHECK(rc == 0 || rc == -EBADMSG);
    decoded = rc == 0;
    if (decoded) {
        CHECK(out.doc != NULL);
        CHECK(out.value_len == len && (len == 0 || memcmp(out.value, payload, len) == 0));
        CHECK(is_utf8(payload, len));
        CHECK(json_depth((const char *)payload, len) <= CODEC_JSON_MAX_DEPTH);
    } else {
        CHECK(e.code == rc && e.msg[0] != '\0');
    }
    json->release(&out);

    /* The mapper. */
    msg.topic = topic;
    msg.topic_len = topic_len;
    msg.payload = payload;
    msg.payload_len = len;
    msg.qos = 1;
    msg.arrival_ms = 1700000000000;
    res = mapper_map(mp, cfg, &msg, &rec, &why);
    CHECK(res == MAPPER_OK || res == MAPPER_NO_ROUTE || res == MAPPER_DEAD_LETTER);
    if (res == MAPPER_OK) {
        CHECK(!rec.dead_letter);
        CHECK(is_kafka_topic(rec.topic, rec.topic_len));
        CHECK(rec.key != NULL && rec.key_len > 0);   /* every route here has a key */
        CHECK(rec.value_len == len && (len == 0 || memcmp(rec.value, payload, len) == 0));
        if (rec.route != 2)                          /* json routes */
            CHECK(decoded);
    } else if (res == MAPPER_DEAD_LETTER) {
        CHECK(rec.dead_letter && why.msg[0] != '\0');
        CHECK(rec.topic_len == strlen(cfg->dead_letter_topic) &&
              memcmp(rec.topic, cfg->dead_letter_topic, rec.topic_len) == 0);
        CHECK(record_hdrs_find(rec.hdrs, rec.hdrs_len, "error", &h) && h.value_len > 0);
        CHECK(record_hdrs_find(rec.hdrs, rec.hdrs_len, "error.stage", &h));
        if (!decoded && rec.route != 2)
            CHECK(h.value_len == 6 && memcmp(h.value, "decode", 6) == 0);
        CHECK(rec.value_len == len && (len == 0 || memcmp(rec.value, payload, len) == 0));
    }
    if (res != MAPPER_NO_ROUTE && rec.route != 2 && !decoded)
        CHECK(res == MAPPER_DEAD_LETTER);

    /* Again: the scratch buffers are reused and must give the same answer. */
    memcpy(&rec2, &rec, sizeof(rec));
    res2 = mapper_map(mp, cfg, &msg, &rec, &why);
    CHECK(res2 == res);
    CHECK(rec.topic_len == rec2.topic_len && rec.key_len == rec2.key_len &&
          rec.event_ms == rec2.event_ms && rec.route == rec2.route);

    free(topic_copy);
    return 0;
}

#include "fuzz_replay.h"
