/* test_filter.c - the where: language, table-driven: evaluation over one capture set
 * and one document, and every compile error with its column. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/filter.h"
#include "sluice/route.h"

static const char *const names[] = { "site", "line", "device" };
static const struct capture caps[] = {
    { "berlin/xx", 6 },   /* slices of a topic: not NUL-terminated at len */
    { "l1", 2 },
    { "test", 4 },
};
static const char doc_text[] =
    "{\"quality\":\"good\",\"temp\":81.5,\"count\":3,\"on\":true,\"off\":false,"
    "\"n\":null,\"o\":{\"a\":1},\"arr\":[10,20],\"name\":\"b\\\"q\",\"dot.key\":7}";

struct eval_case {
    const char *text;
    bool        expect;
};

static const struct eval_case eval_cases[] = {
    /* strings, both quote styles, captures */
    { "$.quality == \"good\"", true },
    { "$.quality == 'good'", true },
    { "$.quality != \"good\"", false },
    { "$.quality == \"goo\"", false },
    { "$.quality > \"goo\"", true },        /* bytewise: a longer string with the prefix */
    { "$.quality < \"h\"", true },
    { "{line} == \"l1\"", true },
    { "{device} != \"test\"", false },
    { "{site} == \"berlin\"", true },       /* the capture's slice, not past its length */
    { "\"l1\" == {line}", true },
    { "{line} == {line}", true },
    { "$.name == 'b\"q'", true },
    { "$.name == \"b\\\"q\"", true },
    /* numbers: integers and reals compare as numbers */
    { "$.temp > 80", true },
    { "$.temp > 81.5", false },
    { "$.temp >= 81.5", true },
    { "$.temp <= 81.5", true },
    { "$.temp < 81.5", false },
    { "$.temp == 81.5", true },
    { "$.count == 3", true },
    { "$.count == 3.0", true },
    { "$.count != 4", true },
    { "$.count > -1e3", true },
    { "$.arr[1] == 20", true },
    { "$['dot.key'] == 7", true },
    { "80 < $.temp", true },
    { "$.temp > $.count", true },
    /* booleans */
    { "$.on == true", true },
    { "$.on != false", true },
    { "$.off == true", false },
    { "true", true },
    { "false", false },
    /* missing, null, objects, arrays and type mismatches: every comparison is false */
    { "$.nope == 1", false },
    { "$.nope != 1", false },
    { "$.nope < 1", false },
    { "$.n == 1", false },
    { "$.n != \"x\"", false },
    { "$.o != 1", false },
    { "$.arr != 1", false },
    { "$.quality == 1", false },
    { "$.quality != 1", false },
    { "$.temp == \"81.5\"", false },
    { "$.on > $.off", false },              /* booleans found at run time have no order */
    { "not ($.nope == 1)", true },
    /* and, or, not, precedence, parentheses */
    { "$.quality == \"good\" and $.temp > 80", true },
    { "$.quality == \"good\" and $.temp > 90", false },
    { "$.quality == \"bad\" or $.temp > 80", true },
    { "$.quality == \"bad\" or $.temp > 90", false },
    { "not $.temp > 90", true },
    { "not not $.temp > 90", false },
    { "false or true and false", false },      /* and binds tighter than or */
    { "(false or true) and true", true },
    { "true or false and false", true },
    { "not (true and false) and (false or ($.count == 3))", true },
    { "{device} != \"test\" and $.temp > 80", false },
};

struct error_case {
    const char *text;
    size_t      col;
    const char *msg;     /* the sentence after "column N: " */
    bool        json;
};

static const struct error_case error_cases[] = {
    { "", 1, "the condition ends where a comparison was expected", true },
    { "   ", 4, "the condition ends where a comparison was expected", true },
    { "$.a", 4, "expected a comparison (== != < <= > >=) after '$.a'", true },
    { "$.a = 1", 5, "'=' is not an operator: use == to compare", true },
    { "$.a ! 1", 5, "'!' is not an operator: use != or not", true },
    { "$.a == ", 8, "the condition ends where a value was expected", true },
    { "$.a == \"x", 8, "a string needs its closing \"", true },
    { "$.a == 'x\\n'", 10, "only \\\" \\' and \\\\ are escapes in a string", true },
    { "$.a == 1x", 8, "'1x' is not a number", true },
    { "$.a == good", 8, "unknown word 'good' (a JSON field is $.name, a capture {name}, "
                        "text is quoted)", true },
    { "$.a == 1 and", 13, "the condition ends where a comparison was expected", true },
    { "$.a == 1 $.b == 2", 10, "expected and, or or the end, got '$.b'", true },
    { "($.a == 1", 1, "'(' without ')'", true },
    { "$.a == 1)", 9, "expected and, or or the end, got ')'", true },
    { "and $.a == 1", 1, "expected a comparison, got 'and'", true },
    { "$.a == == 1", 8, "expected a value ($.field, {capture}, \"text\", a number, true or "
                        "false), got '=='", true },
    { "$a == 1", 1, "json path \"$a\": column 2: expected '.name', '[index]' or ['name']",
      true },
    { "$.a..b == 1", 1, "json path \"$.a..b\": column 4: expected a field name after '.'"
                        " (use ['...'] for other characters)", true },
    { "{line", 1, "'{' without '}' (a capture is {name})", true },
    { "{lane} == \"x\"", 1, "unknown capture {lane} (captures: site, line, device)", true },
    { "$.a == 1", 1, "format raw has no JSON document to read '$.a' from (use format: json)",
      false },
    { "{line} == \"l1\" and $.x > 1", 20,
      "format raw has no JSON document to read '$.x' from (use format: json)", false },
    /* type errors, found at load */
    { "{line} == 1", 8, "cannot compare text with a number (a capture is text: quote the "
                        "value)", true },
    { "{line} > true", 8, "cannot compare text with a boolean (a capture is text: quote the "
                          "value)", true },
    { "\"a\" == 1", 5, "cannot compare text with a number", true },
    { "1 != false", 3, "cannot compare a number with a boolean", true },
    { "$.on < true", 6, "booleans have no order: use == or !=", true },
    { "true >= false", 6, "booleans have no order: use == or !=", true },
    { "$.a == 1 and ({device} != \"x\" or {line} < 5)", 41,
      "cannot compare text with a number (a capture is text: quote the value)", true },
    { "#", 1, "unexpected '#'", true },
    { "  $.count==3and$.on==true", 12, "'3and$.on' is not a number", true },
};

static json_t *
doc(void)
{
    json_error_t je;
    json_t *d = json_loads(doc_text, 0, &je);

    ck_assert_msg(d != NULL, "test document: %s", je.text);
    return d;
}

START_TEST(test_filter_eval_table)
{
    const struct eval_case *c = &eval_cases[_i];
    struct filter *f = NULL;
    struct err e = { 0 };
    json_t *d = doc();
    int rc;

    rc = filter_compile(&f, c->text, names, 3, true, &e, NULL);
    ck_assert_msg(rc == 0, "%s: %s", c->text, e.msg);
    ck_assert_str_eq(filter_text(f), c->text);
    ck_assert_msg(filter_eval(f, caps, d) == c->expect, "%s: expected %s", c->text,
                  c->expect ? "true" : "false");
    filter_destroy(f);
    json_decref(d);
}
END_TEST

START_TEST(test_filter_compile_errors)
{
    const struct error_case *c = &error_cases[_i];
    struct filter *f = NULL;
    struct err e = { 0 };
    char want[ERR_MSG_MAX];
    size_t col = 0;
    int rc;

    rc = filter_compile(&f, c->text, names, 3, c->json, &e, &col);
    ck_assert_msg(rc == -EINVAL, "%s: rc %d", c->text, rc);
    ck_assert_ptr_null(f);
    snprintf(want, sizeof(want), "column %zu: %s", c->col, c->msg);
    ck_assert_str_eq(e.msg, want);
    ck_assert_uint_eq(col, c->col);
}
END_TEST

/* Without a document (a raw payload that failed nothing, or a non-JSON codec), JSON
 * comparisons are false and captures still work. */
START_TEST(test_filter_no_document_is_missing)
{
    struct filter *f = NULL;

    ck_assert_int_eq(filter_compile(&f, "$.a == 1 or {line} == \"l1\"", names, 3, true,
                                    NULL, NULL), 0);
    ck_assert(filter_eval(f, caps, NULL));
    filter_destroy(f);
    ck_assert_int_eq(filter_compile(&f, "$.a != 1", names, 3, true, NULL, NULL), 0);
    ck_assert(!filter_eval(f, caps, NULL));
    filter_destroy(f);
}
END_TEST

/* Limits: deep nesting and too many parts are located errors, not stack overflows. */
START_TEST(test_filter_limits)
{
    char text[FILTER_MAX_TEXT + 2];
    struct filter *f = NULL;
    struct err e = { 0 };
    size_t n = 0;

    for (int i = 0; i < 40; i++)
        text[n++] = '(';
    strcpy(text + n, "true");
    ck_assert_int_eq(filter_compile(&f, text, names, 3, true, &e, NULL), -EINVAL);
    ck_assert_str_eq(e.msg, "column 33: nested deeper than 32 levels");

    n = 0;
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%strue", i ? " or " : "");
    ck_assert_int_eq(filter_compile(&f, text, names, 3, true, &e, NULL), -EINVAL);
    ck_assert_str_eq(e.msg, "column 510: the condition has more than 128 parts");

    memset(text, ' ', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    ck_assert_int_eq(filter_compile(&f, text, names, 3, true, &e, NULL), -EINVAL);
    ck_assert_str_eq(e.msg, "column 1: a condition is at most 4096 bytes");
    filter_destroy(NULL);
}
END_TEST

static Suite *
filter_suite(void)
{
    Suite *s = suite_create("filter");
    TCase *tc = tcase_create("core");

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
    tcase_add_loop_test(tc, test_filter_eval_table, 0, N(eval_cases));
    tcase_add_loop_test(tc, test_filter_compile_errors, 0, N(error_cases));
    tcase_add_test(tc, test_filter_no_document_is_missing);
    tcase_add_test(tc, test_filter_limits);
#undef N
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(filter_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
