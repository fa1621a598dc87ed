/* test_forward.c - forward_stats_txmsgs against real librdkafka statistics (a
 * producer on an in-process mock cluster, several partitions, records produced) and
 * against the shapes it must refuse. jansson's full parse is the reference. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "sluice/forward.h"

static char  *stats_doc;     /* the last statistics document, owned */
static size_t stats_len;

static int
on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    (void)opaque;
    free(stats_doc);
    stats_doc = malloc(len);
    ck_assert_ptr_nonnull(stats_doc);
    memcpy(stats_doc, json, len);
    stats_len = len;
    return 0;
}

static rd_kafka_t *
producer(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;
    static const char *const kv[][2] = {
        { "test.mock.num.brokers", "3" },
        { "statistics.interval.ms", "100" },
        { "enable.idempotence", "true" },
        { "linger.ms", "1" },
    };

    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        ck_assert_int_eq(rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof(errstr)),
                         RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    ck_assert_msg(rk != NULL, "rd_kafka_new: %s", errstr);
    return rk;
}

/* The mock cluster auto-creates topics with this many partitions. */
START_TEST(real_statistics)
{
    rd_kafka_t *rk = producer();
    uint64_t tx = 0;
    json_t *doc;
    char key[16];

    for (int i = 0; i < 500; i++) {
        const char *topic = i % 2 ? "a.b" : "txmsgs";   /* a topic named like the key */

        snprintf(key, sizeof(key), "dev-%d", i % 37);
        ck_assert_int_eq(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                           RD_KAFKA_V_KEY(key, strlen(key)),
                                           RD_KAFKA_V_VALUE("v", 1),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    ck_assert_int_eq(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    /* Statistics emitted after the flush count all 500. */
    for (int i = 0; i < 100 && tx < 500; i++) {
        free(stats_doc);
        stats_doc = NULL;
        while (stats_doc == NULL)
            rd_kafka_poll(rk, 100);
        ck_assert_int_eq(forward_stats_txmsgs(stats_doc, stats_len, &tx), 0);
    }
    ck_assert_uint_eq(tx, 500);
    /* The reference: the top level's field, from a full parse of the same document
     * (which holds per-broker and per-partition "txmsgs" too). */
    doc = json_loadb(stats_doc, stats_len, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    ck_assert_ptr_nonnull(json_object_get(json_object_get(doc, "topics"), "a.b"));
    ck_assert_uint_eq(tx, (uint64_t)json_integer_value(json_object_get(doc, "txmsgs")));
    ck_assert_ptr_nonnull(strstr(stats_doc, "\"partitions\""));
    json_decref(doc);
    free(stats_doc);
    stats_doc = NULL;
    rd_kafka_destroy(rk);
}
END_TEST

START_TEST(shapes)
{
    static const struct {
        const char *in;
        int         rc;
        uint64_t    v;
    } t[] = {
        { "{\"txmsgs\":12}", 0, 12 },
        { "{\"brokers\":{\"b\":{\"txmsgs\":3}},\"txmsgs\": 7, \"txmsg_bytes\":99}", 0, 7 },
        { "{\"txmsgs\":18446744073709551615}", 0, UINT64_MAX },
        { "{\"txmsgs\":18446744073709551616}", -1, 0 },
        { "{\"txmsgs\":-1}", -1, 0 },
        { "{\"txmsgs\":}", -1, 0 },
        { "{\"txmsgs\":", -1, 0 },
        { "{\"txmsg_bytes\":5}", -1, 0 },
        { "\"txmsgs\"", -1, 0 },
        { "", -1, 0 },
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        uint64_t v = 0;
        ck_assert_msg(forward_stats_txmsgs(t[i].in, strlen(t[i].in), &v) == t[i].rc,
                      "%s", t[i].in);
        if (t[i].rc == 0)
            ck_assert_msg(v == t[i].v, "%s: %llu", t[i].in, (unsigned long long)v);
    }
    ck_assert_int_eq(forward_stats_txmsgs(NULL, 0, &(uint64_t){ 0 }), -1);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("stats");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, real_statistics);
    tcase_add_test(tc, shapes);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
