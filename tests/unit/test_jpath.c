/* test_jpath.c - JSON path compilation, lookup and value rendering, table-driven. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/jpath.h"

static const char doc_text[] =
    "{\"a\":{\"b\":[10,20,{\"c\":\"x\"}]},\"device.id\":\"d1\",\"it's\":1,\"s\":\"str\","
    "\"n\":null,\"t\":true,\"f\":false,\"r\":21.5,\"i\":-7,\"ri\":7.0,\"e\":1e300,"
    "\"tenth\":0.1,\"tiny\":1e-7,\"big\":9223372036854775807,"
    "\"o\":{\"k\":[1,\"two\",null],\"z\":{}},\"esc\":\"a\\\"b\\\\c\\n\","
    "\"wrap\":{\"s\":\"a\\\"b\\\\c\\n\\u0001/\\u00e9\"},\"\":5,\"a-b\":\"dash\","
    "\"0\":\"zero\",\"empty\":[],\"nul\":\"x\\u0000y\"}";

struct get_case {
    const char *path;
    const char *expect;     /* rendered value; NULL: jpath_get returns NULL */
    size_t      len;        /* expected length when expect has a NUL inside, else 0 */
};

static const struct get_case get_cases[] = {
    { "$.a.b[1]", "20", 0 },
    { "$.a.b[0]", "10", 0 },
    { "$.a.b[2].c", "x", 0 },
    { "$['device.id']", "d1", 0 },
    { "$['it\\'s']", "1", 0 },
    { "$['a']['b'][2]['c']", "x", 0 },
    { "$.s", "str", 0 },
    { "$.n", "null", 0 },
    { "$.t", "true", 0 },
    { "$.f", "false", 0 },
    { "$.r", "21.5", 0 },
    { "$.i", "-7", 0 },
    { "$.ri", "7.0", 0 },
    { "$.e", "1e+300", 0 },
    { "$.tenth", "0.1", 0 },
    { "$.tiny", "1e-07", 0 },
    { "$.big", "9223372036854775807", 0 },
    { "$.o", "{\"k\":[1,\"two\",null],\"z\":{}}", 0 },
    { "$.o.k", "[1,\"two\",null]", 0 },
    { "$.empty", "[]", 0 },
    { "$.esc", "a\"b\\c\n", 0 },                                /* top-level string: raw */
    { "$.wrap", "{\"s\":\"a\\\"b\\\\c\\n\\u0001/\xc3\xa9\"}", 0 },   /* nested: escaped */
    { "$['']", "5", 0 },
    { "$.a-b", "dash", 0 },
    { "$.0", "zero", 0 },
    { "$.nul", "x\0y", 3 },
    { "$.a.b[3]", NULL, 0 },
    { "$.a.b.c", NULL, 0 },
    { "$.a[0]", NULL, 0 },
    { "$.s[0]", NULL, 0 },
    { "$.s.x", NULL, 0 },
    { "$.missing", NULL, 0 },
    { "$.n.x", NULL, 0 },
    { "$.a.b[4294967296]", NULL, 0 },
};

START_TEST(test_jpath_get_table)
{
    const struct get_case *c = &get_cases[_i];
    struct jpath *jp;
    json_t *doc, *v;
    json_error_t jerr;
    struct err err = { 0 };
    char buf[256];
    int n;

    doc = json_loads(doc_text, JSON_ALLOW_NUL, &jerr);
    ck_assert_msg(doc != NULL, "%s", jerr.text);
    ck_assert_msg(jpath_compile(&jp, c->path, &err) == 0, "%s: %s", c->path, err.msg);
    ck_assert_str_eq(jpath_text(jp), c->path);
    v = jpath_get(jp, doc);
    if (c->expect == NULL) {
        ck_assert_ptr_null(v);
    } else {
        size_t len = c->len ? c->len : strlen(c->expect);

        ck_assert_msg(v != NULL, "%s: not found", c->path);
        n = jpath_render_value(v, buf, sizeof(buf));
        ck_assert_int_eq(n, (int)len);
        ck_assert_msg(memcmp(buf, c->expect, len) == 0 && buf[len] == '\0',
                      "%s: got '%s', expected '%s'", c->path, buf, c->expect);
        /* Exactly enough room, and one byte short. */
        ck_assert_int_eq(jpath_render_value(v, buf, len + 1), (int)len);
        ck_assert_int_eq(jpath_render_value(v, buf, len), -ENOSPC);
        ck_assert_int_eq(jpath_render_value(v, buf, 0), -ENOSPC);
    }
    jpath_destroy(jp);
    json_decref(doc);
}
END_TEST

START_TEST(test_jpath_root_is_the_document)
{
    struct jpath *jp;
    json_t *doc = json_loads("[1,2.5,\"x\"]", 0, NULL);
    char buf[64];

    ck_assert_int_eq(jpath_compile(&jp, "$", NULL), 0);
    ck_assert_ptr_eq(jpath_get(jp, doc), doc);
    ck_assert_int_eq(jpath_render_value(doc, buf, sizeof(buf)), 11);
    ck_assert_str_eq(buf, "[1,2.5,\"x\"]");
    jpath_destroy(jp);
    jpath_destroy(NULL);
    json_decref(doc);
}
END_TEST

/* Containers render as JSON that reads back equal, reals included. */
START_TEST(test_jpath_render_round_trips)
{
    static const char *docs[] = {
        "{\"r\":[0.1,1e300,-2.5e-300,123456789.123,1.0,-0.0,5e-324]}",
        "{\"s\":\"\\u0000\\u001f\\\"\\\\\\b\\f\\n\\r\\t\\u00e9\\ud83c\\udfed\"}",
        "[[],{},[[[]]],{\"a\":{\"b\":{}}}]",
    };
    size_t i;

    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        json_t *doc = json_loads(docs[i], JSON_ALLOW_NUL, NULL), *back;
        char buf[512];
        int n;

        ck_assert_ptr_nonnull(doc);
        n = jpath_render_value(doc, buf, sizeof(buf));
        ck_assert_int_gt(n, 0);
        back = json_loadb(buf, (size_t)n, JSON_ALLOW_NUL, NULL);
        ck_assert_msg(back != NULL && json_equal(doc, back), "%s -> %s", docs[i], buf);
        json_decref(back);
        json_decref(doc);
    }
}
END_TEST

struct error_case {
    const char *path;
    const char *msg;
};

static const struct error_case error_cases[] = {
    { "", "json path \"\": column 1: a path starts with '$'" },
    { "a.b", "json path \"a.b\": column 1: a path starts with '$'" },
    { "$.", "json path \"$.\": column 2: expected a field name after '.'"
            " (use ['...'] for other characters)" },
    { "$.a..b", "json path \"$.a..b\": column 4: expected a field name after '.'"
                " (use ['...'] for other characters)" },
    { "$.a b", "json path \"$.a b\": column 4: expected '.name', '[index]' or ['name']" },
    { "$a", "json path \"$a\": column 2: expected '.name', '[index]' or ['name']" },
    { "$[", "json path \"$[\": column 3: expected an array index or a quoted name after '['" },
    { "$[-1]", "json path \"$[-1]\": column 3: expected an array index or a quoted name"
               " after '['" },
    { "$[1", "json path \"$[1\": column 4: expected ']' after the array index" },
    { "$[1x]", "json path \"$[1x]\": column 4: expected ']' after the array index" },
    { "$['a", "json path \"$['a\": column 2: a quoted step needs its closing quote" },
    { "$['a'", "json path \"$['a'\": column 6: expected ']' after the closing quote" },
    { "$['a\\x']", "json path \"$['a\\x']\": column 5: only \\' and \\\\ are escapes in a"
                   " quoted step" },
    { "$[99999999999999999999999]", "json path \"$[99999999999999999999999]\": column 3:"
                                    " array index too large" },
    { "$.*", "json path \"$.*\": column 2: expected a field name after '.'"
             " (use ['...'] for other characters)" },
};

START_TEST(test_jpath_compile_errors)
{
    const struct error_case *c = &error_cases[_i];
    struct jpath *jp = (struct jpath *)1;
    struct err err = { 0 };

    ck_assert_int_eq(jpath_compile(&jp, c->path, &err), -EINVAL);
    ck_assert_ptr_null(jp);
    ck_assert_int_eq(err.code, -EINVAL);
    ck_assert_str_eq(err.msg, c->msg);
}
END_TEST

START_TEST(test_jpath_render_nospace_leaves_empty_string)
{
    json_t *v = json_string("hello");
    char buf[8] = "garbage";

    ck_assert_int_eq(jpath_render_value(v, buf, 5), -ENOSPC);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(jpath_render_value(v, buf, 6), 5);
    ck_assert_str_eq(buf, "hello");
    json_decref(v);
}
END_TEST

static Suite *
jpath_suite(void)
{
    Suite *s = suite_create("jpath");
    TCase *tc = tcase_create("core");

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
    tcase_add_loop_test(tc, test_jpath_get_table, 0, N(get_cases));
    tcase_add_test(tc, test_jpath_root_is_the_document);
    tcase_add_test(tc, test_jpath_render_round_trips);
    tcase_add_loop_test(tc, test_jpath_compile_errors, 0, N(error_cases));
    tcase_add_test(tc, test_jpath_render_nospace_leaves_empty_string);
#undef N
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(jpath_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
