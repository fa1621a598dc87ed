/* test_mapper.c - one message through routes, templates and codecs into a record. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/err.h"
#include "sluice/mapper.h"
#include "sluice/record.h"

static const char cfg_text[] =
    "instance: t1\n"
    "spool: { path: /tmp/sluice-test-mapper/spool.db }\n"
    "lanes:\n"
    "  urgent: { priority: 0 }\n"
    "  bulk: { priority: 9 }\n"
    "routes:\n"
    "  - name: telemetry\n"
    "    match: factory/{site}/{line}/{device}/telemetry\n"
    "    format: json\n"
    "    topic: telemetry.{site}\n"
    "    key: \"{device}\"\n"
    "    timestamp: $.ts\n"
    "    lane: bulk\n"
    "    headers: { line: \"{line}\", fw: \"{$.meta.fw}\" }\n"
    "  - name: alarms\n"
    "    match: factory/{site}/{line}/{device}/alarm\n"
    "    topic: alarms\n"
    "    key: \"{site}/{device}\"\n"
    "    lane: urgent\n"
    "  - name: by-field\n"
    "    match: gw/#\n"
    "    format: json\n"
    "    topic: gw.{$.kind}\n"
    "    key: $.id\n"
    "  - name: catch-all\n"
    "    match: factory/#\n"
    "    topic: factory.other\n"
    "  - name: filtered\n"
    "    match: edge/{line}/{device}\n"
    "    format: json\n"
    "    topic: edge\n"
    "    key: \"{device}\"\n"
    "    where: '$.quality == \"good\" and {line} != \"test\"'\n";

static struct config *cfg;
static struct mapper *mp;

static void
setup(void)
{
    struct config_diags d = { 0 };
    int rc = config_load_string(&cfg, "mapper.yaml", cfg_text, strlen(cfg_text), &d);

    config_diags_print(&d, stderr);
    config_diags_fini(&d);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(mapper_create(&mp), 0);
}

static void
teardown(void)
{
    mapper_destroy(mp);
    config_destroy(cfg);
}

static int
map(const char *topic, const char *payload, struct record *rec, struct err *why)
{
    struct mapper_msg msg = { 0 };

    msg.topic = topic;
    msg.topic_len = strlen(topic);
    msg.payload = payload;
    msg.payload_len = strlen(payload);
    msg.qos = 1;
    msg.arrival_ms = 1700000000000;
    return mapper_map(mp, cfg, &msg, rec, why);
}

static void
assert_header(const struct record *rec, const char *name, const char *value)
{
    struct record_header h;

    ck_assert_msg(record_hdrs_find(rec->hdrs, rec->hdrs_len, name, &h), "no header %s", name);
    ck_assert_uint_eq(h.value_len, strlen(value));
    ck_assert_mem_eq(h.value, value, h.value_len);
}

START_TEST(test_mapper_json_route_fills_every_field)
{
    struct record rec;
    const char *p = "{\"ts\": 1714564800123, \"v\": 1, \"meta\": {\"fw\": \"2.1\"}}";

    ck_assert_int_eq(map("factory/berlin/l1/press-7/telemetry", p, &rec, NULL), MAPPER_OK);
    ck_assert_uint_eq(rec.route, 0);
    ck_assert_str_eq(rec.lane, "bulk");
    ck_assert_uint_eq(rec.topic_len, strlen("telemetry.berlin"));
    ck_assert_mem_eq(rec.topic, "telemetry.berlin", rec.topic_len);
    ck_assert_uint_eq(rec.key_len, 7);
    ck_assert_mem_eq(rec.key, "press-7", 7);
    ck_assert_int_eq(rec.event_ms, 1714564800123);
    ck_assert_int_eq(rec.ingest_ms, 1700000000000);
    ck_assert_ptr_eq(rec.value, p);
    ck_assert_uint_eq(rec.value_len, strlen(p));
    ck_assert(!rec.dead_letter);
    assert_header(&rec, "line", "l1");
    assert_header(&rec, "fw", "2.1");
}
END_TEST

START_TEST(test_mapper_event_time_units_and_fallback)
{
    struct record rec;

    ck_assert_int_eq(map("factory/b/l1/d/telemetry", "{\"ts\":1714564800,\"meta\":{\"fw\":1}}",
                         &rec, NULL), MAPPER_OK);
    ck_assert_int_eq(rec.event_ms, 1714564800000);
    ck_assert_int_eq(map("factory/b/l1/d/telemetry",
                         "{\"ts\":\"2024-05-01T12:00:00.5Z\",\"meta\":{\"fw\":1}}", &rec, NULL),
                     MAPPER_OK);
    ck_assert_int_eq(rec.event_ms, 1714564800500);
    /* Missing time: arrival time, marked. */
    ck_assert_int_eq(map("factory/b/l1/d/telemetry", "{\"meta\":{\"fw\":1}}", &rec, NULL),
                     MAPPER_OK);
    ck_assert_int_eq(rec.event_ms, 1700000000000);
    assert_header(&rec, "event.time.source", "arrival");
}
END_TEST

START_TEST(test_mapper_first_route_in_file_order_wins)
{
    struct record rec;

    ck_assert_int_eq(map("factory/b/l2/valve-3/alarm", "OVERPRESSURE", &rec, NULL), MAPPER_OK);
    ck_assert_uint_eq(rec.route, 1);
    ck_assert_str_eq(rec.lane, "urgent");
    ck_assert_mem_eq(rec.key, "b/valve-3", rec.key_len);
    ck_assert_int_eq(rec.event_ms, rec.ingest_ms);
    /* Not telemetry or alarm: the catch-all, in the default lane. */
    ck_assert_int_eq(map("factory/b/l2/valve-3/status", "x", &rec, NULL), MAPPER_OK);
    ck_assert_uint_eq(rec.route, 3);
    ck_assert_ptr_null(rec.key);
}
END_TEST

START_TEST(test_mapper_no_route)
{
    struct record rec;

    ck_assert_int_eq(map("elsewhere/x", "{}", &rec, NULL), MAPPER_NO_ROUTE);
    ck_assert_int_eq(map("$SYS/broker/uptime", "1", &rec, NULL), MAPPER_NO_ROUTE);
}
END_TEST

START_TEST(test_mapper_bad_json_is_a_dead_letter)
{
    struct record rec;
    struct err why = { 0 };
    const char *p = "{\"ts\": 17";

    ck_assert_int_eq(map("factory/b/l1/d/telemetry", p, &rec, &why), MAPPER_DEAD_LETTER);
    ck_assert(rec.dead_letter);
    ck_assert_mem_eq(rec.topic, "sluice.dead-letter", rec.topic_len);
    ck_assert_ptr_eq(rec.value, p);
    assert_header(&rec, "error.stage", "decode");
    ck_assert_ptr_nonnull(strstr(why.msg, "json"));
}
END_TEST

START_TEST(test_mapper_route_errors_are_dead_letters)
{
    struct record rec;
    struct err why = { 0 };

    /* A key from a JSON field that is missing. */
    ck_assert_int_eq(map("gw/1", "{\"kind\":\"temp\"}", &rec, &why), MAPPER_DEAD_LETTER);
    assert_header(&rec, "error.stage", "route");
    ck_assert_ptr_nonnull(strstr(why.msg, "key"));
    /* A topic that renders to an illegal Kafka name. */
    ck_assert_int_eq(map("gw/1", "{\"kind\":\"a b\",\"id\":\"x\"}", &rec, &why),
                     MAPPER_DEAD_LETTER);
    ck_assert_ptr_nonnull(strstr(why.msg, "legal Kafka topic"));
    /* A key that renders empty. */
    ck_assert_int_eq(map("gw/1", "{\"kind\":\"t\",\"id\":\"\"}", &rec, &why), MAPPER_DEAD_LETTER);
    ck_assert_ptr_nonnull(strstr(why.msg, "empty"));
    /* And the good case through the same route. */
    ck_assert_int_eq(map("gw/1", "{\"kind\":\"t\",\"id\":42}", &rec, &why), MAPPER_OK);
    ck_assert_mem_eq(rec.topic, "gw.t", rec.topic_len);
    ck_assert_mem_eq(rec.key, "42", rec.key_len);
}
END_TEST

/* where: false drops after decoding (a bad payload is still a dead letter), and
 * says which route did it. */
START_TEST(test_mapper_where_filters)
{
    struct record rec;
    struct err why = { 0 };

    ck_assert_int_eq(map("edge/l1/d1", "{\"quality\":\"good\"}", &rec, NULL), MAPPER_OK);
    ck_assert_int_eq((int)rec.key_len, 2);
    ck_assert_int_eq(map("edge/l1/d1", "{\"quality\":\"bad\"}", &rec, NULL), MAPPER_FILTERED);
    ck_assert_uint_eq(rec.route, 4);
    ck_assert_str_eq(rec.lane, "default");
    ck_assert_int_eq(map("edge/test/d1", "{\"quality\":\"good\"}", &rec, NULL),
                     MAPPER_FILTERED);
    ck_assert_int_eq(map("edge/l1/d1", "{}", &rec, NULL), MAPPER_FILTERED);
    ck_assert_int_eq(map("edge/l1/d1", "not json", &rec, &why), MAPPER_DEAD_LETTER);
}
END_TEST

START_TEST(test_mapper_user_properties_become_headers)
{
    struct record_header props[] = { { "site", 4, "b", 1 }, { "fw", 2, "3.2", 3 } };
    struct mapper_msg msg = { 0 };
    struct record rec;

    msg.topic = "factory/b/l1/d/alarm";
    msg.topic_len = strlen(msg.topic);
    msg.payload = "x";
    msg.payload_len = 1;
    msg.user_props = props;
    msg.nuser_props = 2;
    ck_assert_int_eq(mapper_map(mp, cfg, &msg, &rec, NULL), MAPPER_OK);
    assert_header(&rec, "mqtt.user.site", "b");
    assert_header(&rec, "mqtt.user.fw", "3.2");
}
END_TEST

static Suite *
mapper_suite(void)
{
    Suite *s = suite_create("mapper");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_mapper_json_route_fills_every_field);
    tcase_add_test(tc, test_mapper_event_time_units_and_fallback);
    tcase_add_test(tc, test_mapper_first_route_in_file_order_wins);
    tcase_add_test(tc, test_mapper_no_route);
    tcase_add_test(tc, test_mapper_bad_json_is_a_dead_letter);
    tcase_add_test(tc, test_mapper_route_errors_are_dead_letters);
    tcase_add_test(tc, test_mapper_user_properties_become_headers);
    tcase_add_test(tc, test_mapper_where_filters);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(mapper_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
