/* fuzz_route.c - pattern compilation, the router and subscriptions, with oracles.
 *
 * Input: lines. Every line but the last is a pattern (at most 16), the last line is
 * the topic (any bytes, NULs included). Beyond "no crash, no leak, no UB" it checks:
 *   - router_match == the first pattern_match in order (route and every capture);
 *   - captures are slices of the topic;
 *   - route_filter_covers(a, b) && b matches the topic  =>  a matches it;
 *   - some minimal subscription matches every topic that some route matches. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/route.h"

#include "fuzz_check.h"

#define MAX_PATTERNS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pattern *ps[MAX_PATTERNS];
    struct router *r;
    struct err err;
    struct match m1, m2;
    const char *in = (const char *)data, *topic;
    size_t n = 0, i, j, tlen, lin = SIZE_MAX;
    const char *nl;

    while ((nl = memchr(in, '\n', size - (size_t)(in - (const char *)data))) != NULL &&
           n < MAX_PATTERNS) {
        size_t len = (size_t)(nl - in);
        char *text = malloc(len + 1);

        if (text == NULL)
            abort();
        memcpy(text, in, len);
        text[len] = '\0';
        err.msg[0] = '\0';
        if (pattern_compile(&ps[n], text, &err) == 0) {
            CHECK(strlen(pattern_filter(ps[n])) <= strlen(text));
            n++;
        } else {
            CHECK(err.msg[0] != '\0' && err.code < 0);
        }
        free(text);
        in = nl + 1;
    }
    topic = in;
    tlen = size - (size_t)(in - (const char *)data);

    if (router_create(&r, ps, n, &err) < 0)
        abort();
    for (i = 0; i < n; i++)
        if (pattern_match(ps[i], topic, tlen, &m1)) {
            lin = i;
            break;
        }
    if (router_match(r, topic, tlen, &m2)) {
        CHECK(m2.route == lin);
        CHECK(m2.ncaptures == m1.ncaptures);
        CHECK(m2.ncaptures == pattern_ncaptures(ps[lin]));
        for (i = 0; i < m2.ncaptures; i++) {
            CHECK(m2.cap[i].ptr == m1.cap[i].ptr && m2.cap[i].len == m1.cap[i].len);
            CHECK(m2.cap[i].ptr >= topic &&
                  m2.cap[i].ptr + m2.cap[i].len <= topic + tlen);
        }
    } else {
        CHECK(lin == SIZE_MAX);
    }

    for (i = 0; i < n; i++) {
        const char *fi = pattern_filter(ps[i]);
        bool mi = pattern_match(ps[i], topic, tlen, &m1);

        CHECK(route_filter_covers(fi, fi));
        for (j = 0; j < n; j++)
            if (mi && route_filter_covers(pattern_filter(ps[j]), fi))
                CHECK(pattern_match(ps[j], topic, tlen, &m1));
    }

    if (lin != SIZE_MAX) {
        bool covered = false;

        CHECK(router_nsubscriptions(r) > 0);
        for (i = 0; i < router_nsubscriptions(r) && !covered; i++) {
            struct pattern *sp;

            CHECK(pattern_compile(&sp, router_subscription(r, i), NULL) == 0);
            covered = pattern_match(sp, topic, tlen, &m1);
            pattern_destroy(sp);
        }
        CHECK(covered);
    }

    router_destroy(r);
    for (i = 0; i < n; i++)
        pattern_destroy(ps[i]);
    return 0;
}

#include "fuzz_replay.h"
