/* kcheck.c - sluice-kcheck: reads Kafka topics from the beginning and counts what
 * arrived: delivered, duplicated, lost, reordered per key.
 *
 * Every value is parsed as a sluice-loadgen payload; its identity is (device, seq).
 * A record whose identity was seen before is a duplicate; a new identity whose seq is
 * lower than the highest seq already seen under the same Kafka key counts as
 * reordered. Values that are not loadgen JSON count as "other". SPEC promises
 * sluice.instance + sluice.seq unique per record, so downstream can de-duplicate on
 * it: two different identities under the same pair count as "seq_collisions" (a
 * duplicate under another pair is allowed: the broker redelivered a message whose
 * acknowledgement a crash cut off, and sluice took it as a new one).
 *
 * The consumer assigns every partition of every --topic at OFFSET_BEGINNING (no group
 * coordination, works against librdkafka's mock cluster), and keeps looking for topics
 * that do not exist yet, so it can be started before the producer. Start it before
 * production in tests: the mock cluster keeps only a few MiB per partition.
 *
 * It stops when --expect distinct messages arrived plus --linger-ms (to catch late
 * duplicates), after --idle seconds without a record (when set), or at --timeout.
 * It prints one JSON object line and exits 0; 2 on setup errors, 64 on usage. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#define KC_MAX_TOPICS 64

static const char *const KC_HEADERS[] = {
    "mqtt.topic", "mqtt.qos", "mqtt.retained", "event.time", "ingest.time",
    "sluice.instance", "sluice.seq",
};

/* ---- a string -> slot map and a u64 set (open addressing) ------------------------ */

struct kc_smap {
    char    **keys;       /* owned */
    size_t   *klen;
    int64_t  *val;        /* per-key value (max seq, or an id) */
    size_t    cap, n;
};

static uint64_t
kc_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int kc_smap_grow(struct kc_smap *m);

/* Returns the slot of key, inserting it with val = init when absent (*added = true). */
static size_t
kc_smap_get(struct kc_smap *m, const char *key, size_t len, int64_t init, bool *added)
{
    size_t i;

    if ((m->n + 1) * 2 > m->cap && kc_smap_grow(m) < 0) {
        fprintf(stderr, "sluice-kcheck: out of memory\n");
        exit(2);
    }
    i = kc_hash(key, len) & (m->cap - 1);
    while (m->keys[i] != NULL) {
        if (m->klen[i] == len && memcmp(m->keys[i], key, len) == 0) {
            *added = false;
            return i;
        }
        i = (i + 1) & (m->cap - 1);
    }
    if ((m->keys[i] = malloc(len + 1)) == NULL) {
        fprintf(stderr, "sluice-kcheck: out of memory\n");
        exit(2);
    }
    memcpy(m->keys[i], key, len);
    m->keys[i][len] = '\0';
    m->klen[i] = len;
    m->val[i] = init;
    m->n++;
    *added = true;
    return i;
}

static int
kc_smap_grow(struct kc_smap *m)
{
    struct kc_smap next = { 0 };
    bool added;

    next.cap = m->cap ? m->cap * 2 : 1024;
    next.keys = calloc(next.cap, sizeof(*next.keys));
    next.klen = calloc(next.cap, sizeof(*next.klen));
    next.val = calloc(next.cap, sizeof(*next.val));
    if (next.keys == NULL || next.klen == NULL || next.val == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == NULL)
            continue;
        size_t j = kc_hash(m->keys[i], m->klen[i]) & (next.cap - 1);
        while (next.keys[j] != NULL)
            j = (j + 1) & (next.cap - 1);
        next.keys[j] = m->keys[i];
        next.klen[j] = m->klen[i];
        next.val[j] = m->val[i];
        next.n++;
    }
    (void)added;
    free(m->keys);
    free(m->klen);
    free(m->val);
    *m = next;
    return 0;
}

static void
kc_smap_fini(struct kc_smap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->klen);
    free(m->val);
    memset(m, 0, sizeof(*m));
}

struct kc_set {
    uint64_t *v;      /* 0 = empty; stored values are never 0 */
    size_t    cap, n;
};

/* Inserts x (!= 0); returns true when it was new. */
static bool
kc_set_add(struct kc_set *s, uint64_t x)
{
    size_t i;

    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        uint64_t *v = calloc(cap, sizeof(*v));
        if (v == NULL) {
            fprintf(stderr, "sluice-kcheck: out of memory\n");
            exit(2);
        }
        for (size_t j = 0; j < s->cap; j++) {
            if (s->v[j] == 0)
                continue;
            size_t k = kc_hash(&s->v[j], sizeof(s->v[j])) & (cap - 1);
            while (v[k] != 0)
                k = (k + 1) & (cap - 1);
            v[k] = s->v[j];
        }
        free(s->v);
        s->v = v;
        s->cap = cap;
    }
    i = kc_hash(&x, sizeof(x)) & (s->cap - 1);
    while (s->v[i] != 0) {
        if (s->v[i] == x)
            return false;
        i = (i + 1) & (s->cap - 1);
    }
    s->v[i] = x;
    s->n++;
    return true;
}

/* ---- state ---------------------------------------------------------------------- */

struct kc {
    const char *bootstrap;
    const char *topics[KC_MAX_TOPICS];
    bool        assigned[KC_MAX_TOPICS];
    int         ntopics;
    uint64_t    expect;
    bool        has_expect;
    double      timeout_s, idle_s;
    int64_t     linger_ms;
    long        devices;
    bool        check_headers, check_ts, key_is_device, per_instance;
    FILE       *dump;

    uint64_t total, distinct, duplicates, reordered, missing_headers, bad_ts, other,
             key_mismatch, bad_device, seq_collisions;
    uint64_t per_topic[KC_MAX_TOPICS];
    struct kc_smap devs;    /* device -> id */
    struct kc_smap keys;    /* Kafka key -> highest seq seen */
    struct kc_set  seen;    /* (device id << 40 | seq) + 1 */
    struct kc_smap inst;    /* sluice.instance header -> records */
    struct kc_smap sseq;    /* "<sluice.instance>/<sluice.seq>" -> identity */
};

static volatile sig_atomic_t kc_stop;

static void
kc_on_signal(int sig)
{
    (void)sig;
    kc_stop = 1;
}

static int64_t
kc_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
kc_usage(FILE *f)
{
    fprintf(f,
            "usage: sluice-kcheck --bootstrap B --topic T [--topic T ...] [options]\n"
            "  --expect N        distinct messages expected; stop once they arrived\n"
            "  --linger-ms MS    keep reading this long after --expect is met (default 1000)\n"
            "  --timeout S       overall deadline in seconds (default 60)\n"
            "  --idle S          stop after S seconds without a record (default: off)\n"
            "  --devices D       count values whose device is not dev-0000..dev-<D-1>\n"
            "  --check-headers   every record must carry the sluice headers\n"
            "  --check-timestamp record CreateTime must equal the payload's ts\n"
            "  --key-is-device   the Kafka key must equal the payload's device\n"
            "  --per-instance    count records per sluice.instance header (\"per_instance\")\n"
            "  --dump FILE       one JSON line per record (with consumed_ms: wall clock)\n");
}

/* ---- one record ------------------------------------------------------------------- */

static void
kc_dump(struct kc *k, const rd_kafka_message_t *m, int64_t ts)
{
    rd_kafka_headers_t *hdrs = NULL;
    json_t *o = json_object(), *h = json_object(), *v;
    const char *name;
    const void *val;
    size_t sz;

    json_object_set_new(o, "topic", json_string(rd_kafka_topic_name(m->rkt)));
    json_object_set_new(o, "partition", json_integer(m->partition));
    json_object_set_new(o, "offset", json_integer(m->offset));
    if (m->key != NULL && (v = json_stringn(m->key, m->key_len)) != NULL)
        json_object_set_new(o, "key", v);
    else
        json_object_set_new(o, "key", json_null());
    json_object_set_new(o, "timestamp", json_integer(ts));
    {   /* when this consumer saw it (wall clock ms): end-to-end latency in tests */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        json_object_set_new(o, "consumed_ms", json_integer((json_int_t)now.tv_sec * 1000 +
                                                           now.tv_nsec / 1000000));
    }
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &sz)
                           == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
            v = val != NULL ? json_stringn(val, sz) : json_null();
            json_object_set_new(h, name, v != NULL ? v : json_string("<binary>"));
        }
    }
    json_object_set_new(o, "headers", h);
    v = m->payload != NULL ? json_stringn(m->payload, m->len) : json_null();
    json_object_set_new(o, "value", v != NULL ? v : json_string("<binary>"));
    json_dumpf(o, k->dump, JSON_COMPACT);
    fputc('\n', k->dump);
    json_decref(o);
}

static void
kc_record(struct kc *k, const rd_kafka_message_t *m)
{
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    const char *tname = rd_kafka_topic_name(m->rkt);
    json_t *root, *jdev, *jseq, *jts;
    json_error_t jerr;
    bool added;

    k->total++;
    for (int i = 0; i < k->ntopics; i++)
        if (strcmp(k->topics[i], tname) == 0)
            k->per_topic[i]++;
    if (k->dump != NULL)
        kc_dump(k, m, ts);
    if (k->per_instance) {
        rd_kafka_headers_t *hdrs = NULL;
        const void *val = NULL;
        size_t sz = 0;
        if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR
            || rd_kafka_header_get_last(hdrs, "sluice.instance", &val, &sz)
                   != RD_KAFKA_RESP_ERR_NO_ERROR
            || val == NULL) {
            val = "";
            sz = 0;
        }
        size_t slot = kc_smap_get(&k->inst, val, sz, 0, &added);   /* may grow the map */
        k->inst.val[slot]++;
    }

    if (k->check_headers) {
        rd_kafka_headers_t *hdrs = NULL;
        bool ok = rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR;
        for (size_t i = 0; ok && i < sizeof(KC_HEADERS) / sizeof(KC_HEADERS[0]); i++) {
            const void *val;
            size_t sz;
            ok = rd_kafka_header_get_last(hdrs, KC_HEADERS[i], &val, &sz)
                 == RD_KAFKA_RESP_ERR_NO_ERROR;
        }
        if (!ok)
            k->missing_headers++;
    }

    root = m->payload != NULL ? json_loadb(m->payload, m->len, 0, &jerr) : NULL;
    jdev = json_object_get(root, "device");
    jseq = json_object_get(root, "seq");
    if (!json_is_string(jdev) || !json_is_integer(jseq) || json_integer_value(jseq) < 0
        || json_integer_value(jseq) >= (1ll << 40)) {
        k->other++;
        json_decref(root);
        return;
    }
    const char *dev = json_string_value(jdev);
    size_t devlen = json_string_length(jdev);
    int64_t seq = json_integer_value(jseq);
    size_t ds = kc_smap_get(&k->devs, dev, devlen, (int64_t)k->devs.n, &added);
    uint64_t id = ((uint64_t)k->devs.val[ds] << 40 | (uint64_t)seq) + 1;

    if (k->devices > 0) {
        long n = -1;
        if (devlen == 8 && strncmp(dev, "dev-", 4) == 0)
            n = strtol(dev + 4, NULL, 10);
        if (n < 0 || n >= k->devices)
            k->bad_device++;
    }
    if (k->key_is_device && (m->key == NULL || m->key_len != devlen
                             || memcmp(m->key, dev, devlen) != 0))
        k->key_mismatch++;
    if (k->check_ts) {
        jts = json_object_get(root, "ts");
        if (!json_is_integer(jts) || json_integer_value(jts) != ts)
            k->bad_ts++;
    }
    {
        rd_kafka_headers_t *hdrs = NULL;
        const void *inst = NULL, *sq = NULL;
        size_t ilen = 0, slen = 0;
        char pair[512];
        int n;
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(hdrs, "sluice.instance", &inst, &ilen) ==
                RD_KAFKA_RESP_ERR_NO_ERROR && inst != NULL &&
            rd_kafka_header_get_last(hdrs, "sluice.seq", &sq, &slen) ==
                RD_KAFKA_RESP_ERR_NO_ERROR && sq != NULL &&
            (n = snprintf(pair, sizeof(pair), "%.*s/%.*s", (int)ilen, (const char *)inst,
                          (int)slen, (const char *)sq)) > 0 && (size_t)n < sizeof(pair)) {
            size_t ps = kc_smap_get(&k->sseq, pair, (size_t)n, (int64_t)id, &added);
            if (!added && k->sseq.val[ps] != (int64_t)id)
                k->seq_collisions++;
        }
    }
    if (!kc_set_add(&k->seen, id)) {
        k->duplicates++;
    } else {
        const char *key = m->key != NULL ? m->key : dev;
        size_t keylen = m->key != NULL ? m->key_len : devlen;
        size_t ks = kc_smap_get(&k->keys, key, keylen, -1, &added);
        k->distinct++;
        if (seq < k->keys.val[ks])
            k->reordered++;
        else
            k->keys.val[ks] = seq;
    }
    json_decref(root);
}

/* ---- topics and partitions --------------------------------------------------------- */

/* Assigns the partitions of every topic that exists now and is not assigned yet. */
static void
kc_assign_new(struct kc *k, rd_kafka_t *rk)
{
    for (int i = 0; i < k->ntopics; i++) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt;
        rd_kafka_resp_err_t err;

        if (k->assigned[i])
            continue;
        if ((rkt = rd_kafka_topic_new(rk, k->topics[i], NULL)) == NULL)
            continue;
        err = rd_kafka_metadata(rk, 0, rkt, &md, 2000);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1
            && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR
            && md->topics[0].partition_cnt > 0) {
            rd_kafka_topic_partition_list_t *l =
                rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
            for (int p = 0; p < md->topics[0].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(l, k->topics[i],
                                                  md->topics[0].partitions[p].id)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, l);
            if (e != NULL) {
                fprintf(stderr, "sluice-kcheck: assign %s: %s\n", k->topics[i],
                        rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            } else {
                k->assigned[i] = true;
                fprintf(stderr, "sluice-kcheck: reading %s (%d partition(s))\n", k->topics[i],
                        md->topics[0].partition_cnt);
            }
            rd_kafka_topic_partition_list_destroy(l);
        }
        if (md != NULL)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
    }
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "bootstrap", required_argument, NULL, 'b' },
        { "topic", required_argument, NULL, 't' },
        { "expect", required_argument, NULL, 'e' },
        { "timeout", required_argument, NULL, 'T' },
        { "idle", required_argument, NULL, 'i' },
        { "linger-ms", required_argument, NULL, 'l' },
        { "devices", required_argument, NULL, 'd' },
        { "check-headers", no_argument, NULL, 'H' },
        { "check-timestamp", no_argument, NULL, 'S' },
        { "key-is-device", no_argument, NULL, 'K' },
        { "per-instance", no_argument, NULL, 'I' },
        { "dump", required_argument, NULL, 'D' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct kc k;
    char errstr[512], group[64];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    int64_t start, deadline, met_at = -1, last_rec, next_meta = 0;
    json_t *out, *pt;
    int c;

    memset(&k, 0, sizeof(k));
    k.timeout_s = 60;
    k.linger_ms = 1000;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': k.bootstrap = optarg; break;
        case 't':
            if (k.ntopics == KC_MAX_TOPICS) {
                fprintf(stderr, "sluice-kcheck: at most %d topics\n", KC_MAX_TOPICS);
                return 64;
            }
            k.topics[k.ntopics++] = optarg;
            break;
        case 'e': k.expect = strtoull(optarg, NULL, 10); k.has_expect = true; break;
        case 'T': k.timeout_s = strtod(optarg, NULL); break;
        case 'i': k.idle_s = strtod(optarg, NULL); break;
        case 'l': k.linger_ms = strtoll(optarg, NULL, 10); break;
        case 'd': k.devices = strtol(optarg, NULL, 10); break;
        case 'H': k.check_headers = true; break;
        case 'S': k.check_ts = true; break;
        case 'K': k.key_is_device = true; break;
        case 'I': k.per_instance = true; break;
        case 'D':
            if ((k.dump = fopen(optarg, "w")) == NULL) {
                fprintf(stderr, "sluice-kcheck: %s: %s\n", optarg, strerror(errno));
                return 2;
            }
            break;
        case 'h': kc_usage(stdout); return 0;
        default: kc_usage(stderr); return 64;
        }
    }
    if (k.bootstrap == NULL || k.ntopics == 0 || optind != argc) {
        kc_usage(stderr);
        return 64;
    }

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    snprintf(group, sizeof(group), "sluice-kcheck-%d-%d", (int)getpid(), rand());
    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", k.bootstrap, errstr, sizeof(errstr))
            != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof(errstr))
            != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr))
            != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", errstr, sizeof(errstr))
            != RD_KAFKA_CONF_OK
        || rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "sluice-kcheck: config: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))) == NULL) {
        fprintf(stderr, "sluice-kcheck: consumer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    rd_kafka_poll_set_consumer(rk);
    signal(SIGINT, kc_on_signal);
    signal(SIGTERM, kc_on_signal);

    start = last_rec = kc_mono_ms();
    deadline = start + (int64_t)(k.timeout_s * 1000);
    while (!kc_stop) {
        int64_t now = kc_mono_ms();
        if (now >= deadline)
            break;
        if (met_at >= 0 && now - met_at >= k.linger_ms)
            break;
        if (k.idle_s > 0 && k.total > 0 && now - last_rec >= (int64_t)(k.idle_s * 1000))
            break;
        if (now >= next_meta) {
            bool all = true;
            for (int i = 0; i < k.ntopics; i++)
                all = all && k.assigned[i];
            if (!all) {
                kc_assign_new(&k, rk);
                next_meta = kc_mono_ms() + 250;
            } else {
                next_meta = INT64_MAX;
            }
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            kc_record(&k, m);
            last_rec = kc_mono_ms();
            if (k.has_expect && met_at < 0 && k.distinct >= k.expect)
                met_at = last_rec;
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            fprintf(stderr, "sluice-kcheck: %s\n", rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }

    out = json_object();
    json_object_set_new(out, "total", json_integer((json_int_t)k.total));
    json_object_set_new(out, "distinct", json_integer((json_int_t)k.distinct));
    json_object_set_new(out, "duplicates", json_integer((json_int_t)k.duplicates));
    json_object_set_new(out, "lost", json_integer(k.has_expect && k.expect > k.distinct
                                                  ? (json_int_t)(k.expect - k.distinct) : 0));
    json_object_set_new(out, "reordered", json_integer((json_int_t)k.reordered));
    json_object_set_new(out, "missing_headers", json_integer((json_int_t)k.missing_headers));
    json_object_set_new(out, "bad_timestamp", json_integer((json_int_t)k.bad_ts));
    json_object_set_new(out, "key_mismatch", json_integer((json_int_t)k.key_mismatch));
    json_object_set_new(out, "seq_collisions", json_integer((json_int_t)k.seq_collisions));
    json_object_set_new(out, "bad_device", json_integer((json_int_t)k.bad_device));
    json_object_set_new(out, "other", json_integer((json_int_t)k.other));
    json_object_set_new(out, "keys", json_integer((json_int_t)k.keys.n));
    json_object_set_new(out, "seconds", json_real((double)(kc_mono_ms() - start) / 1000.0));
    pt = json_object();
    for (int i = 0; i < k.ntopics; i++)
        json_object_set_new(pt, k.topics[i], json_integer((json_int_t)k.per_topic[i]));
    json_object_set_new(out, "per_topic", pt);
    if (k.per_instance) {
        json_t *pi = json_object();
        for (size_t i = 0; i < k.inst.cap; i++)
            if (k.inst.keys[i] != NULL)
                json_object_set_new(pi, k.inst.keys[i], json_integer((json_int_t)k.inst.val[i]));
        json_object_set_new(out, "per_instance", pi);
    }
    json_dumpf(out, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
    fputc('\n', stdout);
    fflush(stdout);
    json_decref(out);

    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (k.dump != NULL)
        fclose(k.dump);
    kc_smap_fini(&k.devs);
    kc_smap_fini(&k.keys);
    kc_smap_fini(&k.inst);
    kc_smap_fini(&k.sseq);
    free(k.seen.v);
    return 0;
}
