/* test_units.c - durations, sizes, epoch units and RFC 3339, table-driven. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/units.h"

#define N(t) (sizeof(t) / sizeof((t)[0]))

static const struct {
    const char *in;
    int         rc;
    int64_t     ms;
} durations[] = {
    { "0", 0, 0 },
    { "0s", 0, 0 },
    { "200ms", 0, 200 },
    { "1s", 0, 1000 },
    { "30s", 0, 30000 },
    { "5m", 0, 300000 },
    { "2h", 0, 7200000 },
    { "1d", 0, 86400000 },
    { "7d", 0, 604800000 },
    { "9223372036854775807ms", 0, INT64_MAX },
    { "9223372036854775808ms", -EINVAL, 0 },
    { "106751991167301d", -EINVAL, 0 },
    { "99999999999999999999999s", -EINVAL, 0 },
    { "", -EINVAL, 0 },
    { "5", -EINVAL, 0 },
    { "s", -EINVAL, 0 },
    { "-5s", -EINVAL, 0 },
    { "+5s", -EINVAL, 0 },
    { "1.5s", -EINVAL, 0 },
    { "5 s", -EINVAL, 0 },
    { " 5s", -EINVAL, 0 },
    { "5s ", -EINVAL, 0 },
    { "5S", -EINVAL, 0 },
    { "5sec", -EINVAL, 0 },
    { "5us", -EINVAL, 0 },
    { "1d2h", -EINVAL, 0 },
};

START_TEST(test_units_parse_duration_table)
{
    int64_t ms = -1;
    int rc = units_parse_duration(durations[_i].in, &ms);

    ck_assert_msg(rc == durations[_i].rc, "'%s': rc %d, want %d", durations[_i].in, rc,
                  durations[_i].rc);
    if (rc == 0)
        ck_assert_msg(ms == durations[_i].ms, "'%s': %lld, want %lld", durations[_i].in,
                      (long long)ms, (long long)durations[_i].ms);
}
END_TEST

static const struct {
    const char *in;
    int         rc;
    uint64_t    bytes;
} sizes[] = {
    { "0", 0, 0 },
    { "512", 0, 512 },
    { "512B", 0, 512 },
    { "1KiB", 0, 1024 },
    { "2MiB", 0, 2u << 20 },
    { "2GiB", 0, 2ull << 30 },
    { "1KB", 0, 1000 },
    { "3MB", 0, 3000000 },
    { "4GB", 0, 4000000000ull },
    { "18446744073709551615", 0, UINT64_MAX },
    { "18446744073709551616", -EINVAL, 0 },
    { "17179869184GiB", -EINVAL, 0 },
    { "", -EINVAL, 0 },
    { "GiB", -EINVAL, 0 },
    { "-1", -EINVAL, 0 },
    { "1.5GiB", -EINVAL, 0 },
    { "2 GiB", -EINVAL, 0 },
    { "2gib", -EINVAL, 0 },
    { "2G", -EINVAL, 0 },
    { "2TiB", -EINVAL, 0 },
};

START_TEST(test_units_parse_size_table)
{
    uint64_t v = 1;
    int rc = units_parse_size(sizes[_i].in, &v);

    ck_assert_msg(rc == sizes[_i].rc, "'%s': rc %d, want %d", sizes[_i].in, rc, sizes[_i].rc);
    if (rc == 0)
        ck_assert_msg(v == sizes[_i].bytes, "'%s': %llu", sizes[_i].in, (unsigned long long)v);
}
END_TEST

START_TEST(test_units_null_is_invalid)
{
    int64_t ms;
    uint64_t b;

    ck_assert_int_eq(units_parse_duration(NULL, &ms), -EINVAL);
    ck_assert_int_eq(units_parse_size(NULL, &b), -EINVAL);
}
END_TEST

static const struct {
    int64_t     ms;
    const char *out;
} render_durations[] = {
    { 0, "0" }, { 1, "1ms" }, { 200, "200ms" }, { 1000, "1s" }, { 1500, "1500ms" },
    { 60000, "1m" }, { 90000, "90s" }, { 3600000, "1h" }, { 86400000, "1d" },
    { 604800000, "7d" }, { 90000000, "25h" },
};

START_TEST(test_units_render_duration_table)
{
    char buf[32];
    int64_t back;

    units_render_duration(render_durations[_i].ms, buf, sizeof(buf));
    ck_assert_str_eq(buf, render_durations[_i].out);
    ck_assert_int_eq(units_parse_duration(buf, &back), 0);
    ck_assert(back == render_durations[_i].ms);
}
END_TEST

static const struct {
    uint64_t    bytes;
    const char *out;
} render_sizes[] = {
    { 0, "0" }, { 1, "1" }, { 1000, "1000" }, { 1024, "1KiB" }, { 1536, "1536" },
    { 2u << 20, "2MiB" }, { 2ull << 30, "2GiB" }, { 3ull << 40, "3072GiB" },
};

START_TEST(test_units_render_size_table)
{
    char buf[32];
    uint64_t back;

    units_render_size(render_sizes[_i].bytes, buf, sizeof(buf));
    ck_assert_str_eq(buf, render_sizes[_i].out);
    ck_assert_int_eq(units_parse_size(buf, &back), 0);
    ck_assert(back == render_sizes[_i].bytes);
}
END_TEST

static const struct {
    double           v;
    enum units_epoch unit;
    int              rc;
    int64_t          ms;
} epochs[] = {
    { 1714564800, UNITS_EPOCH_AUTO, 0, 1714564800000 },
    { 1714564800.5, UNITS_EPOCH_AUTO, 0, 1714564800500 },
    { 1714564800123.0, UNITS_EPOCH_AUTO, 0, 1714564800123 },
    { 1714564800123456.0, UNITS_EPOCH_AUTO, 0, 1714564800123 },
    { 1714564800123456768.0, UNITS_EPOCH_AUTO, 0, 1714564800123 },
    { 0, UNITS_EPOCH_AUTO, 0, 0 },
    { 99999999999.0, UNITS_EPOCH_AUTO, 0, 99999999999000 },
    { 100000000000.0, UNITS_EPOCH_AUTO, 0, 100000000000 },
    { 1714564800, UNITS_EPOCH_MS, 0, 1714564800 },
    { 1714564800, UNITS_EPOCH_S, 0, 1714564800000 },
    { 1714564800123456.0, UNITS_EPOCH_US, 0, 1714564800123 },
    { 1714564800123456768.0, UNITS_EPOCH_NS, 0, 1714564800123 },
    { -1, UNITS_EPOCH_AUTO, -ERANGE, 0 },
    { 1e300, UNITS_EPOCH_S, -ERANGE, 0 },
    { 1e300, UNITS_EPOCH_AUTO, -ERANGE, 0 },
};

START_TEST(test_units_epoch_to_ms_table)
{
    int64_t ms = -1;
    int rc = units_epoch_to_ms(epochs[_i].v, epochs[_i].unit, &ms);

    ck_assert_msg(rc == epochs[_i].rc, "row %d: rc %d", _i, rc);
    if (rc == 0)
        ck_assert_msg(ms == epochs[_i].ms, "row %d: %lld want %lld", _i, (long long)ms,
                      (long long)epochs[_i].ms);
}
END_TEST

START_TEST(test_units_epoch_rejects_non_finite)
{
    int64_t ms;

    ck_assert_int_eq(units_epoch_to_ms(NAN, UNITS_EPOCH_AUTO, &ms), -ERANGE);
    ck_assert_int_eq(units_epoch_to_ms(INFINITY, UNITS_EPOCH_MS, &ms), -ERANGE);
}
END_TEST

static const struct {
    const char *in;
    int         rc;
    int64_t     ms;
} rfc3339[] = {
    { "1970-01-01T00:00:00Z", 0, 0 },
    { "2024-05-01T12:00:00Z", 0, 1714564800000 },
    { "2024-05-01T12:00:00.123Z", 0, 1714564800123 },
    { "2024-05-01T12:00:00.1Z", 0, 1714564800100 },
    { "2024-05-01T12:00:00.123456789Z", 0, 1714564800123 },
    { "2024-05-01T14:00:00+02:00", 0, 1714564800000 },
    { "2024-05-01T07:30:00-04:30", 0, 1714564800000 },
    { "2024-05-01t12:00:00z", 0, 1714564800000 },
    { "2024-05-01 12:00:00Z", 0, 1714564800000 },
    { "2024-02-29T00:00:00Z", 0, 1709164800000 },
    { "2000-02-29T00:00:00Z", 0, 951782400000 },
    { "1969-12-31T23:59:59Z", 0, -1000 },
    { "2016-12-31T23:59:60Z", 0, 1483228800000 },
    { "2023-02-29T00:00:00Z", -EINVAL, 0 },
    { "1900-02-29T00:00:00Z", -EINVAL, 0 },
    { "2024-13-01T00:00:00Z", -EINVAL, 0 },
    { "2024-00-01T00:00:00Z", -EINVAL, 0 },
    { "2024-04-31T00:00:00Z", -EINVAL, 0 },
    { "2024-05-01T24:00:00Z", -EINVAL, 0 },
    { "2024-05-01T12:60:00Z", -EINVAL, 0 },
    { "2024-05-01T12:00:61Z", -EINVAL, 0 },
    { "2024-05-01T12:00:00", -EINVAL, 0 },
    { "2024-05-01T12:00:00.Z", -EINVAL, 0 },
    { "2024-05-01T12:00:00+0200", -EINVAL, 0 },
    { "2024-05-01T12:00:00+24:00", -EINVAL, 0 },
    { "2024-05-01", -EINVAL, 0 },
    { "2024-5-01T12:00:00Z", -EINVAL, 0 },
    { "2024-05-01T12:00:00Zjunk", -EINVAL, 0 },
    { "", -EINVAL, 0 },
    { "1714564800", -EINVAL, 0 },
};

START_TEST(test_units_parse_rfc3339_table)
{
    int64_t ms = 42;
    int rc = units_parse_rfc3339(rfc3339[_i].in, strlen(rfc3339[_i].in), &ms);

    ck_assert_msg(rc == rfc3339[_i].rc, "'%s': rc %d", rfc3339[_i].in, rc);
    if (rc == 0)
        ck_assert_msg(ms == rfc3339[_i].ms, "'%s': %lld want %lld", rfc3339[_i].in,
                      (long long)ms, (long long)rfc3339[_i].ms);
}
END_TEST

START_TEST(test_units_rfc3339_reads_only_len_bytes)
{
    const char *s = "2024-05-01T12:00:00Z\"}garbage";
    int64_t ms;

    ck_assert_int_eq(units_parse_rfc3339(s, 20, &ms), 0);
    ck_assert(ms == 1714564800000);
    ck_assert_int_eq(units_parse_rfc3339(s, 19, &ms), -EINVAL);
}
END_TEST

static Suite *
units_suite(void)
{
    Suite *s = suite_create("units");
    TCase *tc = tcase_create("core");

    tcase_add_loop_test(tc, test_units_parse_duration_table, 0, (int)N(durations));
    tcase_add_loop_test(tc, test_units_parse_size_table, 0, (int)N(sizes));
    tcase_add_test(tc, test_units_null_is_invalid);
    tcase_add_loop_test(tc, test_units_render_duration_table, 0, (int)N(render_durations));
    tcase_add_loop_test(tc, test_units_render_size_table, 0, (int)N(render_sizes));
    tcase_add_loop_test(tc, test_units_epoch_to_ms_table, 0, (int)N(epochs));
    tcase_add_test(tc, test_units_epoch_rejects_non_finite);
    tcase_add_loop_test(tc, test_units_parse_rfc3339_table, 0, (int)N(rfc3339));
    tcase_add_test(tc, test_units_rfc3339_reads_only_len_bytes);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(units_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
