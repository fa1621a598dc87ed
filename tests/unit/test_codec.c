/* test_codec.c - raw and json payload handling, including the deliberate choices
 * documented in codec.c (duplicates, NaN, roots, limits). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/codec.h"
#include "sluice/err.h"

static int
decode(const char *codec, const char *payload, size_t len, struct codec_out *out,
       struct err *err)
{
    const struct codec *c = codec_find(codec);

    ck_assert_ptr_nonnull(c);
    return c->decode(NULL, "t", 1, payload, len, out, err);
}

START_TEST(test_codec_table_lists_raw_and_json)
{
    ck_assert_ptr_nonnull(codec_find("raw"));
    ck_assert_ptr_nonnull(codec_find("json"));
    ck_assert_ptr_null(codec_find("xml"));
    ck_assert_ptr_nonnull(codec_find("sparkplug"));
    ck_assert_ptr_null(codec_table[3]);
}
END_TEST

START_TEST(test_codec_raw_passes_bytes_through)
{
    struct codec_out out;
    const char p[] = { 0, 1, 2, (char)0xff };

    ck_assert_int_eq(decode("raw", p, sizeof(p), &out, NULL), 0);
    ck_assert_ptr_eq(out.value, p);
    ck_assert_uint_eq(out.value_len, sizeof(p));
    ck_assert_ptr_null(out.doc);
    codec_find("raw")->release(&out);
}
END_TEST

static const struct {
    const char *payload;
    int         rc;      /* 0 or -EBADMSG */
    const char *why;     /* substring of the error sentence */
} json_cases[] = {
    { "{\"a\":1}", 0, NULL },
    { "[1,2,3]", 0, NULL },                      /* any root */
    { "42", 0, NULL },
    { "\"text\"", 0, NULL },
    { "{\"a\":1,\"a\":2}", 0, NULL },            /* duplicates: last wins */
    { "{\"a\":NaN}", -EBADMSG, "json:" },
    { "{\"a\":Infinity}", -EBADMSG, "json:" },
    { "{\"a\":1", -EBADMSG, "json:" },
    { "", -EBADMSG, "json:" },
    { "{\"a\":\"\xff\xfe\"}", -EBADMSG, "json:" }, /* invalid UTF-8 */
    { "{} {}", -EBADMSG, "json:" },
};

START_TEST(test_codec_json_cases)
{
    struct codec_out out;
    struct err err = { 0 };
    int rc;

    rc = decode("json", json_cases[_i].payload, strlen(json_cases[_i].payload), &out, &err);
    ck_assert_msg(rc == json_cases[_i].rc, "case %d (%s): rc %d", _i, json_cases[_i].payload,
                  rc);
    if (rc == 0) {
        ck_assert_ptr_nonnull(out.doc);
        ck_assert_ptr_eq(out.value, json_cases[_i].payload);
    } else {
        ck_assert_ptr_nonnull(strstr(err.msg, json_cases[_i].why));
    }
    codec_find("json")->release(&out);
}
END_TEST

START_TEST(test_codec_json_duplicate_keys_last_wins)
{
    struct codec_out out;
    const char *p = "{\"a\":1,\"a\":2}";

    ck_assert_int_eq(decode("json", p, strlen(p), &out, NULL), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(out.doc, "a")), 2);
    codec_find("json")->release(&out);
}
END_TEST

START_TEST(test_codec_json_depth_limit)
{
    size_t deep = 100000;
    char *p = malloc(2 * deep + 1);
    struct codec_out out;
    struct err err = { 0 };

    memset(p, '[', deep);
    memset(p + deep, ']', deep);
    p[2 * deep] = '\0';
    ck_assert_int_eq(decode("json", p, 2 * deep, &out, &err), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err.msg, "nested deeper"));
    codec_find("json")->release(&out);

    /* Exactly at the limit is fine; brackets inside strings do not count. */
    memset(p, '[', CODEC_JSON_MAX_DEPTH);
    memset(p + CODEC_JSON_MAX_DEPTH, ']', CODEC_JSON_MAX_DEPTH);
    ck_assert_int_eq(decode("json", p, 2 * CODEC_JSON_MAX_DEPTH, &out, NULL), 0);
    codec_find("json")->release(&out);
    free(p);

    p = "{\"s\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}";
    ck_assert_int_eq(decode("json", p, strlen(p), &out, NULL), 0);
    codec_find("json")->release(&out);
}
END_TEST

START_TEST(test_codec_json_size_limit)
{
    struct codec_out out;
    struct err err = { 0 };

    /* The length check comes before any read of the bytes. */
    ck_assert_int_eq(decode("json", "{}", CODEC_JSON_MAX_BYTES + 1, &out, &err), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err.msg, "limit"));
    codec_find("json")->release(&out);
}
END_TEST

static Suite *
codec_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_codec_table_lists_raw_and_json);
    tcase_add_test(tc, test_codec_raw_passes_bytes_through);
    tcase_add_loop_test(tc, test_codec_json_cases, 0,
                        (int)(sizeof(json_cases) / sizeof(json_cases[0])));
    tcase_add_test(tc, test_codec_json_duplicate_keys_last_wins);
    tcase_add_test(tc, test_codec_json_depth_limit);
    tcase_add_test(tc, test_codec_json_size_limit);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(codec_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
