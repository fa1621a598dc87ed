/* test_codec_sparkplug.c - Sparkplug B payloads (Tahu-made fixtures in
 * tests/data/sparkplug) to JSON, alias state across a restart, and damaged payloads
 * that must come back as -EBADMSG, never as a crash. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sparkplug_b.pb-c.h"
#include "sluice/clock.h"
#include "sluice/codec.h"
#include "sluice/config.h"
#include "sluice/err.h"
#include "sluice/metrics.h"
#include "sluice/sparkplug_state.h"

static const struct codec *spb;

static void
setup(void)
{
    spb = codec_find("sparkplug");
    ck_assert_ptr_nonnull(spb);
}

static unsigned char *
fixture(const char *name, size_t *len)
{
    const char *dir = getenv("SLUICE_TEST_DATA");
    char path[1024];
    unsigned char *p;
    FILE *f;
    long n;

    snprintf(path, sizeof(path), "%s/sparkplug/%s.bin", dir ? dir : "tests/data", name);
    f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* Decodes fixture name on topic with st; returns rc, the value in *json (owned). */
static int
decode(void *st, const char *topic, const char *name, char **json, const char **warning)
{
    struct codec_out out;
    struct err err = { 0 };
    size_t len;
    unsigned char *p = fixture(name, &len);
    int rc = spb->decode(st, topic, strlen(topic), p, len, &out, &err);

    *json = rc == 0 ? strndup(out.value, out.value_len) : NULL;
    if (warning != NULL)
        *warning = rc == 0 && out.nhdrs > 0 ? out.hdrs[0].value : NULL;
    if (rc == 0) {
        ck_assert_ptr_nonnull(out.doc);
        ck_assert_int_eq(out.nextra, 4);
    }
    spb->release(&out);
    free(p);
    return rc;
}

struct golden {
    const char *topic, *fixture, *json, *warning;
};

/* In order: each step sees the state the steps before it built. */
static const struct golden sequence[] = {
    { "spBv1.0/G1/NBIRTH/E1", "nbirth", NULL, NULL },
    { "spBv1.0/G1/NDATA/E1", "ndata",
      "{\"timestamp\":1700000001000,\"seq\":1,\"metrics\":["
      "{\"name\":\"int32\",\"alias\":4,\"type\":\"Int32\",\"value\":42},"
      "{\"name\":\"float\",\"alias\":10,\"type\":\"Float\",\"value\":1.5},"
      "{\"name\":\"string\",\"alias\":13,\"type\":\"String\",\"value\":\"changed\"}]}", NULL },
    { "spBv1.0/G1/NDATA/E1", "ndata_unknown_alias",
      "{\"timestamp\":1700000002500,\"seq\":2,\"metrics\":["
      "{\"alias\":999,\"type\":\"Int32\",\"value\":1}]}", "unknown-alias" },
    { "spBv1.0/G1/NDATA/E1", "ndata_gap",
      "{\"timestamp\":1700000002000,\"seq\":5,\"metrics\":["
      "{\"name\":\"int32\",\"alias\":4,\"type\":\"Int32\",\"value\":43}]}", "seq-gap" },
    { "spBv1.0/G1/DBIRTH/E1/D1", "dbirth",
      "{\"timestamp\":1700000000100,\"seq\":1,\"metrics\":["
      "{\"name\":\"Inputs/A\",\"alias\":100,\"type\":\"Boolean\",\"value\":false},"
      "{\"name\":\"Inputs/B\",\"alias\":101,\"type\":\"Int16\",\"value\":-3},"
      "{\"name\":\"Outputs/Temp\",\"alias\":102,\"type\":\"Float\",\"value\":20.25},"
      "{\"name\":\"Table\",\"alias\":103,\"type\":\"DataSet\",\"value\":{\"num_of_columns\":3,"
      "\"columns\":[\"id\",\"label\",\"ok\"],\"types\":[\"Int32\",\"String\",\"Boolean\"],"
      "\"rows\":[[1,\"one\",true],[2,\"two\",false]]}},"
      "{\"name\":\"Motor\",\"alias\":104,\"type\":\"Template\",\"value\":{\"version\":\"v1\","
      "\"template_ref\":\"MotorType\",\"is_definition\":false,\"metrics\":["
      "{\"name\":\"RPM\",\"type\":\"Int32\",\"value\":1500},"
      "{\"name\":\"Running\",\"type\":\"Boolean\",\"value\":true}],\"parameters\":["
      "{\"name\":\"Manufacturer\",\"type\":\"String\",\"value\":\"ACME\"}]}}]}",
      "seq-gap" /* 1 after the gap's 5 */ },
    { "spBv1.0/G1/DDATA/E1/D1", "ddata",
      "{\"timestamp\":1700000002000,\"seq\":2,\"metrics\":["
      "{\"name\":\"Inputs/A\",\"alias\":100,\"type\":\"Boolean\",\"value\":true},"
      "{\"name\":\"Outputs/Temp\",\"alias\":102,\"type\":\"Float\",\"value\":22.75}]}", NULL },
    { "spBv1.0/G1/DDATA/E1/D2", "ddata", NULL, "seq-gap,no-birth" },   /* seq 2 again */
    { "spBv1.0/G1/DDEATH/E1/D1", "ddeath",
      "{\"timestamp\":1700000008000,\"seq\":3,\"metrics\":[]}", NULL },
    { "spBv1.0/G1/DCMD/E1/D1", "dcmd",
      "{\"timestamp\":1700000003500,\"metrics\":["
      "{\"name\":\"Outputs/Temp\",\"type\":\"Float\",\"value\":30}]}", NULL },
    { "spBv1.0/G1/NCMD/E1", "ncmd_rebirth",
      "{\"timestamp\":1700000003000,\"metrics\":["
      "{\"name\":\"Node Control/Rebirth\",\"type\":\"Boolean\",\"value\":true}]}", NULL },
    { "spBv1.0/G1/NDEATH/E1", "ndeath",
      "{\"timestamp\":1700000009000,\"metrics\":["
      "{\"name\":\"bdSeq\",\"type\":\"UInt64\",\"value\":3}]}", NULL },
};

START_TEST(test_codec_sparkplug_message_types)
{
    struct sparkplug_state *st;
    struct err err = { 0 };
    uint64_t gaps0 = metrics_get(&metrics.sparkplug_seq_gaps);

    ck_assert_int_eq(sparkplug_state_open(&st, NULL, false, &err), 0);
    for (size_t i = 0; i < sizeof(sequence) / sizeof(sequence[0]); i++) {
        const struct golden *g = &sequence[i];
        const char *warning;
        char *json;
        ck_assert_int_eq(decode(st, g->topic, g->fixture, &json, &warning), 0);
        if (g->json != NULL)
            ck_assert_msg(strcmp(json, g->json) == 0, "%s:\n got %s\nwant %s", g->fixture,
                          json, g->json);
        if (g->warning == NULL)
            ck_assert_msg(warning == NULL, "%s: warning %s", g->fixture, warning);
        else
            ck_assert_msg(warning != NULL && strcmp(warning, g->warning) == 0,
                          "%s: warning %s, want %s", g->fixture, warning ? warning : "(none)",
                          g->warning);
        free(json);
    }
    ck_assert_uint_eq(metrics_get(&metrics.sparkplug_seq_gaps) - gaps0, 3);
    sparkplug_state_close(st);
}
END_TEST

/* Every datatype Tahu writes, each decoded to its JSON form. */
START_TEST(test_codec_sparkplug_every_datatype)
{
    static const char *const want[] = {
        "{\"name\":\"bdSeq\",\"alias\":0,\"type\":\"UInt64\",\"value\":3}",
        "{\"name\":\"int8\",\"alias\":2,\"type\":\"Int8\",\"value\":-8}",
        "{\"name\":\"int16\",\"alias\":3,\"type\":\"Int16\",\"value\":-16000}",
        "{\"name\":\"int32\",\"alias\":4,\"type\":\"Int32\",\"value\":-2000000000}",
        "{\"name\":\"int64\",\"alias\":5,\"type\":\"Int64\",\"value\":-5000000000}",
        "{\"name\":\"uint8\",\"alias\":6,\"type\":\"UInt8\",\"value\":200}",
        "{\"name\":\"uint16\",\"alias\":7,\"type\":\"UInt16\",\"value\":60000}",
        "{\"name\":\"uint32\",\"alias\":8,\"type\":\"UInt32\",\"value\":4000000000}",
        "{\"name\":\"uint64\",\"alias\":9,\"type\":\"UInt64\",\"value\":9000000000}",
        "{\"name\":\"float\",\"alias\":10,\"type\":\"Float\",\"value\":0.1}",
        "{\"name\":\"double\",\"alias\":11,\"type\":\"Double\",\"value\":2.718281828459045}",
        "{\"name\":\"boolean\",\"alias\":12,\"type\":\"Boolean\",\"value\":true}",
        "{\"name\":\"string\",\"alias\":13,\"type\":\"String\",\"value\":\"h\xc3\xa9llo \\\"w\\\"\"}",
        "{\"name\":\"datetime\",\"alias\":14,\"type\":\"DateTime\",\"value\":1699999999000}",
        "{\"name\":\"text\",\"alias\":15,\"type\":\"Text\",\"value\":\"line1\\nline2\"}",
        "{\"name\":\"uuid\",\"alias\":16,\"type\":\"UUID\",\"value\":\"123e4567-e89b-12d3-a456-426614174000\"}",
        "{\"name\":\"bytes\",\"alias\":17,\"type\":\"Bytes\",\"value\":\"AAEC+g==\"}",
        "{\"name\":\"file\",\"alias\":18,\"type\":\"File\",\"value\":\"YWJj\",\"metadata\":{\"size\":3,"
        "\"file_name\":\"a.txt\",\"file_type\":\"txt\",\"md5\":\"900150983cd24fb0d6963f7d28e17f72\"}}",
        "\"properties\":{\"engUnit\":{\"type\":\"String\",\"value\":\"C\"},\"engHigh\":{\"type\":"
        "\"Int32\",\"value\":100},\"quality\":{\"type\":\"Int32\",\"value\":null}}",
        "{\"name\":\"null_int\",\"alias\":20,\"type\":\"Int32\",\"value\":null,\"is_null\":true}",
        "{\"name\":\"historical\",\"alias\":21,\"timestamp\":1699999995000,\"type\":\"Int32\","
        "\"value\":7,\"is_historical\":true,\"is_transient\":true}",
        /* Sparkplug 3.0 arrays, and what cannot be read keeps its bytes. */
        "\"type\":\"Int8Array\",\"value\":[-1,2]",
        "\"type\":\"Int16Array\",\"value\":[-300,300]",
        "\"type\":\"Int32Array\",\"value\":[-70000,70000]",
        "\"type\":\"Int64Array\",\"value\":[-5000000000,5000000000]",
        "\"type\":\"UInt8Array\",\"value\":[1,255]",
        "\"type\":\"UInt16Array\",\"value\":[1,65535]",
        "\"type\":\"UInt32Array\",\"value\":[1,4294967295]",
        "\"type\":\"UInt64Array\",\"value\":[1,18446744073709551615]",
        "\"type\":\"FloatArray\",\"value\":[1.5,-0.25]",
        "\"type\":\"DoubleArray\",\"value\":[3.25,-1e+300]",
        "\"type\":\"BooleanArray\",\"value\":[true,false,true,true,false,false,false,false,true]",
        "\"type\":\"StringArray\",\"value\":[\"ab\",\"\xc3\xa9\",\"\"]",
        "\"type\":\"DateTimeArray\",\"value\":[1700000000000,1700000000001]",
        "{\"name\":\"future\",\"alias\":300,\"type\":\"Unknown(99)\",\"value\":\"AQID\"}",
        "{\"name\":\"bad_int32_array\",\"alias\":301,\"type\":\"Int32Array\",\"value\":\"AQID\"}",
    };
    char *a, *b, *all;

    ck_assert_int_eq(decode(NULL, "spBv1.0/G/NBIRTH/E", "nbirth", &a, NULL), 0);
    ck_assert_int_eq(decode(NULL, "spBv1.0/G/NBIRTH/E", "nbirth_arrays", &b, NULL), 0);
    ck_assert_int_ge(asprintf(&all, "%s\n%s", a, b), 0);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        ck_assert_msg(strstr(all, want[i]) != NULL, "missing %s", want[i]);
    free(a);
    free(b);
    free(all);
}
END_TEST

/* Codec hooks that record what the codec asks of ingest. */
struct fake_mqtt {
    int      npub;
    char     topic[128];
    unsigned char payload[256];
    size_t   len;
    int      nbarrier;
    sqlite3 *spool;     /* the "spool" connection whose batch before_write commits */
};

static int
fake_publish(void *arg, const char *topic, const void *payload, size_t len)
{
    struct fake_mqtt *f = arg;

    f->npub++;
    snprintf(f->topic, sizeof(f->topic), "%s", topic);
    ck_assert_uint_le(len, sizeof(f->payload));
    memcpy(f->payload, payload, len);
    f->len = len;
    return 0;
}

static void
fake_before_write(void *arg)
{
    struct fake_mqtt *f = arg;

    f->nbarrier++;
    if (f->spool != NULL && !sqlite3_get_autocommit(f->spool))
        ck_assert_int_eq(sqlite3_exec(f->spool, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
}

static void
configure(void *st, const struct codec_hooks *hooks, bool rebirth, bool read_only)
{
    struct config cfg;
    struct codec_env env = { NULL, read_only, &cfg, hooks };

    memset(&cfg, 0, sizeof(cfg));
    cfg.sparkplug.request_rebirth = rebirth;
    cfg.sparkplug.rebirth_interval_ms = 60000;
    spb->configure(st, &env);
}

static void
decode_ok(void *st, const char *topic, const char *fixture_name)
{
    char *json;

    ck_assert_int_eq(decode(st, topic, fixture_name, &json, NULL), 0);
    free(json);
}

/* DATA sluice cannot name asks the node for a rebirth: one NCMD per node per interval,
 * a Sparkplug payload with the one metric Node Control/Rebirth = true. */
START_TEST(test_codec_sparkplug_requests_rebirth)
{
    struct fake_mqtt f = { 0 };
    struct codec_hooks hooks = { &f, fake_publish, NULL };
    struct sparkplug_state *st;
    struct err err = { 0 };
    uint64_t sent0 = metrics_get(&metrics.sparkplug_rebirths);
    int64_t before = clock_wall_ms();
    Org__Eclipse__Tahu__Protobuf__Payload *pl;

    ck_assert_int_eq(sparkplug_state_open(&st, NULL, false, &err), 0);
    configure(st, &hooks, true, false);

    decode_ok(st, "spBv1.0/G/NDATA/E", "ndata");          /* no BIRTH known */
    ck_assert_int_eq(f.npub, 1);
    ck_assert_str_eq(f.topic, "spBv1.0/G/NCMD/E");
    pl = org__eclipse__tahu__protobuf__payload__unpack(NULL, f.len, f.payload);
    ck_assert_ptr_nonnull(pl);
    ck_assert(pl->has_timestamp && (int64_t)pl->timestamp >= before);
    ck_assert(!pl->has_seq);
    ck_assert_uint_eq(pl->n_metrics, 1);
    ck_assert_str_eq(pl->metrics[0]->name, "Node Control/Rebirth");
    ck_assert(pl->metrics[0]->has_datatype && pl->metrics[0]->datatype == 11);   /* Boolean */
    ck_assert_int_eq(pl->metrics[0]->value_case,
                     ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_BOOLEAN_VALUE);
    ck_assert(pl->metrics[0]->boolean_value);
    org__eclipse__tahu__protobuf__payload__free_unpacked(pl, NULL);
    ck_assert_uint_eq(metrics_get(&metrics.sparkplug_rebirths), sent0 + 1);

    /* Within the interval: counted and marked as before, but no second request. */
    decode_ok(st, "spBv1.0/G/NDATA/E", "ndata");
    decode_ok(st, "spBv1.0/G/DDATA/E/D", "ddata");
    ck_assert_int_eq(f.npub, 1);
    /* Another node has its own budget; a device's DATA asks its edge node. */
    decode_ok(st, "spBv1.0/G/DDATA/E2/D", "ddata");
    ck_assert_int_eq(f.npub, 2);
    ck_assert_str_eq(f.topic, "spBv1.0/G/NCMD/E2");
    /* Named DATA after a BIRTH asks nothing; a seq gap does (after the interval). */
    decode_ok(st, "spBv1.0/G/NBIRTH/E3", "nbirth");
    decode_ok(st, "spBv1.0/G/NDATA/E3", "ndata");
    ck_assert_int_eq(f.npub, 2);
    decode_ok(st, "spBv1.0/G/NDATA/E3", "ndata_gap");
    ck_assert_int_eq(f.npub, 3);
    ck_assert_str_eq(f.topic, "spBv1.0/G/NCMD/E3");
    ck_assert(!sparkplug_state_rebirth_due(st, "G", "E3", clock_mono_ms(), 60000));
    ck_assert(sparkplug_state_rebirth_due(st, "G", "E3", clock_mono_ms() + 60000, 60000));

    /* Off by config, and never from `sluice map` (read only). */
    configure(st, &hooks, false, false);
    decode_ok(st, "spBv1.0/G/NDATA/E4", "ndata");
    configure(st, &hooks, true, true);
    decode_ok(st, "spBv1.0/G/NDATA/E5", "ndata");
    ck_assert_int_eq(f.npub, 3);
    ck_assert_uint_eq(metrics_get(&metrics.sparkplug_rebirths), sent0 + 3);
    sparkplug_state_close(st);
}
END_TEST

static void
unlink_db(const char *db)
{
    char side[96];

    unlink(db);
    snprintf(side, sizeof(side), "%s-wal", db);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", db);
    unlink(side);
}

static int
alias_rows(sqlite3 *db, const char *device)
{
    sqlite3_stmt *q;
    int n = -1;

    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM sparkplug_alias WHERE "
                                        "device = ?1", -1, &q, NULL), SQLITE_OK);
    sqlite3_bind_text(q, 1, device, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return n;
}

/* A BIRTH's aliases reach the disk during its own decode even while another
 * connection (the spool's QoS 0 batch) holds the write lock: before_write ends that
 * transaction first. Without the hook the write never waits and stays pending. */
START_TEST(test_codec_sparkplug_birth_durable_before_append)
{
    char path[] = "/tmp/test_spb_XXXXXX", db[64];
    struct fake_mqtt f = { 0 };
    struct codec_hooks hooks = { &f, NULL, fake_before_write };
    struct sparkplug_state *st;
    struct err err = { 0 };
    int64_t t0;
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    close(fd);
    unlink(path);
    snprintf(db, sizeof(db), "%s.db", path);
    ck_assert_int_eq(sparkplug_state_open(&st, db, false, &err), 0);
    ck_assert_int_eq(sqlite3_open(db, &f.spool), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(f.spool, "CREATE TABLE batch (x); BEGIN IMMEDIATE; "
                                  "INSERT INTO batch VALUES (1)", NULL, NULL, NULL), SQLITE_OK);

    /* No barrier: the write lock is taken, the BIRTH stays pending, nobody waits. */
    t0 = clock_mono_ms();
    decode_ok(st, "spBv1.0/G/DBIRTH/E/D0", "dbirth");
    ck_assert_int_lt(clock_mono_ms() - t0, 500);
    ck_assert_uint_eq(sparkplug_state_pending(st), 1);

    /* With the barrier: the batch is committed first, then both BIRTHs are written. */
    configure(st, &hooks, false, false);
    decode_ok(st, "spBv1.0/G/DBIRTH/E/D1", "dbirth");
    ck_assert_int_eq(f.nbarrier, 1);
    ck_assert_uint_eq(sparkplug_state_pending(st), 0);
    ck_assert_int_eq(alias_rows(f.spool, "D0"), 5);
    ck_assert_int_eq(alias_rows(f.spool, "D1"), 5);
    /* DATA writes nothing and needs no barrier. */
    decode_ok(st, "spBv1.0/G/DDATA/E/D1", "ddata");
    ck_assert_int_eq(f.nbarrier, 1);

    sparkplug_state_close(st);
    sqlite3_close(f.spool);
    unlink_db(db);
}
END_TEST

/* DATA after a restart: the alias map comes back from the spool file. */
START_TEST(test_codec_sparkplug_aliases_survive_restart)
{
    char path[] = "/tmp/test_spb_XXXXXX", db[64];
    struct sparkplug_state *st;
    struct err err = { 0 };
    char *json;
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    close(fd);
    snprintf(db, sizeof(db), "%s.db", path);
    ck_assert_int_eq(sparkplug_state_open(&st, db, false, &err), 0);
    ck_assert_int_eq(decode(st, "spBv1.0/G/DBIRTH/E/D", "dbirth", &json, NULL), 0);
    free(json);
    ck_assert_uint_eq(sparkplug_state_pending(st), 0);
    sparkplug_state_close(st);

    /* Read-only (sluice map) sees it too, and leaves the file alone. */
    ck_assert_int_eq(sparkplug_state_open(&st, db, true, &err), 0);
    ck_assert_int_eq(decode(st, "spBv1.0/G/DDATA/E/D", "ddata", &json, NULL), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"name\":\"Outputs/Temp\",\"alias\":102"));
    free(json);
    sparkplug_state_close(st);

    ck_assert_int_eq(sparkplug_state_open(&st, db, false, &err), 0);
    ck_assert_ptr_nonnull(sparkplug_state_find(st, "G", "E", "D"));
    ck_assert_ptr_null(sparkplug_state_find(st, "G", "E", ""));
    sparkplug_state_close(st);

    /* A missing file in read-only mode is an empty state, and is not created. */
    unlink(db);
    ck_assert_int_eq(sparkplug_state_open(&st, db, true, &err), 0);
    sparkplug_state_close(st);
    ck_assert_int_ne(access(db, F_OK), 0);
    unlink(path);
    {
        char side[80];
        snprintf(side, sizeof(side), "%s-wal", db);
        unlink(side);
        snprintf(side, sizeof(side), "%s-shm", db);
        unlink(side);
    }
}
END_TEST

START_TEST(test_codec_sparkplug_state_message_passes_through)
{
    static const char p[] = "{\"online\":true,\"timestamp\":1700000000000}";
    struct codec_out out;
    struct err err = { 0 };

    ck_assert_int_eq(spb->decode(NULL, "spBv1.0/STATE/scada1", 20, p, strlen(p), &out, &err), 0);
    ck_assert_mem_eq(out.value, p, strlen(p));
    ck_assert(out.has_time);
    ck_assert_int_eq(out.time_ms, 1700000000000);
    ck_assert_int_eq((int)out.extra[2].len, 6);
    spb->release(&out);
    ck_assert_int_eq(spb->decode(NULL, "spBv1.0/STATE/h", 15, "OFFLINE", 7, &out, &err), 0);
    ck_assert_str_eq(out.value, "{\"online\":false}");
    spb->release(&out);
    ck_assert_int_eq(spb->decode(NULL, "spBv1.0/STATE/h", 15, "{", 1, &out, &err), -EBADMSG);
    spb->release(&out);
}
END_TEST

START_TEST(test_codec_sparkplug_rejects_foreign_topics)
{
    static const char *const topics[] = {
        "spBv1.0/G/NDATA", "spBv1.0/G/DDATA/E", "spBv1.0/G/NDATA/E/D", "spBv1.0/G/XDATA/E",
        "spAv1.0/G/NDATA/E", "a/b/c/d", "spBv1.0//NDATA/E", "spBv1.0/G/DDATA/E/D/x",
    };
    struct codec_out out;
    struct err err = { 0 };

    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        ck_assert_msg(spb->decode(NULL, topics[i], strlen(topics[i]), "", 0, &out, &err) ==
                      -EBADMSG, "%s", topics[i]);
        spb->release(&out);
    }
}
END_TEST

/* Damaged payloads: each prefix of every fixture, bytes flipped, wrong wire types,
 * hostile nesting. Decode either succeeds (a prefix can be a valid message) or says
 * -EBADMSG; ASan/UBSan builds check the rest. */
START_TEST(test_codec_sparkplug_damaged_payloads)
{
    static const char *const names[] = { "nbirth", "nbirth_arrays", "dbirth", "ddata" };
    struct sparkplug_state *st;
    struct codec_out out;
    struct err err = { 0 };
    size_t nbad = 0;

    ck_assert_int_eq(sparkplug_state_open(&st, NULL, false, &err), 0);
    for (size_t f = 0; f < sizeof(names) / sizeof(names[0]); f++) {
        size_t len;
        unsigned char *p = fixture(names[f], &len);
        for (size_t n = 0; n < len; n++) {
            int rc = spb->decode(st, "spBv1.0/G/DBIRTH/E/D", 20, p, n, &out, &err);
            ck_assert(rc == 0 || rc == -EBADMSG);
            nbad += rc == -EBADMSG;
            spb->release(&out);
        }
        for (size_t i = 0; i < len; i++) {
            unsigned char *q = malloc(len);
            memcpy(q, p, len);
            q[i] ^= (unsigned char)(0x5a + i);
            int rc = spb->decode(st, "spBv1.0/G/DDATA/E/D", 19, q, len, &out, &err);
            ck_assert(rc == 0 || rc == -EBADMSG);
            spb->release(&out);
            free(q);
        }
        free(p);
    }
    ck_assert_uint_gt(nbad, 0);

    {
        /* metrics (field 2) as a varint; a length past the end; a group; garbage. */
        static const struct { const char *p; size_t n; } bad[] = {
            { "\x10\x01", 2 }, { "\x12\x05\x0a", 3 }, { "\x13\x14", 2 },
            { "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11 }, { "\x08", 1 },
            { "\x12\x02\x0a\xff", 4 },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            ck_assert_msg(spb->decode(st, "spBv1.0/G/NDATA/E", 17, bad[i].p, bad[i].n, &out,
                                      &err) == -EBADMSG, "case %zu", i);
            spb->release(&out);
        }
    }
    {
        /* Metric -> Template -> Metric -> ... 1000 deep: refused, not recursed. */
        size_t depth = 1000, n = 0;
        unsigned char *p = malloc(depth * 12 + 16);
        /* Built inside out: innermost metric is empty. */
        size_t len = 0;
        unsigned char *buf = malloc(depth * 12 + 16), *tmp = malloc(depth * 12 + 16);
        for (size_t i = 0; i < depth; i++) {
            /* template { metrics(2): <buf> } inside metric { template_value(18): ... } */
            size_t t = 0;
            unsigned char hdr[12];
            size_t h = 0, inner = len;
            hdr[h++] = 0x12;                           /* Template.metrics */
            for (size_t v = inner; ; v >>= 7) { hdr[h++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)); if (v <= 0x7f) break; }
            size_t tlen = h + inner;
            tmp[t++] = 0x92; tmp[t++] = 0x01;          /* Metric.template_value (18) */
            for (size_t v = tlen; ; v >>= 7) { tmp[t++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)); if (v <= 0x7f) break; }
            memcpy(tmp + t, hdr, h);
            memcpy(tmp + t + h, buf, inner);
            len = t + h + inner;
            memcpy(buf, tmp, len);
        }
        p[n++] = 0x12;                                 /* Payload.metrics */
        for (size_t v = len; ; v >>= 7) { p[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)); if (v <= 0x7f) break; }
        memcpy(p + n, buf, len);
        ck_assert_int_eq(spb->decode(st, "spBv1.0/G/NDATA/E", 17, p, n + len, &out, &err),
                         -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "nested"));
        spb->release(&out);
        free(p);
        free(buf);
        free(tmp);
    }
    sparkplug_state_close(st);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("codec_sparkplug");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_codec_sparkplug_message_types);
    tcase_add_test(tc, test_codec_sparkplug_every_datatype);
    tcase_add_test(tc, test_codec_sparkplug_aliases_survive_restart);
    tcase_add_test(tc, test_codec_sparkplug_state_message_passes_through);
    tcase_add_test(tc, test_codec_sparkplug_rejects_foreign_topics);
    tcase_add_test(tc, test_codec_sparkplug_damaged_payloads);
    tcase_add_test(tc, test_codec_sparkplug_requests_rebirth);
    tcase_add_test(tc, test_codec_sparkplug_birth_durable_before_append);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
