/* fuzz_sparkplug.c - the Sparkplug codec on hostile payloads, with its alias state.
 *
 * Input: byte 0 picks the message type (and so the topic), the rest is the payload.
 * One memory-only state lives for the whole run, so BIRTHs found by the fuzzer
 * teach aliases that later DATA inputs resolve against. Oracles: decode returns 0
 * or -EBADMSG (never anything else), and on success the value is JSON that Jansson
 * accepts, with a document for templates. ASan/UBSan catch the rest. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sluice/codec.h"
#include "sluice/err.h"
#include "sluice/sparkplug_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const topics[] = {
    "spBv1.0/G/NBIRTH/E", "spBv1.0/G/NDATA/E", "spBv1.0/G/NDEATH/E", "spBv1.0/G/NCMD/E",
    "spBv1.0/G/DBIRTH/E/D", "spBv1.0/G/DDATA/E/D", "spBv1.0/G/DDEATH/E/D",
    "spBv1.0/G/DCMD/E/D", "spBv1.0/STATE/host",
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sparkplug_state *st;
    const struct codec *c = codec_find("sparkplug");
    struct codec_out out;
    struct err err = { 0 };
    const char *topic;
    json_t *j;
    int rc;

    if (size < 1 || c == NULL)
        return 0;
    if (st == NULL && sparkplug_state_open(&st, NULL, false, &err) < 0)
        abort();
    topic = topics[data[0] % (sizeof(topics) / sizeof(topics[0]))];
    rc = c->decode(st, topic, strlen(topic), data + 1, size - 1, &out, &err);
    if (rc != 0 && rc != -EBADMSG)
        abort();
    if (rc == 0) {
        if (out.doc == NULL)
            abort();
        j = json_loadb(out.value, out.value_len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
        if (j == NULL)
            abort();
        json_decref(j);
    }
    c->release(&out);
    return 0;
}

#include "fuzz_replay.h"
