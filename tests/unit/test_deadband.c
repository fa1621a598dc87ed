/* test_deadband.c - the band's edges, the bounded map, the state that rides in the
 * spool's transactions, and the mapper's verdicts. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/config.h"
#include "sluice/deadband.h"
#include "sluice/err.h"
#include "sluice/mapper.h"
#include "sluice/spool.h"

struct band_case {
    double last, v, abs, pct;
    enum deadband_verdict expect;
};

static const struct band_case band_cases[] = {
    /* abs only: exactly at the band is inside, past it is out, both directions */
    { 20.0, 20.5, 0.5, 0, DEADBAND_INSIDE },
    { 20.0, 19.5, 0.5, 0, DEADBAND_INSIDE },
    { 20.0, 20.5000001, 0.5, 0, DEADBAND_PAST },
    { 20.0, 19.4999999, 0.5, 0, DEADBAND_PAST },
    { 20.0, 20.0, 0.5, 0, DEADBAND_INSIDE },
    /* abs 0: any change goes, a repeat does not */
    { 20.0, 20.0, 0, 0, DEADBAND_INSIDE },
    { 20.0, 20.001, 0, 0, DEADBAND_PAST },
    /* pct of |last|: 2% of 50 is 1 */
    { 50.0, 51.0, 0, 2, DEADBAND_INSIDE },
    { 50.0, 51.01, 0, 2, DEADBAND_PAST },
    { -50.0, -48.99, 0, 2, DEADBAND_PAST },
    { -50.0, -49.5, 0, 2, DEADBAND_INSIDE },
    /* pct around zero is no band at all ... */
    { 0.0, 0.0001, 0, 2, DEADBAND_PAST },
    /* ... which abs fixes: the band is the larger of the two */
    { 0.0, 0.0001, 0.5, 2, DEADBAND_INSIDE },
    { 100.0, 101.5, 0.5, 2, DEADBAND_INSIDE },   /* pct (2) wins over abs (0.5) */
    { 100.0, 102.5, 0.5, 2, DEADBAND_PAST },
    { 10.0, 10.4, 0.5, 2, DEADBAND_INSIDE },     /* abs (0.5) wins over pct (0.2) */
    { 10.0, 10.6, 0.5, 2, DEADBAND_PAST },
};

START_TEST(test_deadband_band_edges)
{
    const struct band_case *c = &band_cases[_i];
    struct deadband *db;
    double last = -1;

    ck_assert_int_eq(deadband_create(&db, 0), 0);
    ck_assert_int_eq(deadband_check(db, "deadband/r", "k", 1, c->v, c->abs, c->pct, NULL),
                     DEADBAND_FIRST);
    ck_assert_int_eq(deadband_remember(db, "deadband/r", "k", 1, c->last), 0);
    ck_assert_msg(deadband_check(db, "deadband/r", "k", 1, c->v, c->abs, c->pct, &last) ==
                  c->expect, "last %g v %g abs %g pct %g", c->last, c->v, c->abs, c->pct);
    ck_assert(last == c->last);
    deadband_destroy(db);
}
END_TEST

/* Keys are (route, key) pairs: the same key under another route, a key that is a
 * prefix of another, and the empty key are all distinct. */
START_TEST(test_deadband_keys_are_per_route)
{
    struct deadband *db;

    ck_assert_int_eq(deadband_create(&db, 0), 0);
    ck_assert_int_eq(deadband_remember(db, "deadband/a", "dev-1", 5, 1.0), 0);
    ck_assert_int_eq(deadband_check(db, "deadband/b", "dev-1", 5, 1.0, 1, 0, NULL),
                     DEADBAND_FIRST);
    ck_assert_int_eq(deadband_check(db, "deadband/a", "dev-", 4, 1.0, 1, 0, NULL),
                     DEADBAND_FIRST);
    ck_assert_int_eq(deadband_check(db, "deadband/a", NULL, 0, 1.0, 1, 0, NULL),
                     DEADBAND_FIRST);
    ck_assert_int_eq(deadband_remember(db, "deadband/a", NULL, 0, 7.0), 0);
    ck_assert_int_eq(deadband_check(db, "deadband/a", "", 0, 7.5, 1, 0, NULL),
                     DEADBAND_INSIDE);
    ck_assert_int_eq(deadband_check(db, "deadband/a", "dev-1", 5, 1.5, 1, 0, NULL),
                     DEADBAND_INSIDE);
    ck_assert_int_eq(deadband_remember(db, "deadband/a", "dev-1", 5, 3.0), 0);
    ck_assert_uint_eq(deadband_size(db), 2);
    ck_assert_int_eq(deadband_check(db, "deadband/a", "dev-1", 5, 1.5, 1, 0, NULL),
                     DEADBAND_PAST);
    deadband_destroy(db);
}
END_TEST

/* At the bound the least recently used key goes (a check counts as a use). */
START_TEST(test_deadband_lru_bound)
{
    struct deadband *db;
    char key[16];

    ck_assert_int_eq(deadband_create(&db, 3), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(deadband_remember(db, "deadband/r", key, 2, i), 0);
    }
    /* k0 is used again; k1 is now the least recently used */
    ck_assert_int_eq(deadband_check(db, "deadband/r", "k0", 2, 0, 1, 0, NULL),
                     DEADBAND_INSIDE);
    ck_assert_int_eq(deadband_remember(db, "deadband/r", "k3", 2, 3), 0);
    ck_assert_uint_eq(deadband_size(db), 3);
    ck_assert_uint_eq(deadband_evictions(db), 1);
    ck_assert_int_eq(deadband_check(db, "deadband/r", "k1", 2, 1, 1, 0, NULL), DEADBAND_FIRST);
    ck_assert_int_eq(deadband_check(db, "deadband/r", "k0", 2, 0, 1, 0, NULL), DEADBAND_INSIDE);
    ck_assert_int_eq(deadband_check(db, "deadband/r", "k2", 2, 2, 1, 0, NULL), DEADBAND_INSIDE);
    ck_assert_int_eq(deadband_check(db, "deadband/r", "k3", 2, 3, 1, 0, NULL), DEADBAND_INSIDE);
    /* many more: the map stays at its bound and still finds what it keeps */
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "m%d", i);
        ck_assert_int_eq(deadband_remember(db, "deadband/r", key, strlen(key), i), 0);
    }
    ck_assert_uint_eq(deadband_size(db), 3);
    ck_assert_int_eq(deadband_check(db, "deadband/r", "m999", 4, 999, 0, 0, NULL),
                     DEADBAND_INSIDE);
    deadband_clear(db);
    ck_assert_uint_eq(deadband_size(db), 0);
    deadband_destroy(db);
    deadband_destroy(NULL);
}
END_TEST

START_TEST(test_deadband_encoding)
{
    static const double vals[] = { 0.0, -0.0, 1.5, -273.15, 1e300, 123456789.125 };
    unsigned char b[DEADBAND_VALUE_LEN];
    double v;

    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        deadband_encode(vals[i], b);
        ck_assert(deadband_decode(b, sizeof(b), &v));
        ck_assert(v == vals[i]);
    }
    ck_assert(!deadband_decode(b, 7, &v));
    deadband_encode(NAN, b);
    ck_assert(!deadband_decode(b, sizeof(b), &v));
}
END_TEST

/* ---- state in the spool ------------------------------------------------------- */

static char dir[256], spool_path[300];

static void
spool_setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/sluice-test-deadband-%d", (int)getpid());
    snprintf(spool_path, sizeof(spool_path), "%s/spool.db", dir);
    (void)!system("rm -rf /tmp/sluice-test-deadband-*");
}

static void
spool_teardown(void)
{
    char cmd[320];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    (void)!system(cmd);
}

static struct record
rec_of(const char *key)
{
    struct record r = { 0 };

    r.topic = "t";
    r.topic_len = 1;
    r.key = key;
    r.key_len = strlen(key);
    r.value = "{}";
    r.value_len = 2;
    r.mqtt_topic = "m";
    r.mqtt_topic_len = 1;
    r.lane = "default";
    return r;
}

struct seen_rows {
    int    n;
    double v[8];
    char   key[8][16];
};

static int
collect(const char *route, const void *key, size_t key_len, const void *value,
        size_t value_len, void *arg)
{
    struct seen_rows *s = arg;

    ck_assert_str_eq(route, "deadband/r");
    ck_assert_int_lt(s->n, 8);
    ck_assert(deadband_decode(value, value_len, &s->v[s->n]));
    memcpy(s->key[s->n], key, key_len);
    s->key[s->n][key_len] = '\0';
    s->n++;
    return 0;
}

static void
put_of(struct spool_state_put *p, const char *key, unsigned char *b, double v)
{
    deadband_encode(v, b);
    *p = (struct spool_state_put){ "deadband/r", key, strlen(key), b, DEADBAND_VALUE_LEN };
}

START_TEST(test_deadband_state_rides_with_the_append)
{
    struct spool_conf conf = { .path = spool_path };
    struct spool_state_put put;
    struct seen_rows rows = { 0 };
    unsigned char b[DEADBAND_VALUE_LEN];
    struct spool *sp;
    struct record r;
    struct err e = { 0 };

    /* no file yet: no state, no error */
    ck_assert_int_eq(spool_state_read(spool_path, "deadband/", collect, &rows, &e), 0);
    ck_assert_int_eq(rows.n, 0);

    ck_assert_msg(spool_open(&sp, &conf, &e) == 0, "%s", e.msg);
    /* committed with the record (QoS 1 path), then replaced */
    r = rec_of("d1");
    put_of(&put, "d1", b, 1.5);
    ck_assert_int_eq(spool_append_with_state(sp, &r, true, &put, 1, &e), 0);
    ck_assert_uint_gt(r.seq, 0);
    r = rec_of("d1");
    put_of(&put, "d1", b, 2.5);
    ck_assert_int_eq(spool_append_with_state(sp, &r, true, &put, 1, &e), 0);
    /* a QoS 0 batch: invisible to readers until committed */
    r = rec_of("d2");
    ck_assert_int_eq(spool_append(sp, &r, false, &e), 0);
    r = rec_of("d2");
    put_of(&put, "d2", b, 9.0);
    ck_assert_int_eq(spool_append_with_state(sp, &r, false, &put, 1, &e), 0);
    ck_assert_uint_eq(spool_pending(sp), 2);
    ck_assert_int_eq(spool_state_read(spool_path, "deadband/", collect, &rows, &e), 0);
    ck_assert_int_eq(rows.n, 1);
    ck_assert_str_eq(rows.key[0], "d1");
    ck_assert(rows.v[0] == 2.5);
    ck_assert_int_eq(spool_commit(sp, &e), 0);
    memset(&rows, 0, sizeof(rows));
    ck_assert_int_eq(spool_state_read(spool_path, "deadband/", collect, &rows, &e), 0);
    ck_assert_int_eq(rows.n, 2);
    /* another prefix sees nothing */
    memset(&rows, 0, sizeof(rows));
    ck_assert_int_eq(spool_state_read(spool_path, "agg/", collect, &rows, &e), 0);
    ck_assert_int_eq(rows.n, 0);

#ifdef SLUICE_FAULT_SEAMS
    /* a failed commit takes the state with the record */
    spool_fault_fail_commit(sp, 1);
    r = rec_of("d1");
    put_of(&put, "d1", b, 100.0);
    ck_assert_int_lt(spool_append_with_state(sp, &r, true, &put, 1, &e), 0);
    ck_assert_uint_eq(r.seq, 0);
    ck_assert_uint_eq(spool_pending(sp), 0);
    memset(&rows, 0, sizeof(rows));
    ck_assert_int_eq(spool_state_read(spool_path, "deadband/", collect, &rows, &e), 0);
    ck_assert_int_eq(rows.n, 2);
    for (int i = 0; i < rows.n; i++)
        ck_assert(rows.v[i] != 100.0);
#endif
    spool_close(sp);

    /* and the map loads it back */
    {
        struct deadband *db;
        ck_assert_int_eq(deadband_create(&db, 0), 0);
        ck_assert_int_eq(deadband_load(db, spool_path, &e), 0);
        ck_assert_uint_eq(deadband_size(db), 2);
        ck_assert_int_eq(deadband_check(db, "deadband/r", "d1", 2, 2.5, 0.1, 0, NULL),
                         DEADBAND_INSIDE);
        ck_assert_int_eq(deadband_check(db, "deadband/r", "d2", 2, 9.2, 0.1, 0, NULL),
                         DEADBAND_PAST);
        deadband_destroy(db);
    }
}
END_TEST

/* ---- the mapper's verdicts ---------------------------------------------------- */

START_TEST(test_deadband_mapper_verdicts)
{
    char text[1024];
    struct config_diags d = { 0 };
    struct config *cfg;
    struct mapper *mp;
    struct mapper_msg msg = { 0 };
    struct record rec;
    const struct spool_state_put *puts;
    static const struct { const char *payload; int rc; enum mapper_deadband v; } steps[] = {
        { "{\"v\":10}", MAPPER_OK, MAPPER_DEADBAND_FIRST },
        { "{\"v\":10.5}", MAPPER_SUPPRESSED, MAPPER_DEADBAND_INSIDE },   /* at the band */
        { "{\"v\":\"hot\"}", MAPPER_OK, MAPPER_DEADBAND_NOT_NUMERIC },
        { "{}", MAPPER_OK, MAPPER_DEADBAND_NOT_NUMERIC },
        { "{\"v\":9.4}", MAPPER_OK, MAPPER_DEADBAND_PAST },
        { "{\"v\":9.0}", MAPPER_SUPPRESSED, MAPPER_DEADBAND_INSIDE },    /* against 9.4 */
    };

    snprintf(text, sizeof(text),
             "spool: { path: %s }\n"
             "routes:\n"
             "  - name: r\n"
             "    match: s/{device}\n"
             "    format: json\n"
             "    topic: t\n"
             "    key: \"{device}\"\n"
             "    deadband: { field: $.v, abs: 0.5 }\n", spool_path);
    ck_assert_int_eq(config_load_string(&cfg, "db.yaml", text, strlen(text), &d), 0);
    ck_assert_int_eq(mapper_create(&mp), 0);
    msg.topic = "s/d1";
    msg.topic_len = 4;
    msg.qos = 1;
    msg.arrival_ms = 1700000000000;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        msg.payload = steps[i].payload;
        msg.payload_len = strlen(steps[i].payload);
        ck_assert_int_eq(mapper_map(mp, cfg, &msg, &rec, NULL), steps[i].rc);
        ck_assert_int_eq(mapper_deadband(mp)->verdict, steps[i].v);
        ck_assert_uint_eq(mapper_state_puts(mp, &puts),
                          steps[i].v == MAPPER_DEADBAND_FIRST ||
                          steps[i].v == MAPPER_DEADBAND_PAST);
        mapper_state_committed(mp);   /* as ingest does after the append */
    }
    /* a reset forgets memory; with no spool file the next value is a first again */
    mapper_state_reset(mp);
    msg.payload = "{\"v\":9.0}";
    msg.payload_len = strlen(msg.payload);
    ck_assert_int_eq(mapper_map(mp, cfg, &msg, &rec, NULL), MAPPER_OK);
    ck_assert_int_eq(mapper_deadband(mp)->verdict, MAPPER_DEADBAND_FIRST);
    mapper_destroy(mp);
    config_destroy(cfg);
}
END_TEST

static Suite *
deadband_suite(void)
{
    Suite *s = suite_create("deadband");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, spool_setup, spool_teardown);
    tcase_add_loop_test(tc, test_deadband_band_edges, 0,
                        (int)(sizeof(band_cases) / sizeof(band_cases[0])));
    tcase_add_test(tc, test_deadband_keys_are_per_route);
    tcase_add_test(tc, test_deadband_lru_bound);
    tcase_add_test(tc, test_deadband_encoding);
    tcase_add_test(tc, test_deadband_state_rides_with_the_append);
    tcase_add_test(tc, test_deadband_mapper_verdicts);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(deadband_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
