/* fuzz_filter.c - where: conditions: compile, evaluate.
 *
 * Input: the first line is the condition; the rest, if it parses as JSON, is the
 * document, else a small fixed one is used. Captures are site/line/device.
 * Checks: a compile error carries a sentence starting "column N:" with N within the
 * text (+1 for "at the end") and reports the same N through col; a compiled filter
 * echoes its text, evaluates the same twice (no hidden state), and `not (...)` of it
 * evaluates to the opposite. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/filter.h"
#include "sluice/route.h"

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fixed_doc[] =
    "{\"quality\":\"good\",\"temp\":81.5,\"n\":3,\"on\":true,\"z\":null,"
    "\"o\":{\"a\":[1,\"x\"]},\"a b\":\"q\"}";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = { "site", "line", "device" };
    static const struct capture caps[] = { { "berlin", 6 }, { "l1", 2 }, { "", 0 } };
    const char *nl = memchr(data, '\n', size);
    size_t tlen = nl != NULL ? (size_t)(nl - (const char *)data) : size;
    char *text = malloc(tlen + 1), *neg = malloc(tlen + 8);
    struct filter *f = NULL, *g = NULL;
    struct err err = { 0 };
    json_t *doc = NULL;
    size_t col = 0;
    bool v;

    if (text == NULL || neg == NULL)
        abort();
    memcpy(text, data, tlen);
    text[tlen] = '\0';
    if (nl != NULL)
        doc = json_loadb(nl + 1, size - tlen - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (doc == NULL)
        doc = json_loads(fixed_doc, 0, NULL);
    CHECK(doc != NULL);

    if (filter_compile(&f, text, names, 3, (data[0] & 1) == 0 || size == 0, &err, &col) < 0) {
        size_t n = 0;
        CHECK(f == NULL && err.code < 0);
        if (err.code == -EINVAL) {
            CHECK(sscanf(err.msg, "column %zu:", &n) == 1);
            CHECK(n == col && n >= 1 && n <= strlen(text) + 1);
        }
        goto out;
    }
    CHECK(strcmp(filter_text(f), text) == 0);
    v = filter_eval(f, caps, doc);
    CHECK(filter_eval(f, caps, doc) == v);
    (void)filter_eval(f, caps, NULL);
    snprintf(neg, tlen + 8, "not (%s)", text);
    if (filter_compile(&g, neg, names, 3, true, NULL, NULL) == 0) {
        CHECK(filter_eval(g, caps, doc) == !v);
        filter_destroy(g);
    }
    filter_destroy(f);
out:
    json_decref(doc);
    free(neg);
    free(text);
    return 0;
}

#include "fuzz_replay.h"
