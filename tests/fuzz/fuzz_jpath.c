/* fuzz_jpath.c - JSON path compilation, lookup and value rendering.
 *
 * Input: the first line is the path; the rest, if it parses as JSON, is the
 * document, else a small fixed one. Checks: compile errors carry a sentence; a
 * rendered non-string value parses back to a JSON value equal to the original (so
 * containers are valid JSON and reals keep their exact value and type); the result
 * fits exactly in len + 1 bytes and is -ENOSPC in len. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/jpath.h"

#include "fuzz_check.h"

#define RENDER_CAP 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fixed_doc[] =
    "{\"a\":{\"b\":[10,20,{\"c\":\"x\"}]},\"device.id\":\"d1\",\"it's\":1,\"r\":21.5,"
    "\"e\":-1e-300,\"s\":\"\\u0001\\\"\\u00e9\",\"\":[{},[]]}";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nl = memchr(data, '\n', size);
    size_t plen = nl != NULL ? (size_t)(nl - (const char *)data) : size;
    char *text = malloc(plen + 1), *buf = malloc(RENDER_CAP);
    json_t *doc = NULL, *v, *back;
    struct jpath *jp;
    struct err err = { 0 };
    int n;

    if (text == NULL || buf == NULL)
        abort();
    memcpy(text, data, plen);
    text[plen] = '\0';
    if (nl != NULL)
        doc = json_loadb(nl + 1, size - plen - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (doc == NULL)
        doc = json_loads(fixed_doc, 0, NULL);
    CHECK(doc != NULL);

    if (jpath_compile(&jp, text, &err) < 0) {
        CHECK(err.code == -EINVAL && err.msg[0] != '\0');
        goto out;
    }
    CHECK(strcmp(jpath_text(jp), text) == 0);
    if ((v = jpath_get(jp, doc)) != NULL) {
        n = jpath_render_value(v, buf, RENDER_CAP);
        if (n >= 0) {
            CHECK(buf[n] == '\0');
            CHECK(jpath_render_value(v, buf, (size_t)n + 1) == n);
            CHECK(jpath_render_value(v, buf, (size_t)n) == -ENOSPC);
            n = jpath_render_value(v, buf, RENDER_CAP);
            if (json_is_string(v)) {
                CHECK((size_t)n == json_string_length(v));
                CHECK(memcmp(buf, json_string_value(v), (size_t)n) == 0);
            } else {
                back = json_loadb(buf, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                CHECK(back != NULL);
                CHECK(json_equal(back, v));
                json_decref(back);
            }
        } else {
            CHECK(n == -ENOSPC);
        }
    }
    jpath_destroy(jp);
out:
    json_decref(doc);
    free(text);
    free(buf);
    return 0;
}

#include "fuzz_replay.h"
