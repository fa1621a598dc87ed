/* test_route.c - patterns, the router's first-match rule, subscriptions.
 *
 * Table-driven: every row of the match table runs through pattern_match and through
 * a one-route router, so the trie and the single-pattern matcher are held to the
 * same table. A seeded random test then compares the router against a linear scan
 * over many overlapping patterns, which is the definition of "first match wins". */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/route.h"

/* ---- single-pattern matching ------------------------------------------------- */

struct match_case {
    const char *pattern;
    const char *topic;
    bool        expect;
    const char *caps[4];    /* expected captures, NULL-terminated */
};

static const struct match_case match_cases[] = {
    { "factory/{site}/{line}/{device}/telemetry", "factory/berlin/l1/d7/telemetry", true,
      { "berlin", "l1", "d7", NULL } },
    { "factory/{site}/{line}/{device}/telemetry", "factory/berlin/l1/d7/alarm", false, { 0 } },
    { "factory/{site}/{line}/{device}/telemetry", "factory/berlin/l1/telemetry", false, { 0 } },
    { "factory/{site}/{line}/{device}/telemetry", "factory/berlin/l1/d7/telemetry/x", false,
      { 0 } },
    { "a/b", "a/b", true, { 0 } },
    { "a/b", "a/b/c", false, { 0 } },
    { "a/b/c", "a/b", false, { 0 } },
    { "a/b", "a/bc", false, { 0 } },
    { "a/b", "A/b", false, { 0 } },
    /* '$' topics: not matched by a leading wildcard or capture. */
    { "#", "$SYS/broker/load", false, { 0 } },
    { "+/broker/#", "$SYS/broker/load", false, { 0 } },
    { "+/broker/load", "$SYS/broker/load", false, { 0 } },
    { "{x}/broker/load", "$SYS/broker/load", false, { 0 } },
    { "+", "$", false, { 0 } },
    { "$SYS/#", "$SYS/broker/load", true, { 0 } },
    { "$SYS/{what}", "$SYS/uptime", true, { "uptime", NULL } },
    { "a/+", "a/$x", true, { 0 } },
    { "a/{x}", "a/$x", true, { "$x", NULL } },
    /* '#' */
    { "#", "a", true, { 0 } },
    { "#", "a/b/c", true, { 0 } },
    { "#", "/", true, { 0 } },
    { "a/#", "a", true, { 0 } },
    { "a/#", "a/", true, { 0 } },
    { "a/#", "a/b/c/d", true, { 0 } },
    { "a/#", "ab", false, { 0 } },
    { "a/#", "b/a", false, { 0 } },
    { "a/b/#", "a", false, { 0 } },
    { "a/{x}/#", "a/1", true, { "1", NULL } },
    { "a/{x}/#", "a/1/2/3", true, { "1", NULL } },
    { "a/{x}/#", "a", false, { 0 } },
    /* Empty levels are levels. */
    { "a//b", "a//b", true, { 0 } },
    { "a/+/b", "a//b", true, { 0 } },
    { "a/{x}/b", "a//b", true, { "", NULL } },
    { "a/b", "a//b", false, { 0 } },
    { "a//b", "a/b", false, { 0 } },
    { "+/+", "/", true, { 0 } },
    { "{a}/{b}", "/", true, { "", "", NULL } },
    { "a/+", "a/", true, { 0 } },
    { "a", "a/", false, { 0 } },
    { "/a", "/a", true, { 0 } },
    { "/a", "a", false, { 0 } },
    { "{a}", "x/y", false, { 0 } },
    /* UTF-8 levels are bytes. */
    { "usine/{atelier}/temp\xc3\xa9rature", "usine/c\xc3\xb4t\xc3\xa9-nord/temp\xc3\xa9rature",
      true, { "c\xc3\xb4t\xc3\xa9-nord", NULL } },
    { "\xe5\xb7\xa5\xe5\x8e\x82/+/\xe6\xb8\xa9\xe5\xba\xa6",
      "\xe5\xb7\xa5\xe5\x8e\x82/\xe4\xb8\x80/\xe6\xb8\xa9\xe5\xba\xa6", true, { 0 } },
    { "\xe5\xb7\xa5\xe5\x8e\x82/#", "\xe5\xb7\xa5\xe5\x8e\x82", true, { 0 } },
    { "caf\xc3\xa9", "cafe\xcc\x81", false, { 0 } },   /* NFC vs NFD: different bytes */
    { "{id}/x", "\xf0\x9f\x8f\xad/x", true, { "\xf0\x9f\x8f\xad", NULL } },
    { "\xf0\x9f\x8f\xad/{x}", "\xf0\x9f\x8f\xad/a", true, { "a", NULL } },
    { "\xf0\x9f\x8f\xad/{x}", "\xf0\x9f\x8f\xae/a", false, { 0 } },
};

static void
check_caps(const struct match_case *c, const struct match *m)
{
    size_t i;

    for (i = 0; c->caps[i] != NULL; i++) {
        ck_assert_uint_gt(m->ncaptures, i);
        ck_assert_uint_eq(m->cap[i].len, strlen(c->caps[i]));
        ck_assert_msg(memcmp(m->cap[i].ptr, c->caps[i], m->cap[i].len) == 0,
                      "%s on %s: capture %zu is '%.*s', expected '%s'", c->pattern,
                      c->topic, i, (int)m->cap[i].len, m->cap[i].ptr, c->caps[i]);
    }
    if (c->caps[0] != NULL)
        ck_assert_uint_eq(m->ncaptures, i);
}

START_TEST(test_route_match_table)
{
    const struct match_case *c = &match_cases[_i];
    struct pattern *p;
    struct router *r;
    struct match m;
    struct err err = { 0 };
    char *topic;
    size_t len = strlen(c->topic);

    ck_assert_int_eq(pattern_compile(&p, c->pattern, &err), 0);
    /* Not NUL-terminated: the matcher must stop at len. */
    topic = malloc(len + 1);
    memcpy(topic, c->topic, len);
    topic[len] = '/';
    ck_assert_msg(pattern_match(p, topic, len, &m) == c->expect, "pattern %s topic %s",
                  c->pattern, c->topic);
    if (c->expect)
        check_caps(c, &m);

    ck_assert_int_eq(router_create(&r, &p, 1, &err), 0);
    ck_assert_msg(router_match(r, topic, len, &m) == c->expect, "router: %s on %s",
                  c->pattern, c->topic);
    if (c->expect) {
        ck_assert_uint_eq(m.route, 0);
        check_caps(c, &m);
    }
    router_destroy(r);
    pattern_destroy(p);
    free(topic);
}
END_TEST

/* ---- pattern errors ---------------------------------------------------------- */

struct error_case {
    const char *pattern;
    const char *msg;
};

static char many_caps[256], many_levels[256], many_caps_msg[512], many_levels_msg[512];

static const struct error_case error_cases[] = {
    { "", "pattern \"\": column 1: empty pattern" },
    { "a/#/b", "pattern \"a/#/b\": column 3: '#' must be the last level" },
    { "#/a", "pattern \"#/a\": column 1: '#' must be the last level" },
    { "a/b#", "pattern \"a/b#\": column 4: '#' must be alone in its level" },
    { "a/+b", "pattern \"a/+b\": column 3: '+' must be alone in its level" },
    { "a/b+/c", "pattern \"a/b+/c\": column 4: '+' must be alone in its level" },
    { "a/{x", "pattern \"a/{x\": column 3: '{' without '}'" },
    { "a/{x/y}", "pattern \"a/{x/y}\": column 3: '{' without '}'" },
    { "a/x}", "pattern \"a/x}\": column 4: '}' without '{'" },
    { "a/{x}y", "pattern \"a/{x}y\": column 3: a capture must be a whole level, like {name}" },
    { "a/dev-{x}", "pattern \"a/dev-{x}\": column 7: a capture must be a whole level,"
                   " like {name}" },
    { "a/{}", "pattern \"a/{}\": column 3: empty capture name {}" },
    { "a/{1x}", "pattern \"a/{1x}\": column 4: capture name {1x} must start with a letter"
                " or '_'" },
    { "a/{x-y}", "pattern \"a/{x-y}\": column 5: capture name {x-y} may only have letters,"
                 " digits and '_'" },
    { "{x}/{x}", "pattern \"{x}/{x}\": column 5: duplicate capture {x}" },
    { "$share/g/a/b", "pattern \"$share/g/a/b\": column 1: shared subscriptions are set with"
                      " mqtt.share_group, not in a route" },
    { "a/\xff", "pattern \"a/\xff\": column 3: not valid UTF-8" },
    { "a/\xc3", "pattern \"a/\xc3\": column 3: not valid UTF-8" },
    { "\xed\xa0\x80", "pattern \"\xed\xa0\x80\": column 1: not valid UTF-8" },   /* surrogate */
    { "a\xe0\x80\x80", "pattern \"a\xe0\x80\x80\": column 2: not valid UTF-8" },   /* overlong */
    { "a\xf4\x90\x80\x80", "pattern \"a\xf4\x90\x80\x80\": column 2: not valid UTF-8" },
    { "a/\xc3(", "pattern \"a/\xc3(\": column 3: not valid UTF-8" },
    { "ab\xf0\x9f\x8f", "pattern \"ab\xf0\x9f\x8f\": column 3: not valid UTF-8" },
    { many_caps, many_caps_msg },
    { many_levels, many_levels_msg },
};

static void
setup_error_cases(void)
{
    size_t i, n = 0, col = 0;

    /* 17 captures {a}/{b}/...: the 17th starts at column 1 + 16 * 4. */
    for (i = 0; i < 17; i++) {
        if (i == 16)
            col = n + 1;
        n += (size_t)snprintf(many_caps + n, sizeof(many_caps) - n, "%s{%c}", i ? "/" : "", (char)('a' + i));
        if (i == 16)
            col++;   /* past the '/' */
    }
    snprintf(many_caps_msg, sizeof(many_caps_msg),
             "pattern \"%s\": column %zu: more than 16 captures", many_caps, col);
    /* 65 levels "x/x/.../x": the 65th starts at column 129. */
    for (i = 0, n = 0; i < 65; i++)
        n += (size_t)snprintf(many_levels + n, sizeof(many_levels) - n, "%sx", i ? "/" : "");
    snprintf(many_levels_msg, sizeof(many_levels_msg),
             "pattern \"%s\": column 129: more than 64 levels", many_levels);
}

START_TEST(test_route_pattern_errors)
{
    const struct error_case *c = &error_cases[_i];
    struct pattern *p = (struct pattern *)1;
    struct err err = { 0 };

    setup_error_cases();
    ck_assert_int_eq(pattern_compile(&p, c->pattern, &err), -EINVAL);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(err.code, -EINVAL);
    ck_assert_str_eq(err.msg, c->msg);
}
END_TEST

START_TEST(test_route_pattern_longer_than_mqtt_limit)
{
    char *text = malloc(65537);
    struct pattern *p;
    struct err err = { 0 };

    memset(text, 'a', 65536);
    text[65536] = '\0';
    ck_assert_int_eq(pattern_compile(&p, text, &err), -EINVAL);
    ck_assert_str_eq(err.msg, "pattern \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\": column"
                              " 65536: longer than the MQTT limit of 65535 bytes");
    text[65535] = '\0';
    ck_assert_int_eq(pattern_compile(&p, text, &err), 0);
    pattern_destroy(p);
    free(text);
}
END_TEST

START_TEST(test_route_pattern_limits_accepted)
{
    char text[512];
    struct pattern *p;
    size_t i, n = 0;

    /* Exactly 16 captures and 64 levels are fine. */
    for (i = 0; i < 64; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s", i ? "/" : "",
                             i < 16 ? (char[]){ '{', (char)('a' + i), '}', 0 } : "x");
    ck_assert_int_eq(pattern_compile(&p, text, NULL), 0);
    ck_assert_uint_eq(pattern_ncaptures(p), 16);
    pattern_destroy(p);
}
END_TEST

START_TEST(test_route_pattern_accessors)
{
    struct pattern *p;

    ck_assert_int_eq(pattern_compile(&p, "f/{site}/+/{dev}/#", NULL), 0);
    ck_assert_str_eq(pattern_text(p), "f/{site}/+/{dev}/#");
    ck_assert_str_eq(pattern_filter(p), "f/+/+/+/#");
    ck_assert_uint_eq(pattern_ncaptures(p), 2);
    ck_assert_str_eq(pattern_capture_name(p, 0), "site");
    ck_assert_str_eq(pattern_capture_name(p, 1), "dev");
    ck_assert_int_eq(pattern_capture_index(p, "dev"), 1);
    ck_assert_int_eq(pattern_capture_index(p, "line"), -1);
    pattern_destroy(p);
    pattern_destroy(NULL);
}
END_TEST

/* ---- router precedence ------------------------------------------------------- */

struct prec_case {
    const char *patterns[4];   /* NULL-terminated, in file order */
    const char *topic;
    int         route;         /* expected route, -1 for no match */
    const char *caps[3];
};

static const struct prec_case prec_cases[] = {
    { { "a/+", "a/b", NULL }, "a/b", 0, { 0 } },
    { { "a/b", "a/+", NULL }, "a/b", 0, { 0 } },
    { { "a/b", "a/+", NULL }, "a/c", 1, { 0 } },
    { { "#", "a/b", NULL }, "a/b", 0, { 0 } },
    { { "a/b", "#", NULL }, "a/b", 0, { 0 } },
    { { "a/b", "#", NULL }, "c", 1, { 0 } },
    { { "a/{x}/c", "a/b/{y}", NULL }, "a/b/c", 0, { "b", NULL } },
    { { "a/b/{y}", "a/{x}/c", NULL }, "a/b/c", 0, { "c", NULL } },
    { { "x/+/+/z", "x/y/#", NULL }, "x/y/q/z", 0, { 0 } },
    { { "x/y/#", "x/+/+/z", NULL }, "x/y/q/z", 0, { 0 } },
    { { "a/#", "a", NULL }, "a", 0, { 0 } },
    { { "a", "a/#", NULL }, "a", 0, { 0 } },
    { { "a/b/c/#", "a/#", "a/b/c", NULL }, "a/b/c", 0, { 0 } },
    { { "a/b/c", "a/b/c/#", "a/#", NULL }, "a/b/c/d", 1, { 0 } },
    { { "#", "$SYS/#", NULL }, "$SYS/load", 1, { 0 } },
    { { "{x}/load", "$SYS/{y}", NULL }, "$SYS/load", 1, { "load", NULL } },
    { { "+/x", NULL }, "$a/x", -1, { 0 } },
    { { "f/{site}/{dev}/t", "f/{s}/{d}/#", NULL }, "f/ber/d1/t", 0, { "ber", "d1", NULL } },
    { { "f/{site}/{dev}/t", "f/{s}/{d}/#", NULL }, "f/ber/d1/u", 1, { "ber", "d1", NULL } },
    { { "a/b", "a/c", NULL }, "a/d", -1, { 0 } },
    { { NULL }, "a", -1, { 0 } },
};

START_TEST(test_route_first_match_wins)
{
    const struct prec_case *c = &prec_cases[_i];
    struct pattern *ps[4];
    struct router *r;
    struct match m;
    size_t n, i;

    for (n = 0; c->patterns[n] != NULL; n++)
        ck_assert_int_eq(pattern_compile(&ps[n], c->patterns[n], NULL), 0);
    ck_assert_int_eq(router_create(&r, ps, n, NULL), 0);
    if (c->route < 0) {
        ck_assert(!router_match(r, c->topic, strlen(c->topic), &m));
    } else {
        ck_assert_msg(router_match(r, c->topic, strlen(c->topic), &m), "%s", c->topic);
        ck_assert_uint_eq(m.route, (size_t)c->route);
        for (i = 0; c->caps[i] != NULL; i++) {
            ck_assert_uint_eq(m.cap[i].len, strlen(c->caps[i]));
            ck_assert(memcmp(m.cap[i].ptr, c->caps[i], m.cap[i].len) == 0);
        }
        ck_assert_uint_eq(m.ncaptures, pattern_ncaptures(ps[m.route]));
    }
    router_destroy(r);
    for (i = 0; i < n; i++)
        pattern_destroy(ps[i]);
}
END_TEST

/* Router == linear scan over random overlapping patterns and topics. */
START_TEST(test_route_router_equals_linear_scan)
{
    static const char *lv[] = { "a", "b", "", "$s", "+", "{c}", "#" };
    static const char *tv[] = { "a", "b", "", "$s", "zz" };
    struct pattern *ps[40];
    struct router *r;
    unsigned seed = 12345;
    struct err err = { 0 };
    size_t round;

#define RND(n) ((seed = seed * 1103515245u + 12345u), (size_t)((seed >> 16) % (n)))
    for (round = 0; round < 200; round++) {
        size_t n = 0, t, i;

        while (n < 40) {
            char text[64] = "";
            size_t levels = 1 + RND(4), k;
            int caps = 0;

            for (k = 0; k < levels; k++) {
                const char *l = lv[RND(7)];
                char cap[16];

                if (strcmp(l, "#") == 0 && k + 1 != levels)
                    l = "+";
                if (strcmp(l, "{c}") == 0) {
                    snprintf(cap, sizeof(cap), "{c%d}", caps++);
                    l = cap;
                }
                if (k > 0)
                    strcat(text, "/");
                strcat(text, l);
            }
            if (text[0] == '\0')
                continue;   /* the empty pattern is invalid */
            ck_assert_msg(pattern_compile(&ps[n], text, &err) == 0, "%s", err.msg);
            n++;
        }
        ck_assert_int_eq(router_create(&r, ps, n, NULL), 0);
        for (t = 0; t < 200; t++) {
            char topic[64] = "";
            size_t levels = 1 + RND(5), k;
            struct match m1, m2;
            bool lin = false, tri;

            for (k = 0; k < levels; k++) {
                if (k > 0)
                    strcat(topic, "/");
                strcat(topic, tv[RND(5)]);
            }
            for (i = 0; i < n && !lin; i++)
                lin = pattern_match(ps[i], topic, strlen(topic), &m1);
            tri = router_match(r, topic, strlen(topic), &m2);
            ck_assert_msg(lin == tri, "topic %s: linear %d, trie %d", topic, lin, tri);
            if (lin) {
                ck_assert_uint_eq(m2.route, i - 1);
                ck_assert_uint_eq(m1.ncaptures, m2.ncaptures);
                for (k = 0; k < m1.ncaptures; k++) {
                    ck_assert_ptr_eq(m1.cap[k].ptr, m2.cap[k].ptr);
                    ck_assert_uint_eq(m1.cap[k].len, m2.cap[k].len);
                }
            }
        }
        router_destroy(r);
        for (i = 0; i < n; i++)
            pattern_destroy(ps[i]);
    }
#undef RND
}
END_TEST

/* ---- subscriptions ----------------------------------------------------------- */

struct covers_case {
    const char *a, *b;
    bool        expect;
};

static const struct covers_case covers_cases[] = {
    { "#", "a/b/c", true },
    { "#", "$SYS/x", false },
    { "$SYS/#", "$SYS/x", true },
    { "+/#", "#", true },
    { "#", "+/#", true },
    { "+", "#", false },
    { "+/+/#", "#", false },
    { "a/+", "a/#", false },
    { "a/#", "a", true },
    { "a/#", "a/+/#", true },
    { "a/+/#", "a/#", false },
    { "a/+", "a/b", true },
    { "a/b", "a/+", false },
    { "a/b", "a/b", true },
    { "a/+/+", "a/+/c", true },
    { "a/+/c", "a/+/+", false },
    { "+/+", "$x/y", false },
    { "+/x", "$SYS/x", false },
    { "a/+/c", "a/+", false },
    { "a", "a/#", false },
    { "a/+", "a//", false },
    { "a/+/+", "a//", true },
    { "+/+", "/", true },
};

START_TEST(test_route_filter_covers_table)
{
    const struct covers_case *c = &covers_cases[_i];

    ck_assert_msg(route_filter_covers(c->a, c->b) == c->expect, "covers(%s, %s)", c->a,
                  c->b);
}
END_TEST

struct subs_case {
    const char *patterns[5];
    const char *subs[5];
};

static const struct subs_case subs_cases[] = {
    { { "a/{x}/c", "a/+/c", NULL }, { "a/+/c", NULL } },
    { { "a/+/c", "a/#", NULL }, { "a/#", NULL } },
    { { "a/#", "a/+/c", NULL }, { "a/#", NULL } },
    { { "a/+/c", "a/+/+", NULL }, { "a/+/+", NULL } },
    { { "#", "$SYS/#", "a/b", NULL }, { "#", "$SYS/#", NULL } },
    { { "+/#", "#", NULL }, { "+/#", NULL } },
    { { "#", "+/#", NULL }, { "#", NULL } },
    { { "a/b", "a/b/#", NULL }, { "a/b/#", NULL } },
    { { "a/+/#", "a/#", NULL }, { "a/#", NULL } },
    { { "x/1", "y/2", "x/1", NULL }, { "x/1", "y/2", NULL } },
    { { "a//b", "a/+/b", NULL }, { "a/+/b", NULL } },
    { { "f/{s}/{l}/{d}/telemetry", "f/{s}/{l}/{d}/alarm", "spBv1.0/#", NULL },
      { "f/+/+/+/telemetry", "f/+/+/+/alarm", "spBv1.0/#", NULL } },
    { { NULL }, { NULL } },
};

START_TEST(test_route_subscriptions_minimal)
{
    const struct subs_case *c = &subs_cases[_i];
    struct pattern *ps[5];
    struct router *r;
    size_t n, i;

    for (n = 0; c->patterns[n] != NULL; n++)
        ck_assert_int_eq(pattern_compile(&ps[n], c->patterns[n], NULL), 0);
    ck_assert_int_eq(router_create(&r, ps, n, NULL), 0);
    for (i = 0; c->subs[i] != NULL; i++) {
        ck_assert_uint_gt(router_nsubscriptions(r), i);
        ck_assert_str_eq(router_subscription(r, i), c->subs[i]);
    }
    ck_assert_uint_eq(router_nsubscriptions(r), i);
    router_destroy(r);
    router_destroy(NULL);
    for (i = 0; i < n; i++)
        pattern_destroy(ps[i]);
}
END_TEST

static Suite *
route_suite(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("core");

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
    tcase_add_loop_test(tc, test_route_match_table, 0, N(match_cases));
    tcase_add_loop_test(tc, test_route_pattern_errors, 0, N(error_cases));
    tcase_add_test(tc, test_route_pattern_limits_accepted);
    tcase_add_test(tc, test_route_pattern_longer_than_mqtt_limit);
    tcase_add_test(tc, test_route_pattern_accessors);
    tcase_add_loop_test(tc, test_route_first_match_wins, 0, N(prec_cases));
    tcase_add_test(tc, test_route_router_equals_linear_scan);
    tcase_add_loop_test(tc, test_route_filter_covers_table, 0, N(covers_cases));
    tcase_add_loop_test(tc, test_route_subscriptions_minimal, 0, N(subs_cases));
#undef N
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(route_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
