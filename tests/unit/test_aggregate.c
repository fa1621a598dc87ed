/* test_aggregate.c - window boundaries, lateness, every function, the route_state
 * encoding and the closed window's value. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>
#include <unistd.h>

#include "sluice/aggregate.h"
#include "sluice/buf.h"
#include "sluice/config.h"
#include "sluice/err.h"
#include "sluice/mapper.h"
#include "sluice/spool.h"

START_TEST(test_aggregate_window_boundaries)
{
    ck_assert_int_eq(aggregate_window_start(0, 60000), 0);
    ck_assert_int_eq(aggregate_window_start(59999, 60000), 0);
    ck_assert_int_eq(aggregate_window_start(60000, 60000), 60000);   /* end is the next */
    ck_assert_int_eq(aggregate_window_start(60001, 60000), 60000);
    ck_assert_int_eq(aggregate_window_start(-1, 60000), -60000);     /* floors */
    ck_assert_int_eq(aggregate_window_start(-60000, 60000), -60000);
    ck_assert_int_eq(aggregate_window_start(1700000012345LL, 60000), 1699999980000LL);
}
END_TEST

START_TEST(test_aggregate_window_closes_at_end_plus_lateness)
{
    /* [60000, 120000), no lateness: closed once the watermark reaches the end */
    ck_assert(!aggregate_window_closed(60000, 60000, 0, 119999));
    ck_assert(aggregate_window_closed(60000, 60000, 0, 120000));
    /* 5 s of lateness keeps it open 5 s longer */
    ck_assert(!aggregate_window_closed(60000, 60000, 5000, 120000));
    ck_assert(!aggregate_window_closed(60000, 60000, 5000, 124999));
    ck_assert(aggregate_window_closed(60000, 60000, 5000, 125000));
}
END_TEST

START_TEST(test_aggregate_fn_names)
{
    static const char *const names[] = { "count", "sum", "avg", "min", "max", "first",
                                         "last" };
    enum aggregate_fn fn;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        ck_assert(aggregate_fn_parse(names[i], &fn));
        ck_assert_int_eq(fn, (int)i);
        ck_assert_str_eq(aggregate_fn_name(fn), names[i]);
    }
    ck_assert(!aggregate_fn_parse("median", &fn));
    ck_assert(!aggregate_fn_parse("", &fn));
}
END_TEST

START_TEST(test_aggregate_every_function)
{
    struct aggregate_acc a;
    double v;

    ck_assert_int_eq(aggregate_acc_init(&a, 0, 2, "t", "k", 1), 0);
    /* arrival order differs from event-time order: first/last follow event time */
    static const struct { double v; int64_t ts; } in[] = {
        { 20.0, 300 }, { 10.0, 100 }, { 40.0, 400 }, { 30.0, 200 },
    };
    for (size_t i = 0; i < 4; i++) {
        aggregate_acc_record(&a, 1000 + (int64_t)i);
        aggregate_acc_add(&a, 0, in[i].v, in[i].ts);
    }
    aggregate_acc_record(&a, 2000);          /* a record without the field */
    ck_assert(aggregate_cell_value(&a, 0, AGGREGATE_COUNT, false, &v) && v == 5);
    ck_assert(aggregate_cell_value(&a, 0, AGGREGATE_COUNT, true, &v) && v == 4);
    ck_assert(aggregate_cell_value(&a, 0, AGGREGATE_SUM, true, &v) && v == 100);
    ck_assert(aggregate_cell_value(&a, 0, AGGREGATE_AVG, true, &v) && v == 25);
    ck_assert(aggregate_cell_value(&a, 0, AGGREGATE_MIN, true, &v) && v == 10);
    ck_assert(aggregate_cell_value(&a, 0, AGGREGATE_MAX, true, &v) && v == 40);
    ck_assert(aggregate_cell_value(&a, 0, AGGREGATE_FIRST, true, &v) && v == 10);
    ck_assert(aggregate_cell_value(&a, 0, AGGREGATE_LAST, true, &v) && v == 40);
    /* a cell that saw no number has no value but count 0 */
    ck_assert(!aggregate_cell_value(&a, 1, AGGREGATE_AVG, true, &v));
    ck_assert(!aggregate_cell_value(&a, 1, AGGREGATE_MIN, true, &v));
    ck_assert(aggregate_cell_value(&a, 1, AGGREGATE_COUNT, true, &v) && v == 0);
    /* not finite values are ignored */
    aggregate_acc_add(&a, 0, NAN, 50);
    aggregate_acc_add(&a, 0, INFINITY, 50);
    ck_assert(aggregate_cell_value(&a, 0, AGGREGATE_FIRST, true, &v) && v == 10);
    ck_assert(aggregate_cell_value(&a, 0, AGGREGATE_COUNT, true, &v) && v == 4);
    aggregate_acc_fini(&a);
}
END_TEST

START_TEST(test_aggregate_last_ties_go_to_the_later_arrival)
{
    struct aggregate_acc a;
    double v;

    ck_assert_int_eq(aggregate_acc_init(&a, 0, 1, "t", "", 0), 0);
    aggregate_acc_add(&a, 0, 1.0, 100);
    aggregate_acc_add(&a, 0, 2.0, 100);
    ck_assert(aggregate_cell_value(&a, 0, AGGREGATE_FIRST, true, &v) && v == 1.0);
    ck_assert(aggregate_cell_value(&a, 0, AGGREGATE_LAST, true, &v) && v == 2.0);
    aggregate_acc_fini(&a);
}
END_TEST

START_TEST(test_aggregate_encoding_round_trips)
{
    struct aggregate_acc a, b;
    struct buf enc;
    double v;

    buf_init(&enc);
    ck_assert_int_eq(aggregate_acc_init(&a, -60000, 3, "telemetry.agg", "dev\0x", 5), 0);
    aggregate_acc_record(&a, 777);
    aggregate_acc_add(&a, 0, 1.25, -1);
    aggregate_acc_add(&a, 2, -3.5, -5);
    ck_assert_int_eq(aggregate_acc_encode(&a, &enc), 0);
    ck_assert(aggregate_acc_decode(&b, enc.data, enc.len, "dev\0x", 5, 3));
    ck_assert_int_eq(b.start, -60000);
    ck_assert_int_eq(b.records, 1);
    ck_assert_int_eq(b.touched_ms, 777);
    ck_assert_str_eq(b.topic, "telemetry.agg");
    ck_assert_uint_eq(b.key_len, 5);
    ck_assert(memcmp(b.key, "dev\0x", 5) == 0);
    ck_assert(memcmp(a.cell, b.cell, sizeof(a.cell[0]) * 3) == 0);
    ck_assert(aggregate_cell_value(&b, 2, AGGREGATE_LAST, true, &v) && v == -3.5);
    aggregate_acc_fini(&b);
    /* a different field count, a truncation, a trailing byte, another version: refused */
    ck_assert(!aggregate_acc_decode(&b, enc.data, enc.len, "", 0, 2));
    for (size_t n = 0; n < enc.len; n++)
        ck_assert(!aggregate_acc_decode(&b, enc.data, n, "", 0, 3));
    ck_assert_int_eq(buf_append(&enc, "", 1), 0);
    ck_assert(!aggregate_acc_decode(&b, enc.data, enc.len, "", 0, 3));
    enc.data[0] = 99;
    ck_assert(!aggregate_acc_decode(&b, enc.data, enc.len - 1, "", 0, 3));
    aggregate_acc_fini(&a);
    buf_fini(&enc);
}
END_TEST

START_TEST(test_aggregate_render_value)
{
    static const char *const names[] = { "n", "t_avg", "t_min", "t_max", "no\"ne" };
    static const enum aggregate_fn fns[] = { AGGREGATE_COUNT, AGGREGATE_AVG, AGGREGATE_MIN,
                                             AGGREGATE_MAX, AGGREGATE_SUM };
    static const bool has[] = { false, true, true, true, true };
    struct aggregate_acc a;
    struct buf out;

    buf_init(&out);
    ck_assert_int_eq(aggregate_acc_init(&a, 60000, 5, "t", "k", 1), 0);
    for (int i = 0; i < 3; i++) {
        aggregate_acc_record(&a, 0);
        aggregate_acc_add(&a, 1, 20.1 + i, 60000 + i);
        aggregate_acc_add(&a, 2, 20.1 + i, 60000 + i);
        aggregate_acc_add(&a, 3, 20.1 + i, 60000 + i);
    }
    ck_assert_int_eq(aggregate_render(&a, 60000, names, fns, has, &out), 0);
    ck_assert_int_eq(buf_append_str(&out, "", 0), 0);
    ck_assert_str_eq(out.data, "{\"window_start\":60000,\"window_end\":120000,\"n\":3,"
                               "\"t_avg\":21.1,\"t_min\":20.1,\"t_max\":22.1,"
                               "\"no\\\"ne\":null}");
    aggregate_acc_fini(&a);
    buf_fini(&out);
}
END_TEST


/* ---- through the mapper, with the state in a real spool ------------------------ */

static char dir[256], spool_path[300];

static void
spool_setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/sluice-test-aggregate-%d", (int)getpid());
    snprintf(spool_path, sizeof(spool_path), "%s/spool.db", dir);
    (void)!system("rm -rf /tmp/sluice-test-aggregate-*");
}

static void
spool_teardown(void)
{
    char cmd[320];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    (void)!system(cmd);
}

struct rig {
    struct config *cfg;
    struct mapper *mp;
    struct spool  *sp;
    struct buf     got;     /* values of the closed windows, one per line */
    int            windows;
};

static void
rig_open(struct rig *g, const char *extra)
{
    char text[2048];
    struct config_diags d = { 0 };
    struct spool_conf conf = { .path = spool_path };
    struct err e = { 0 };

    memset(g, 0, sizeof(*g));
    snprintf(text, sizeof(text),
             "spool: { path: %s }\n"
             "routes:\n"
             "  - name: r\n"
             "    match: s/{device}\n"
             "    format: json\n"
             "    topic: agg.{device}\n"
             "    key: \"{device}\"\n"
             "    timestamp: $.ts\n"
             "    aggregate:\n"
             "      window: 10s\n"
             "%s"
             "      fields:\n"
             "        n: { fn: count }\n"
             "        s: { fn: sum, field: $.v }\n"
             "        lo: { fn: min, field: $.v }\n", spool_path, extra);
    ck_assert_msg(config_load_string(&g->cfg, "agg.yaml", text, strlen(text), &d) == 0,
                  "%s", d.n ? d.lines[0] : "?");
    ck_assert_int_eq(mapper_create(&g->mp), 0);
    ck_assert_msg(spool_open(&g->sp, &conf, &e) == 0, "%s", e.msg);
    buf_init(&g->got);
}

static void
rig_close(struct rig *g)
{
    spool_close(g->sp);
    mapper_destroy(g->mp);
    config_destroy(g->cfg);
    buf_fini(&g->got);
}

static void
rig_take(struct rig *g, const struct mapper_aggregate_info *ag)
{
    struct err e = { 0 };

    ck_assert_msg(spool_append_all(g->sp, ag->recs, ag->nrecs, ag->puts, ag->nputs, &e) == 0,
                  "%s", e.msg);
    mapper_state_committed(g->mp);
    for (size_t i = 0; i < ag->nrecs; i++) {
        ck_assert_int_eq(ag->recs[i].event_ms, ag->recs[i].event_ms / 10000 * 10000);
        ck_assert_int_eq(buf_printf(&g->got, "%.*s %.*s\n", (int)ag->recs[i].key_len,
                                    ag->recs[i].key, (int)ag->recs[i].value_len,
                                    (const char *)ag->recs[i].value), 0);
        g->windows++;
    }
}

/* Maps one message; returns the mapper's result, spooling what it produced. */
static int
rig_send(struct rig *g, const char *dev, int64_t ts, double v, int64_t wall)
{
    char topic[64], payload[128];
    struct mapper_msg msg = { 0 };
    struct record rec;
    int rc;

    snprintf(topic, sizeof(topic), "s/%s", dev);
    snprintf(payload, sizeof(payload), "{\"ts\":%lld,\"v\":%g}", (long long)ts, v);
    msg.topic = topic;
    msg.topic_len = strlen(topic);
    msg.payload = payload;
    msg.payload_len = strlen(payload);
    msg.qos = 1;
    msg.arrival_ms = wall;
    rc = mapper_map(g->mp, g->cfg, &msg, &rec, NULL);
    if (rc == MAPPER_AGGREGATED)
        rig_take(g, mapper_aggregate(g->mp));
    return rc;
}

static const char *
rig_got(struct rig *g)
{
    if (buf_append_str(&g->got, "", 0) < 0)
        return "";
    return g->got.data;
}

START_TEST(test_aggregate_watermark_closes_windows)
{
    struct rig g;
    const int64_t T = 1700000000000LL;   /* a multiple of 10 s */

    rig_open(&g, "");
    ck_assert_int_eq(rig_send(&g, "a", T + 0, 1, 1), MAPPER_AGGREGATED);
    ck_assert_int_eq(rig_send(&g, "b", T + 100, 5, 1), MAPPER_AGGREGATED);
    ck_assert_int_eq(rig_send(&g, "a", T + 9999, 3, 1), MAPPER_AGGREGATED);
    ck_assert_int_eq(mapper_aggregate(g.mp)->window_start, T);
    ck_assert_int_eq(mapper_aggregate(g.mp)->window_end, T + 10000);
    ck_assert_int_eq(g.windows, 0);
    /* the window end belongs to the next window, and closes both keys' first window */
    ck_assert_int_eq(rig_send(&g, "a", T + 10000, 7, 1), MAPPER_AGGREGATED);
    ck_assert_int_eq(g.windows, 2);
    ck_assert_msg(strstr(rig_got(&g), "a {\"window_start\":1700000000000,\"window_end\":"
                                       "1700000010000,\"n\":2,\"s\":4,\"lo\":1}") != NULL,
                  "%s", rig_got(&g));
    ck_assert(strstr(rig_got(&g), "b {\"window_start\":1700000000000,\"window_end\":"
                                  "1700000010000,\"n\":1,\"s\":5,\"lo\":5}") != NULL);
    /* a record for a closed window is late: dropped, nothing changes */
    ck_assert_int_eq(rig_send(&g, "b", T + 5000, 100, 1), MAPPER_LATE);
    ck_assert_int_eq(g.windows, 2);
    rig_close(&g);
}
END_TEST

START_TEST(test_aggregate_lateness_keeps_the_window_open)
{
    struct rig g;
    const int64_t T = 1700000000000LL;

    rig_open(&g, "      lateness: 2s\n      late_topic: agg.late\n");
    ck_assert_int_eq(rig_send(&g, "a", T + 1, 1, 1), MAPPER_AGGREGATED);
    ck_assert_int_eq(rig_send(&g, "a", T + 11999, 2, 1), MAPPER_AGGREGATED);
    ck_assert_int_eq(g.windows, 0);                 /* end + lateness not reached yet */
    ck_assert_int_eq(rig_send(&g, "a", T + 500, 3, 1), MAPPER_AGGREGATED);   /* in time */
    ck_assert_int_eq(rig_send(&g, "b", T + 12000, 4, 1), MAPPER_AGGREGATED);
    ck_assert_int_eq(g.windows, 1);
    ck_assert_msg(strstr(rig_got(&g), "\"n\":2,\"s\":4,\"lo\":1}") != NULL, "%s",
                  rig_got(&g));
    {   /* late, with late_topic: the record itself, readdressed */
        struct mapper_msg msg = { 0 };
        struct record rec;
        const char *p = "{\"ts\":1700000000002,\"v\":9}";
        msg.topic = "s/a";
        msg.topic_len = 3;
        msg.payload = p;
        msg.payload_len = strlen(p);
        msg.qos = 1;
        ck_assert_int_eq(mapper_map(g.mp, g.cfg, &msg, &rec, NULL), MAPPER_OK);
        ck_assert(mapper_aggregate(g.mp)->late);
        ck_assert_int_eq((int)rec.topic_len, 8);
        ck_assert(memcmp(rec.topic, "agg.late", 8) == 0);
        ck_assert(rec.value_len == strlen(p) && memcmp(rec.value, p, strlen(p)) == 0);
    }
    rig_close(&g);
}
END_TEST

START_TEST(test_aggregate_state_survives_a_restart)
{
    struct rig g;
    const int64_t T = 1700000000000LL;

    rig_open(&g, "");
    ck_assert_int_eq(rig_send(&g, "a", T + 1, 1, 1), MAPPER_AGGREGATED);
    ck_assert_int_eq(rig_send(&g, "a", T + 2, 2, 1), MAPPER_AGGREGATED);
    rig_close(&g);
    /* a new process: the accumulator and the watermark come from the spool */
    rig_open(&g, "");
    ck_assert_int_eq(rig_send(&g, "a", T + 3, 3, 1), MAPPER_AGGREGATED);
    ck_assert_int_eq(rig_send(&g, "a", T + 10000, 0, 1), MAPPER_AGGREGATED);
    ck_assert_int_eq(g.windows, 1);
    ck_assert_msg(strstr(rig_got(&g), "\"n\":3,\"s\":6,\"lo\":1}") != NULL, "%s",
                  rig_got(&g));
    /* a reset (a failed batch) reloads the same */
    mapper_state_reset(g.mp);
    ck_assert_int_eq(rig_send(&g, "a", T + 5, 3, 1), MAPPER_LATE);
    rig_close(&g);
}
END_TEST

START_TEST(test_aggregate_quiet_keys_close_by_wall_time)
{
    const struct mapper_aggregate_info *ag;
    struct rig g;
    const int64_t T = 1700000000000LL;

    rig_open(&g, "");
    ck_assert_int_eq(rig_send(&g, "a", T + 1, 1, 1000), MAPPER_AGGREGATED);
    ck_assert_int_eq(rig_send(&g, "b", T + 2, 2, 5000), MAPPER_AGGREGATED);
    ck_assert_int_eq(mapper_aggregate_expire(g.mp, g.cfg, 10999, &ag), 0);
    ck_assert_uint_eq(ag->nrecs, 0);
    ck_assert_int_eq(mapper_aggregate_expire(g.mp, g.cfg, 11000, &ag), 0);
    ck_assert_uint_eq(ag->nrecs, 1);                /* a: a window of wall time */
    rig_take(&g, ag);
    ck_assert_int_eq(mapper_aggregate_expire(g.mp, g.cfg, 15000, &ag), 0);
    rig_take(&g, ag);
    ck_assert_int_eq(g.windows, 2);
    /* the closed window stays closed, across a restart too */
    ck_assert_int_eq(rig_send(&g, "a", T + 3, 1, 20000), MAPPER_LATE);
    rig_close(&g);
    rig_open(&g, "");
    ck_assert_int_eq(rig_send(&g, "b", T + 3, 1, 20000), MAPPER_LATE);
    rig_close(&g);
}
END_TEST


START_TEST(test_aggregate_many_keys_close_together)
{
    struct rig g;
    const int64_t T = 1700000000000LL;
    char dev[16];

    rig_open(&g, "");
    for (int round = 0; round < 2; round++)
        for (int k = 0; k < 1500; k++) {   /* past the first hash size: it grows */
            snprintf(dev, sizeof(dev), "d%d", k);
            ck_assert_int_eq(rig_send(&g, dev, T + round * 10 + k % 7, k, 1),
                             MAPPER_AGGREGATED);
        }
    ck_assert_int_eq(g.windows, 0);
    ck_assert_int_eq(rig_send(&g, "x", T + 10000, 0, 1), MAPPER_AGGREGATED);
    ck_assert_int_eq(g.windows, 1500);
    ck_assert(strstr(rig_got(&g), "d1499 {\"window_start\":1700000000000,\"window_end\":"
                                  "1700000010000,\"n\":2,\"s\":2998,\"lo\":1499}") != NULL);
    /* each key again, in the next window: no key is left in a closed state wrongly */
    for (int k = 0; k < 1500; k += 100) {
        snprintf(dev, sizeof(dev), "d%d", k);
        ck_assert_int_eq(rig_send(&g, dev, T + 10001, 1, 1), MAPPER_AGGREGATED);
        ck_assert_int_eq(rig_send(&g, dev, T + 9999, 1, 1), MAPPER_LATE);
    }
    ck_assert_int_eq(rig_send(&g, "x", T + 20000, 0, 1), MAPPER_AGGREGATED);
    ck_assert_int_eq(g.windows, 1500 + 15 + 1);
    rig_close(&g);
}
END_TEST

START_TEST(test_aggregate_config_errors)
{
    static const struct { const char *agg, *want; } cases[] = {
        { "aggregate: { window: 0, fields: { n: { fn: count } } }", "above 0" },
        { "aggregate: { window: soon, fields: { n: { fn: count } } }", "aggregate.window" },
        { "aggregate: { fields: { n: { fn: count } } }", "missing required key 'window'" },
        { "aggregate: { window: 1m, fields: { n: { fn: median } } }",
          "fields.n.fn: unknown function 'median'" },
        { "aggregate: { window: 1m, fields: { t: { fn: avg } } }",
          "fields.t: missing required key 'field'" },
        { "aggregate: { window: 1m }", "missing required key 'fields'" },
        { "aggregate: { window: 1m, late: keep, fields: { n: { fn: count } } }",
          "aggregate.late: expected drop" },
        { "aggregate: { window: 1m, fields: { n: { fn: count } } }\n"
          "    deadband: { field: $.v, abs: 1 }", "deadband: or aggregate:, not both" },
    };
    char text[1024];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config_diags d = { 0 };
        struct config *cfg = NULL;
        bool found = false;
        snprintf(text, sizeof(text),
                 "routes:\n  - name: r\n    match: s/{d}\n    format: json\n    topic: t\n"
                 "    %s\n", cases[i].agg);
        ck_assert_int_eq(config_load_string(&cfg, "bad.yaml", text, strlen(text), &d),
                         -EINVAL);
        for (size_t j = 0; j < d.n; j++)
            found = found || (strstr(d.lines[j], cases[i].want) != NULL &&
                              strncmp(d.lines[j], "bad.yaml:6:", 11) == 0);
        ck_assert_msg(found, "case %zu: no located '%s' in %s", i, cases[i].want,
                      d.n ? d.lines[0] : "(none)");
        config_diags_fini(&d);
    }
    /* format raw has nothing to aggregate */
    {
        struct config_diags d = { 0 };
        struct config *cfg = NULL;
        const char *t = "routes:\n  - name: r\n    match: s/{d}\n    topic: t\n"
                        "    aggregate: { window: 1m, fields: { n: { fn: count } } }\n";
        ck_assert_int_eq(config_load_string(&cfg, "raw.yaml", t, strlen(t), &d), -EINVAL);
        ck_assert(d.n >= 1 && strstr(d.lines[0], "format raw") != NULL);
        config_diags_fini(&d);
    }
}
END_TEST

static Suite *
aggregate_suite(void)
{
    Suite *s = suite_create("aggregate");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_aggregate_window_boundaries);
    tcase_add_test(tc, test_aggregate_window_closes_at_end_plus_lateness);
    tcase_add_test(tc, test_aggregate_fn_names);
    tcase_add_test(tc, test_aggregate_every_function);
    tcase_add_test(tc, test_aggregate_last_ties_go_to_the_later_arrival);
    tcase_add_test(tc, test_aggregate_encoding_round_trips);
    tcase_add_test(tc, test_aggregate_render_value);
    suite_add_tcase(s, tc);
    tc = tcase_create("mapper");
    tcase_add_checked_fixture(tc, spool_setup, spool_teardown);
    tcase_add_test(tc, test_aggregate_watermark_closes_windows);
    tcase_add_test(tc, test_aggregate_lateness_keeps_the_window_open);
    tcase_add_test(tc, test_aggregate_state_survives_a_restart);
    tcase_add_test(tc, test_aggregate_quiet_keys_close_by_wall_time);
    tcase_add_test(tc, test_aggregate_many_keys_close_together);
    tcase_add_test(tc, test_aggregate_config_errors);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(aggregate_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
