/* fuzz_tmpl.c - template compilation and rendering.
 *
 * Input: the first line is the template; the rest, if it parses as JSON, is the
 * payload, else a small fixed document is used. Captures are site/line/device.
 * Checks: compile errors carry a sentence; a successful render fits exactly in
 * len + 1 bytes and fails with -ENOSPC in len; missing fields are -ENOENT; a template
 * without JSON parts renders the same with and without a document. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/route.h"
#include "sluice/tmpl.h"

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fixed_doc[] =
    "{\"device\":{\"id\":\"dev-9\",\"tags\":[\"a\",1,2.5,null,true]},\"ts\":1700000000123,"
    "\"v\":21.5,\"s\":\"x\\u0000y\\n\",\"o\":{\"k\":{\"z\":[]}},\"a}b\":\"q\"}";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = { "site", "line", "device" };
    static const struct capture caps[] = { { "berlin", 6 }, { "l1", 2 }, { "", 0 } };
    const char *nl = memchr(data, '\n', size);
    size_t tlen = nl != NULL ? (size_t)(nl - (const char *)data) : size;
    char *text = malloc(tlen + 1), buf[512], buf2[512];
    json_t *doc = NULL;
    struct tmpl *t;
    struct err err = { 0 };
    int n, n2;

    if (text == NULL)
        abort();
    memcpy(text, data, tlen);
    text[tlen] = '\0';
    if (nl != NULL)
        doc = json_loadb(nl + 1, size - tlen - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (doc == NULL)
        doc = json_loads(fixed_doc, JSON_ALLOW_NUL, NULL);
    CHECK(doc != NULL);

    if (tmpl_compile(&t, text, names, 3, &err) < 0) {
        CHECK(err.code < 0 && err.msg[0] != '\0');
        goto out;
    }
    CHECK(strcmp(tmpl_text(t), text) == 0);
    n = tmpl_render(t, caps, doc, buf, sizeof(buf), &err);
    if (n >= 0) {
        CHECK((size_t)n < sizeof(buf) && buf[n] == '\0');
        n2 = tmpl_render(t, caps, doc, buf2, (size_t)n + 1, NULL);
        CHECK(n2 == n && memcmp(buf, buf2, (size_t)n) == 0);
        CHECK(tmpl_render(t, caps, doc, buf2, (size_t)n, NULL) == -ENOSPC);
        if (!tmpl_uses_json(t)) {
            n2 = tmpl_render(t, caps, NULL, buf2, sizeof(buf2), NULL);
            CHECK(n2 == n && memcmp(buf, buf2, (size_t)n) == 0);
        }
    } else {
        CHECK(n == -ENOENT || n == -ENOSPC);
        CHECK(err.code == n && err.msg[0] != '\0');
    }
    if (tmpl_uses_json(t))
        CHECK(tmpl_render(t, caps, NULL, buf2, sizeof(buf2), NULL) == -ENOENT);
    /* The answer never depends on cap: a missing field wins over a short buffer. */
    CHECK(tmpl_render(t, caps, doc, buf2, 0, NULL) == (n == -ENOENT ? -ENOENT : -ENOSPC));
    CHECK(tmpl_render(t, caps, doc, buf2, 1, NULL) ==
          (n == -ENOENT ? -ENOENT : n == 0 ? 0 : -ENOSPC));
    tmpl_destroy(t);
out:
    json_decref(doc);
    free(text);
    return 0;
}

#include "fuzz_replay.h"
