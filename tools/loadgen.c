/* loadgen.c - sluice-loadgen: a Paho MQTTAsync publisher of a realistic device mix.
 *
 * Message i (start <= i < start + count) belongs to device i % D and carries that
 * device's sequence number i / D + 1, so per-device sequences rise in publish order
 * and a checker can name every message by (device, seq) without any shared state:
 *
 *   topic   factory/berlin/l{line}/{device}/telemetry   {device} = dev-%04d, {line} = device % 4 + 1
 *   payload {"device":"dev-0007","seq":12,"ts":<epoch ms at publish>,"v":1.234,"pad":"xx.."}
 *
 * Delivery: at most --max-inflight messages are unacknowledged at a time. Every
 * message whose publish fails or is interrupted by a lost connection (Paho reports it
 * through onFailure when it drops the clean session) is queued again and re-published
 * after Paho's automatic reconnect, so a broker restart mid-run costs duplicates,
 * never losses. The run ends when every message is acknowledged (QoS 1/2) or written
 * to the socket (QoS 0), and prints one line:
 *
 *   published=N acked=N seconds=S rate=R
 *
 * Exit: 0 done, 1 could not connect (or --timeout passed), 64 usage. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#define LG_MAX_PROPS 16

struct lg_opts {
    const char *url;
    uint64_t    count, start;
    unsigned    devices;
    int         qos;
    const char *topic_fmt;
    size_t      size;
    double      rate;
    unsigned    max_inflight;
    const char *client_id;
    int         version;
    double      timeout_s;
    char       *prop_name[LG_MAX_PROPS], *prop_value[LG_MAX_PROPS];
    int         nprops;
    bool        synthetic_ts;     /* --ts-start: ts = start + (i / devices) * step */
    int64_t     ts_start, ts_step;
};

struct lg {
    struct lg_opts  o;
    MQTTAsync       client;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    bool            connected;
    bool            connect_failed;   /* the first connect failed */
    char            connect_why[256];
    uint64_t        inflight;         /* published, no outcome yet */
    uint64_t        acked;            /* distinct indices acknowledged */
    uint8_t        *acked_bits;       /* one bit per index - start */
    uint64_t       *requeue;          /* indices to publish again (stack) */
    size_t          nrequeue, caprequeue;
    uint64_t        republished;
    MQTTProperties  props;
};

static struct lg G;

static int64_t
lg_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t
lg_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
lg_usage(FILE *f)
{
    fprintf(f,
            "usage: sluice-loadgen [options]\n"
            "  --url URL            broker (default tcp://127.0.0.1:1883)\n"
            "  --count N            messages to publish (default 1000)\n"
            "  --start N            first message index, for resuming (default 0):\n"
            "                       publishes indices N .. N+count-1\n"
            "  --devices D          devices (default 100); message i is device i %% D\n"
            "  --qos Q              0, 1 or 2 (default 1)\n"
            "  --topic-fmt FMT      default factory/berlin/l{line}/{device}/telemetry\n"
            "  --size BYTES         pad the JSON payload to about this size (default 200)\n"
            "  --rate MSGS          messages per second, 0 = as fast as possible (default 0)\n"
            "  --max-inflight N     unacknowledged messages at most (default 100)\n"
            "  --client-id ID       default sluice-loadgen-<pid>\n"
            "  --mqtt-version 5|4   default 5\n"
            "  --user-prop N=V      MQTT 5 user property on every message (repeatable)\n"
            "  --timeout S          give up after S seconds (exit 1), 0 = never (default)\n"
            "  --ts-start MS        synthetic event time: message i gets ts = MS + (i / D) * STEP\n"
            "  --ts-step MS         (with --ts-start; default 1000) instead of the wall clock\n");
}

static int
lg_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

static int
lg_parse(int argc, char **argv, struct lg_opts *o)
{
    static const struct option longopts[] = {
        { "url", required_argument, NULL, 'u' },
        { "count", required_argument, NULL, 'n' },
        { "start", required_argument, NULL, 's' },
        { "devices", required_argument, NULL, 'd' },
        { "qos", required_argument, NULL, 'q' },
        { "topic-fmt", required_argument, NULL, 't' },
        { "size", required_argument, NULL, 'z' },
        { "rate", required_argument, NULL, 'r' },
        { "max-inflight", required_argument, NULL, 'm' },
        { "client-id", required_argument, NULL, 'c' },
        { "mqtt-version", required_argument, NULL, 'V' },
        { "user-prop", required_argument, NULL, 'p' },
        { "timeout", required_argument, NULL, 'T' },
        { "ts-start", required_argument, NULL, 'S' },
        { "ts-step", required_argument, NULL, 'X' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t v;
    int c;

    o->url = "tcp://127.0.0.1:1883";
    o->count = 1000;
    o->devices = 100;
    o->qos = 1;
    o->topic_fmt = "factory/berlin/l{line}/{device}/telemetry";
    o->size = 200;
    o->max_inflight = 100;
    o->version = 5;
    o->ts_step = 1000;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'u': o->url = optarg; break;
        case 'n': if (lg_parse_u64(optarg, &o->count) < 0) goto bad; break;
        case 's': if (lg_parse_u64(optarg, &o->start) < 0) goto bad; break;
        case 'd':
            if (lg_parse_u64(optarg, &v) < 0 || v == 0 || v > 1000000) goto bad;
            o->devices = (unsigned)v;
            break;
        case 'q':
            if (lg_parse_u64(optarg, &v) < 0 || v > 2) goto bad;
            o->qos = (int)v;
            break;
        case 't': o->topic_fmt = optarg; break;
        case 'z':
            if (lg_parse_u64(optarg, &v) < 0 || v > 16 * 1024 * 1024) goto bad;
            o->size = (size_t)v;
            break;
        case 'r':
            o->rate = strtod(optarg, NULL);
            if (o->rate < 0) goto bad;
            break;
        case 'm':
            if (lg_parse_u64(optarg, &v) < 0 || v == 0 || v > 65535) goto bad;
            o->max_inflight = (unsigned)v;
            break;
        case 'c': o->client_id = optarg; break;
        case 'V':
            if (strcmp(optarg, "5") == 0)
                o->version = 5;
            else if (strcmp(optarg, "4") == 0 || strcmp(optarg, "3.1.1") == 0)
                o->version = 4;
            else
                goto bad;
            break;
        case 'p': {
            char *eq = strchr(optarg, '=');
            if (eq == NULL || eq == optarg || o->nprops == LG_MAX_PROPS) goto bad;
            *eq = '\0';
            o->prop_name[o->nprops] = optarg;
            o->prop_value[o->nprops] = eq + 1;
            o->nprops++;
            break;
        }
        case 'T':
            o->timeout_s = strtod(optarg, NULL);
            if (o->timeout_s < 0) goto bad;
            break;
        case 'S':
            if (lg_parse_u64(optarg, &v) < 0 || v > INT64_MAX) goto bad;
            o->synthetic_ts = true;
            o->ts_start = (int64_t)v;
            break;
        case 'X':
            if (lg_parse_u64(optarg, &v) < 0 || v > INT64_MAX) goto bad;
            o->ts_step = (int64_t)v;
            break;
        case 'h': lg_usage(stdout); exit(0);
        default: lg_usage(stderr); return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "sluice-loadgen: unexpected argument %s\n", argv[optind]);
        lg_usage(stderr);
        return -1;
    }
    if (o->nprops > 0 && o->version != 5) {
        fprintf(stderr, "sluice-loadgen: --user-prop needs --mqtt-version 5\n");
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "sluice-loadgen: bad option value: %s\n", optarg != NULL ? optarg : "");
    return -1;
}

/* Renders the topic of device dev into out. */
static void
lg_topic(char *out, size_t cap, const char *fmt, unsigned dev)
{
    size_t n = 0;
    char tmp[32];

    while (*fmt != '\0' && n + 1 < cap) {
        const char *rep = NULL;
        size_t skip = 1;
        if (strncmp(fmt, "{device}", 8) == 0) {
            snprintf(tmp, sizeof(tmp), "dev-%04u", dev);
            rep = tmp;
            skip = 8;
        } else if (strncmp(fmt, "{line}", 6) == 0) {
            snprintf(tmp, sizeof(tmp), "%u", dev % 4 + 1);
            rep = tmp;
            skip = 6;
        }
        if (rep != NULL) {
            size_t l = strlen(rep);
            if (n + l >= cap)
                break;
            memcpy(out + n, rep, l);
            n += l;
        } else {
            out[n++] = *fmt;
        }
        fmt += skip;
    }
    out[n] = '\0';
}

/* Renders the payload of message idx into buf (cap >= size + 256). Returns its length. */
static int
lg_payload(char *buf, size_t cap, const struct lg_opts *o, uint64_t idx)
{
    unsigned dev = (unsigned)(idx % o->devices);
    uint64_t seq = idx / o->devices + 1;
    double v = 20.0 + 5.0 * sin((double)idx / 50.0);
    int64_t ts = o->synthetic_ts ? o->ts_start + (int64_t)(idx / o->devices) * o->ts_step
                                 : lg_wall_ms();
    int n, pad;

    n = snprintf(buf, cap, "{\"device\":\"dev-%04u\",\"seq\":%" PRIu64 ",\"ts\":%" PRId64
                 ",\"v\":%.3f,\"pad\":\"", dev, seq, ts, v);
    pad = (int)o->size - n - 2;
    if (pad < 0)
        pad = 0;
    if ((size_t)(n + pad + 3) > cap)
        pad = (int)cap - n - 3;
    memset(buf + n, 'x', (size_t)pad);
    n += pad;
    buf[n++] = '"';
    buf[n++] = '}';
    buf[n] = '\0';
    return n;
}

static void
lg_requeue_locked(uint64_t idx)
{
    if (G.nrequeue == G.caprequeue) {
        size_t cap = G.caprequeue ? G.caprequeue * 2 : 1024;
        uint64_t *p = realloc(G.requeue, cap * sizeof(*p));
        if (p == NULL) {
            fprintf(stderr, "sluice-loadgen: out of memory\n");
            exit(1);
        }
        G.requeue = p;
        G.caprequeue = cap;
    }
    G.requeue[G.nrequeue++] = idx;
}

static void
lg_outcome(void *ctx, bool ok)
{
    uint64_t idx = (uint64_t)(uintptr_t)ctx, rel = idx - G.o.start;

    pthread_mutex_lock(&G.mu);
    G.inflight--;
    if (ok) {
        if (!(G.acked_bits[rel / 8] & (1u << (rel % 8)))) {
            G.acked_bits[rel / 8] |= (uint8_t)(1u << (rel % 8));
            G.acked++;
        }
    } else if (!(G.acked_bits[rel / 8] & (1u << (rel % 8)))) {
        lg_requeue_locked(idx);
    }
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
}

static void lg_on_pub_ok(void *ctx, MQTTAsync_successData *r) { (void)r; lg_outcome(ctx, true); }
static void lg_on_pub_fail(void *ctx, MQTTAsync_failureData *r) { (void)r; lg_outcome(ctx, false); }
static void lg_on_pub_ok5(void *ctx, MQTTAsync_successData5 *r)
{
    /* A PUBACK with a failure reason (e.g. quota exceeded) is not an acknowledgement. */
    lg_outcome(ctx, r == NULL || r->reasonCode < MQTTREASONCODE_UNSPECIFIED_ERROR);
}
static void lg_on_pub_fail5(void *ctx, MQTTAsync_failureData5 *r) { (void)r; lg_outcome(ctx, false); }

static void
lg_set_connected(bool up)
{
    pthread_mutex_lock(&G.mu);
    G.connected = up;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
}

static void
lg_on_connected(void *ctx, char *cause)
{
    (void)ctx;
    (void)cause;
    lg_set_connected(true);
}

static void
lg_on_lost(void *ctx, char *cause)
{
    (void)ctx;
    fprintf(stderr, "sluice-loadgen: connection lost (%s); reconnecting\n",
            cause != NULL ? cause : "socket closed");
    lg_set_connected(false);
}

static int
lg_msgarrvd(void *ctx, char *topic, int len, MQTTAsync_message *m)
{
    (void)ctx;
    (void)len;
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static void
lg_first_fail(const char *why)
{
    pthread_mutex_lock(&G.mu);
    if (!G.connected) {
        G.connect_failed = true;
        snprintf(G.connect_why, sizeof(G.connect_why), "%s", why);
    }
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
}

static void
lg_on_conn_fail(void *ctx, MQTTAsync_failureData *r)
{
    (void)ctx;
    lg_first_fail(r != NULL && r->message != NULL ? r->message
                  : MQTTAsync_strerror(r != NULL ? r->code : -1));
}

static void
lg_on_conn_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
    (void)ctx;
    lg_first_fail(r != NULL && r->message != NULL ? r->message
                  : MQTTAsync_strerror(r != NULL ? r->code : -1));
}

static void
lg_on_conn_ok(void *ctx, MQTTAsync_successData *r)
{
    (void)ctx;
    (void)r;
    lg_set_connected(true);
}

static void
lg_on_conn_ok5(void *ctx, MQTTAsync_successData5 *r)
{
    (void)ctx;
    /* Paho holds publishes beyond the broker's Receive Maximum in its queue and only
     * looks at them again on its next timer tick (not on a PUBACK), so a wider window
     * than the broker allows crawls (mosquitto's default 20: ~1k msgs/s). Each of our
     * publishes wakes Paho's send thread, so a window within the limit runs at speed. */
    if (r != NULL && MQTTProperties_hasProperty(&r->properties,
                                                MQTTPROPERTY_CODE_RECEIVE_MAXIMUM)) {
        int rm = MQTTProperties_getNumericValue(&r->properties,
                                                MQTTPROPERTY_CODE_RECEIVE_MAXIMUM);
        pthread_mutex_lock(&G.mu);
        if (rm > 0 && (unsigned)rm < G.o.max_inflight)
            G.o.max_inflight = (unsigned)rm;
        pthread_mutex_unlock(&G.mu);
    }
    lg_set_connected(true);
}

/* Takes the next index to publish, waiting for a window slot and a connection.
 * Returns false when everything is acknowledged (or the deadline passed). */
static bool
lg_next(uint64_t *next_new, uint64_t end, uint64_t *idx, int64_t deadline_ns, bool *timed_out)
{
    bool got = false;

    pthread_mutex_lock(&G.mu);
    for (;;) {
        if (G.acked == G.o.count)
            break;
        if (deadline_ns > 0 && lg_mono_ns() >= deadline_ns) {
            *timed_out = true;
            break;
        }
        if (G.connected && G.inflight < G.o.max_inflight) {
            if (G.nrequeue > 0) {
                *idx = G.requeue[--G.nrequeue];
                G.republished++;
                got = true;
                break;
            }
            if (*next_new < end) {
                *idx = (*next_new)++;
                got = true;
                break;
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&G.cv, &G.mu, &ts);
    }
    if (got)
        G.inflight++;
    pthread_mutex_unlock(&G.mu);
    return got;
}

int
main(int argc, char **argv)
{
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    MQTTAsync_connectOptions c5 = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_connectOptions c3 = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions *conn;
    char client_id[64], topic[512], *payload;
    size_t paycap;
    uint64_t next_new, end, idx, sent = 0;
    int64_t t0, deadline_ns = 0;
    bool timed_out = false;
    int rc;

    if (lg_parse(argc, argv, &G.o) < 0)
        return 64;
    pthread_mutex_init(&G.mu, NULL);
    pthread_cond_init(&G.cv, NULL);
    if (G.o.client_id == NULL) {
        snprintf(client_id, sizeof(client_id), "sluice-loadgen-%ld", (long)getpid());
        G.o.client_id = client_id;
    }
    if ((G.acked_bits = calloc(G.o.count / 8 + 1, 1)) == NULL) {
        fprintf(stderr, "sluice-loadgen: out of memory\n");
        return 1;
    }
    paycap = G.o.size + 256;
    if ((payload = malloc(paycap)) == NULL) {
        fprintf(stderr, "sluice-loadgen: out of memory\n");
        return 1;
    }
    for (int i = 0; i < G.o.nprops; i++) {
        MQTTProperty p;
        memset(&p, 0, sizeof(p));
        p.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
        p.value.data.data = G.o.prop_name[i];
        p.value.data.len = (int)strlen(G.o.prop_name[i]);
        p.value.value.data = G.o.prop_value[i];
        p.value.value.len = (int)strlen(G.o.prop_value[i]);
        MQTTProperties_add(&G.props, &p);
    }

    co.MQTTVersion = G.o.version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    /* Paho counts queued publishes against this even while connected; our window
     * (max_inflight) is the real limit. */
    co.maxBufferedMessages = (int)G.o.max_inflight * 2 + 100;
    rc = MQTTAsync_createWithOptions(&G.client, G.o.url, G.o.client_id,
                                     MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "sluice-loadgen: client for %s: %s\n", G.o.url, MQTTAsync_strerror(rc));
        return 1;
    }
    MQTTAsync_setCallbacks(G.client, NULL, lg_on_lost, lg_msgarrvd, NULL);
    MQTTAsync_setConnected(G.client, NULL, lg_on_connected);

    /* A clean session: on a lost connection Paho fails every unacknowledged publish
     * (onFailure), and we publish those again ourselves after the reconnect. */
    conn = G.o.version == 5 ? &c5 : &c3;
    conn->keepAliveInterval = 20;
    conn->connectTimeout = 5;
    conn->maxInflight = (int)G.o.max_inflight + 16;
    conn->automaticReconnect = 1;
    conn->minRetryInterval = 1;
    conn->maxRetryInterval = 2;
    if (G.o.version == 5) {
        conn->cleanstart = 1;
        conn->onSuccess5 = lg_on_conn_ok5;
        conn->onFailure5 = lg_on_conn_fail5;
    } else {
        conn->cleansession = 1;
        conn->onSuccess = lg_on_conn_ok;
        conn->onFailure = lg_on_conn_fail;
    }
    if ((rc = MQTTAsync_connect(G.client, conn)) != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "sluice-loadgen: connect to %s: %s\n", G.o.url, MQTTAsync_strerror(rc));
        return 1;
    }
    pthread_mutex_lock(&G.mu);
    while (!G.connected && !G.connect_failed)
        pthread_cond_wait(&G.cv, &G.mu);
    pthread_mutex_unlock(&G.mu);
    if (!G.connected) {
        fprintf(stderr, "sluice-loadgen: cannot connect to %s: %s\n", G.o.url, G.connect_why);
        MQTTAsync_destroy(&G.client);
        return 1;
    }

    t0 = lg_mono_ns();
    if (G.o.timeout_s > 0)
        deadline_ns = t0 + (int64_t)(G.o.timeout_s * 1e9);
    next_new = G.o.start;
    end = G.o.start + G.o.count;
    while (lg_next(&next_new, end, &idx, deadline_ns, &timed_out)) {
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        MQTTAsync_message m = MQTTAsync_message_initializer;
        unsigned dev = (unsigned)(idx % G.o.devices);

        if (G.o.rate > 0) {
            int64_t due = t0 + (int64_t)((double)sent * 1e9 / G.o.rate), now = lg_mono_ns();
            if (due > now) {
                struct timespec ts = { (time_t)((due - now) / 1000000000LL),
                                       (long)((due - now) % 1000000000LL) };
                nanosleep(&ts, NULL);
            }
        }
        lg_topic(topic, sizeof(topic), G.o.topic_fmt, dev);
        m.payloadlen = lg_payload(payload, paycap, &G.o, idx);
        m.payload = payload;
        m.qos = G.o.qos;
        m.retained = 0;
        if (G.props.count > 0)
            m.properties = G.props;
        ro.context = (void *)(uintptr_t)idx;
        if (G.o.version == 5) {
            ro.onSuccess5 = lg_on_pub_ok5;
            ro.onFailure5 = lg_on_pub_fail5;
        } else {
            ro.onSuccess = lg_on_pub_ok;
            ro.onFailure = lg_on_pub_fail;
        }
        rc = MQTTAsync_sendMessage(G.client, topic, &m, &ro);
        if (rc != MQTTASYNC_SUCCESS) {
            /* Not queued (disconnected, or Paho's queue is full): try again shortly. */
            pthread_mutex_lock(&G.mu);
            G.inflight--;
            lg_requeue_locked(idx);
            if (rc == MQTTASYNC_DISCONNECTED)
                G.connected = false;
            pthread_mutex_unlock(&G.mu);
            usleep(1000);
            continue;
        }
        sent++;
    }
    double secs = (double)(lg_mono_ns() - t0) / 1e9;

    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = 1000;
    MQTTAsync_disconnect(G.client, &d);
    usleep(50000);
    MQTTAsync_destroy(&G.client);

    printf("published=%" PRIu64 " acked=%" PRIu64 " seconds=%.3f rate=%.0f\n",
           next_new - G.o.start, G.acked, secs, secs > 0 ? (double)G.acked / secs : 0.0);
    if (G.republished > 0)
        fprintf(stderr, "sluice-loadgen: %" PRIu64 " message(s) re-published after failures\n",
                G.republished);
    fflush(stdout);
    MQTTProperties_free(&G.props);
    free(payload);
    free(G.acked_bits);
    free(G.requeue);
    if (timed_out) {
        fprintf(stderr, "sluice-loadgen: timed out after %.1f s\n", G.o.timeout_s);
        return 1;
    }
    return 0;
}
