/* test_record.c - the extra-header block and the fixed SPEC headers. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/record.h"

START_TEST(test_record_hdrs_roundtrip_keeps_binary_values)
{
    struct buf b;
    struct record_header h;
    size_t off = 0;

    buf_init(&b);
    ck_assert_int_eq(record_hdrs_add(&b, "line", 4, "l1", 2), 0);
    ck_assert_int_eq(record_hdrs_add(&b, "bin", 3, "a\0b", 3), 0);
    ck_assert_int_eq(record_hdrs_add(&b, "empty", 5, "", 0), 0);

    ck_assert(record_hdrs_next(b.data, b.len, &off, &h));
    ck_assert_int_eq(h.name_len, 4);
    ck_assert_mem_eq(h.value, "l1", 2);
    ck_assert(record_hdrs_next(b.data, b.len, &off, &h));
    ck_assert_int_eq(h.value_len, 3);
    ck_assert_mem_eq(h.value, "a\0b", 3);
    ck_assert(record_hdrs_next(b.data, b.len, &off, &h));
    ck_assert_int_eq(h.value_len, 0);
    ck_assert(!record_hdrs_next(b.data, b.len, &off, &h));
    ck_assert_uint_eq(off, b.len);

    ck_assert(record_hdrs_find(b.data, b.len, "bin", &h));
    ck_assert(!record_hdrs_find(b.data, b.len, "bi", &h));
    buf_fini(&b);
}
END_TEST

START_TEST(test_record_hdrs_rejects_every_truncation)
{
    struct buf b;
    struct record_header h;

    buf_init(&b);
    ck_assert_int_eq(record_hdrs_add(&b, "name", 4, "value", 5), 0);
    /* Every strict prefix of a one-header block must be rejected, not overrun. */
    for (size_t len = 0; len < b.len; len++) {
        size_t off = 0;
        ck_assert_msg(!record_hdrs_next(b.data, len, &off, &h), "prefix %zu accepted", len);
    }
    buf_fini(&b);
}
END_TEST

START_TEST(test_record_hdrs_refuses_oversized_names)
{
    static char big[70000];
    struct buf b;

    buf_init(&b);
    memset(big, 'x', sizeof(big));
    ck_assert_int_eq(record_hdrs_add(&b, big, sizeof(big), "v", 1), -E2BIG);
    ck_assert_uint_eq(b.len, 0);
    buf_fini(&b);
}
END_TEST

START_TEST(test_record_fixed_headers_are_the_spec_set)
{
    static const char *const names[] = { "mqtt.topic", "mqtt.qos", "mqtt.retained",
                                         "event.time", "ingest.time", "sluice.instance",
                                         "sluice.seq" };
    static const char *const values[] = { "a/b", "1", "true", "1714564800123",
                                          "1714564800999", "site-1", "18446744073709551615" };
    struct record_header out[RECORD_FIXED_HEADERS];
    char scratch[RECORD_SCRATCH];
    struct record rec = { 0 };
    size_t n;

    rec.mqtt_topic = "a/b";
    rec.mqtt_topic_len = 3;
    rec.qos = 1;
    rec.retained = true;
    rec.event_ms = 1714564800123;
    rec.ingest_ms = 1714564800999;
    rec.seq = UINT64_MAX;
    n = record_fixed_headers(&rec, "site-1", scratch, out);
    ck_assert_uint_eq(n, RECORD_FIXED_HEADERS);
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(out[i].name, names[i]);
        ck_assert_uint_eq(out[i].name_len, strlen(names[i]));
        ck_assert_uint_eq(out[i].value_len, strlen(values[i]));
        ck_assert_mem_eq(out[i].value, values[i], out[i].value_len);
    }
    /* The extremes of the numbers: a clock before 1970 and zeros. */
    rec.event_ms = INT64_MIN;
    rec.ingest_ms = -1;
    rec.seq = 0;
    n = record_fixed_headers(&rec, "site-1", scratch, out);
    ck_assert_uint_eq(out[3].value_len, 20);
    ck_assert_mem_eq(out[3].value, "-9223372036854775808", 20);
    ck_assert_uint_eq(out[4].value_len, 2);
    ck_assert_mem_eq(out[4].value, "-1", 2);
    ck_assert_uint_eq(out[6].value_len, 1);
    ck_assert_mem_eq(out[6].value, "0", 1);
}
END_TEST

static Suite *
record_suite(void)
{
    Suite *s = suite_create("record");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_record_hdrs_roundtrip_keeps_binary_values);
    tcase_add_test(tc, test_record_hdrs_rejects_every_truncation);
    tcase_add_test(tc, test_record_hdrs_refuses_oversized_names);
    tcase_add_test(tc, test_record_fixed_headers_are_the_spec_set);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(record_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
