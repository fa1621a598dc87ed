/* test_tmpl.c - template compilation and rendering, table-driven. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/route.h"
#include "sluice/tmpl.h"

static const char *const names[] = { "site", "line", "device" };
static const struct capture caps[] = {
    { "berlin/xx", 6 },   /* slices of a topic: not NUL-terminated at len */
    { "l1", 2 },
    { "d7", 2 },
};
static const char doc_text[] =
    "{\"device\":{\"id\":\"dev-9\"},\"ts\":1700000000123,\"v\":21.5,\"tags\":[\"a\",\"b\"],"
    "\"a}b\":\"q\",\"n\":null}";

struct render_case {
    const char *text;
    const char *expect;    /* NULL: an error */
    int         rc;        /* expected error */
    const char *msg;       /* expected sentence for errors */
    bool        json;      /* tmpl_uses_json */
    bool        literal;   /* tmpl_is_literal */
};

static const struct render_case render_cases[] = {
    { "telemetry.{site}", "telemetry.berlin", 0, NULL, false, false },
    { "{device}", "d7", 0, NULL, false, false },
    { "{site}/{device}", "berlin/d7", 0, NULL, false, false },
    { "{site}{line}{device}", "berlinl1d7", 0, NULL, false, false },
    { "alarms", "alarms", 0, NULL, false, true },
    { "", "", 0, NULL, false, true },
    { "{{literal}}", "{literal}", 0, NULL, false, true },
    { "a{{{site}}}b", "a{berlin}b", 0, NULL, false, false },
    { "$.device.id", "dev-9", 0, NULL, true, false },
    { "{$.device.id}", "dev-9", 0, NULL, true, false },
    { "{site}-{$.device.id}", "berlin-dev-9", 0, NULL, true, false },
    { "{$.ts}", "1700000000123", 0, NULL, true, false },
    { "{$.v}", "21.5", 0, NULL, true, false },
    { "{$.n}", "null", 0, NULL, true, false },
    { "{$.tags}", "[\"a\",\"b\"]", 0, NULL, true, false },
    { "{$['device']['id']}", "dev-9", 0, NULL, true, false },
    { "{$['a}b']}", "q", 0, NULL, true, false },
    { "x.$.device.id", "x.$.device.id", 0, NULL, false, true },   /* "$." only at the start */
    { "{$.device.name}", NULL, -ENOENT,
      "template \"{$.device.name}\": no field $.device.name in the payload", true, false },
    { "k-{$.tags[5]}", NULL, -ENOENT,
      "template \"k-{$.tags[5]}\": no field $.tags[5] in the payload", true, false },
};

START_TEST(test_tmpl_render_table)
{
    const struct render_case *c = &render_cases[_i];
    struct tmpl *t;
    struct err err = { 0 };
    json_t *doc = json_loads(doc_text, 0, NULL);
    char buf[128];
    int n;

    ck_assert_ptr_nonnull(doc);
    ck_assert_msg(tmpl_compile(&t, c->text, names, 3, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(tmpl_text(t), c->text);
    ck_assert(tmpl_uses_json(t) == c->json);
    ck_assert(tmpl_is_literal(t) == c->literal);
    n = tmpl_render(t, caps, doc, buf, sizeof(buf), &err);
    if (c->expect == NULL) {
        ck_assert_int_eq(n, c->rc);
        ck_assert_str_eq(err.msg, c->msg);
    } else {
        size_t len = strlen(c->expect);

        ck_assert_int_eq(n, (int)len);
        ck_assert_str_eq(buf, c->expect);
        /* Exactly enough room, one byte short, none. */
        ck_assert_int_eq(tmpl_render(t, caps, doc, buf, len + 1, &err), (int)len);
        ck_assert_str_eq(buf, c->expect);
        ck_assert_int_eq(tmpl_render(t, caps, doc, buf, len, &err), -ENOSPC);
        ck_assert_int_eq(err.code, -ENOSPC);
        ck_assert_int_eq(tmpl_render(t, caps, doc, buf, 0, &err), -ENOSPC);
    }
    tmpl_destroy(t);
    json_decref(doc);
}
END_TEST

START_TEST(test_tmpl_nospace_message)
{
    struct tmpl *t;
    struct err err = { 0 };
    char buf[16];

    ck_assert_int_eq(tmpl_compile(&t, "telemetry.{site}", names, 3, NULL), 0);
    ck_assert_int_eq(tmpl_render(t, caps, NULL, buf, sizeof(buf), &err), -ENOSPC);
    ck_assert_str_eq(err.msg, "template \"telemetry.{site}\": result longer than 15 bytes");
    ck_assert_str_eq(buf, "");
    tmpl_destroy(t);
}
END_TEST

START_TEST(test_tmpl_json_part_needs_json_payload)
{
    struct tmpl *t;
    struct err err = { 0 };
    char buf[64];

    ck_assert_int_eq(tmpl_compile(&t, "{site}/{$.device.id}", names, 3, NULL), 0);
    ck_assert_int_eq(tmpl_render(t, caps, NULL, buf, sizeof(buf), &err), -ENOENT);
    ck_assert_str_eq(err.msg, "template \"{site}/{$.device.id}\": $.device.id needs a JSON"
                              " payload");
    tmpl_destroy(t);
    tmpl_destroy(NULL);
}
END_TEST

START_TEST(test_tmpl_missing_field_wins_over_nospace)
{
    struct tmpl *t;
    struct err err = { 0 };
    json_t *doc = json_loads(doc_text, 0, NULL);
    char buf[8];

    ck_assert_int_eq(tmpl_compile(&t, "a-long-prefix-{$.nope}", names, 3, NULL), 0);
    ck_assert_int_eq(tmpl_render(t, caps, doc, buf, sizeof(buf), &err), -ENOENT);
    ck_assert_str_eq(err.msg, "template \"a-long-prefix-{$.nope}\": no field $.nope in the"
                              " payload");
    ck_assert_int_eq(tmpl_render(t, caps, NULL, buf, 0, &err), -ENOENT);
    tmpl_destroy(t);
    json_decref(doc);
}
END_TEST

struct error_case {
    const char *text;
    size_t      nnames;
    const char *msg;
};

static const struct error_case error_cases[] = {
    { "{nope}", 3, "template \"{nope}\": column 1: unknown capture {nope};"
                   " available: site, line, device" },
    { "k.{site}.{dev}", 3, "template \"k.{site}.{dev}\": column 10: unknown capture {dev};"
                           " available: site, line, device" },
    { "{x}", 0, "template \"{x}\": column 1: unknown capture {x}; this route captures"
                " nothing" },
    { "a{site", 3, "template \"a{site\": column 2: '{' without '}'"
                   " (write '{{' for a literal brace)" },
    { "a}b", 3, "template \"a}b\": column 2: '}' without '{' (write '}}' for a literal brace)" },
    { "{}", 3, "template \"{}\": column 1: empty substitution {}" },
    { "{$.a..b}", 3, "template \"{$.a..b}\": column 2: json path \"$.a..b\": column 4:"
                     " expected a field name after '.' (use ['...'] for other characters)" },
    { "$.a b", 3, "template \"$.a b\": column 1: json path \"$.a b\": column 4:"
                  " expected '.name', '[index]' or ['name']" },
    { "{$['a}", 3, "template \"{$['a}\": column 1: '{' without '}'"
                   " (write '{{' for a literal brace)" },
};

START_TEST(test_tmpl_compile_errors)
{
    const struct error_case *c = &error_cases[_i];
    struct tmpl *t = (struct tmpl *)1;
    struct err err = { 0 };

    ck_assert_int_eq(tmpl_compile(&t, c->text, names, c->nnames, &err), -EINVAL);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(err.code, -EINVAL);
    ck_assert_str_eq(err.msg, c->msg);
}
END_TEST

static Suite *
tmpl_suite(void)
{
    Suite *s = suite_create("tmpl");
    TCase *tc = tcase_create("core");

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
    tcase_add_loop_test(tc, test_tmpl_render_table, 0, N(render_cases));
    tcase_add_test(tc, test_tmpl_nospace_message);
    tcase_add_test(tc, test_tmpl_json_part_needs_json_payload);
    tcase_add_test(tc, test_tmpl_missing_field_wins_over_nospace);
    tcase_add_loop_test(tc, test_tmpl_compile_errors, 0, N(error_cases));
#undef N
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(tmpl_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
