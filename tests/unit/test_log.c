/* test_log.c - levels, the JSON format, and the rate limiter's counts. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/log.h"

static char path[] = "/tmp/sluice-test-log-XXXXXX";
static int saved_stderr = -1;

/* Sends stderr to a temp file for the duration of one test. */
static void
capture_start(void)
{
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

/* Returns the captured text (owned, free it) and restores stderr. */
static char *
capture_end(void)
{
    FILE *f;
    char *text = calloc(1, 65536);
    size_t n;

    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    f = fopen(path, "r");
    n = fread(text, 1, 65535, f);
    text[n] = '\0';
    fclose(f);
    unlink(path);
    memcpy(path + strlen(path) - 6, "XXXXXX", 6);
    return text;
}

START_TEST(test_log_levels_filter)
{
    char *out;

    log_set_format(LOG_FORMAT_TEXT);
    log_set_level(LOG_WARN);
    capture_start();
    log_info("t", "hidden info");
    log_debug("t", "hidden debug");
    log_warn("t", "shown warn %d", 7);
    log_error("t", "shown error");
    out = capture_end();
    ck_assert_ptr_null(strstr(out, "hidden"));
    ck_assert_ptr_nonnull(strstr(out, " warn t: shown warn 7\n"));
    ck_assert_ptr_nonnull(strstr(out, " error t: shown error\n"));
    free(out);
    log_set_level(LOG_INFO);
}
END_TEST

START_TEST(test_log_json_lines_parse)
{
    json_error_t jerr;
    json_t *doc;
    char *out, *nl;

    log_set_format(LOG_FORMAT_JSON);
    log_set_level(LOG_INFO);
    capture_start();
    log_info("ingest", "quote \" backslash \\ newline \n tab \t done");
    out = capture_end();
    log_set_format(LOG_FORMAT_TEXT);
    nl = strchr(out, '\n');
    ck_assert_ptr_nonnull(nl);
    ck_assert_ptr_eq(nl + 1, out + strlen(out));   /* exactly one line */
    doc = json_loads(out, 0, &jerr);
    ck_assert_msg(doc != NULL, "not JSON: %s (%s)", out, jerr.text);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "level")), "info");
    ck_assert_str_eq(json_string_value(json_object_get(doc, "component")), "ingest");
    ck_assert_str_eq(json_string_value(json_object_get(doc, "msg")),
                     "quote \" backslash \\ newline \n tab \t done");
    ck_assert_ptr_nonnull(json_object_get(doc, "ts"));
    json_decref(doc);
    free(out);
}
END_TEST

START_TEST(test_log_limited_counts_what_it_swallows)
{
    struct log_limiter lim = { 0 };
    char *out;

    log_set_format(LOG_FORMAT_TEXT);
    capture_start();
    for (int i = 0; i < 1000; i++)
        log_limited(&lim, 3600 * 1000, LOG_ERROR, "spool", "append failed");
    /* Pretend the interval passed: the next line carries the count. */
    lim.last_ms -= 3600 * 1000;
    log_limited(&lim, 3600 * 1000, LOG_ERROR, "spool", "append failed");
    out = capture_end();
    ck_assert_ptr_nonnull(strstr(out, "spool: append failed\n"));
    ck_assert_ptr_nonnull(strstr(out, "spool: append failed (repeated 999 times)\n"));
    /* Two lines for 1001 calls. */
    ck_assert_int_eq((int)(strchr(strchr(out, '\n') + 1, '\n') - out + 1), (int)strlen(out));
    free(out);
}
END_TEST

START_TEST(test_log_level_parse)
{
    enum log_level l;

    ck_assert_int_eq(log_level_parse("debug", &l), 0);
    ck_assert_int_eq(l, LOG_DEBUG);
    ck_assert_int_eq(log_level_parse("WARN", &l), 0);
    ck_assert_int_eq(l, LOG_WARN);
    ck_assert_int_lt(log_level_parse("verbose", &l), 0);
}
END_TEST

static Suite *
log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_log_levels_filter);
    tcase_add_test(tc, test_log_json_lines_parse);
    tcase_add_test(tc, test_log_limited_counts_what_it_swallows);
    tcase_add_test(tc, test_log_level_parse);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(log_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
