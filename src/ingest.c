/* ingest.c - MQTT side: Paho MQTTAsync subscriber -> mapper -> spool.
 *
 * Why the commit happens inside messageArrived. Paho calls messageArrived on its one
 * receive thread and sends the PUBACK (QoS 1) or, with MQTT 5, the PUBREC (QoS 2) as
 * soon as the callback returns 1 (MQTT 3.1.1 QoS 2 differs: see ingest_sub_qos).
 * Returning 0 is no escape: Paho queues the message in memory and acknowledges it
 * anyway. So for QoS 1/2 the callback maps the message, appends it to the spool with
 * commit = true, and returns 1 only after that commit: a SIGKILL at any instant leaves
 * the message either committed or unacknowledged (the broker then redelivers it from
 * the persistent session). Measured with mosquitto 2.0.11, 8 SIGKILLs during 40k
 * messages each: QoS 1 0 lost (382 duplicates end to end), MQTT 5 QoS 2 0 lost (809
 * duplicates). That commit is one write to the spool's intake journal (spool.c).
 * QoS 0 has no acknowledgement to protect, so its records join the journal in memory
 * only. The flusher thread moves the journal into the database once its oldest
 * record is INGEST_QOS0_BATCH_MS old (or inline at INGEST_QOS0_BATCH_ROWS records):
 * a crash loses at most those few milliseconds of QoS 0 messages. While the live path
 * carries the records (live.c), the merge waits for Kafka's acknowledgements and the
 * flusher writes the QoS 0 frames to the journal file every INGEST_QOS0_BATCH_MS
 * instead: the same few milliseconds.
 *
 * A failing spool (disk full, I/O error) never turns into an acknowledged loss. The
 * callback keeps retrying with backoff (10 ms doubling to 1 s) and never returns 1 for
 * an uncommitted QoS 1/2 message, also not while stopping: such a message stays
 * unacknowledged, Paho stays blocked in our callback, and the process is ended by
 * main's shutdown timer; the broker redelivers the message after the restart. A QoS 0
 * message that cannot be appended while stopping is dropped (logged and counted in
 * spool_errors): there was never a promise for it. A failed batch commit keeps what
 * the intake journal holds (QoS 0 too) and the flusher retries it.
 *
 * Backpressure (spool.when_full: backpressure) is the same path: spool_append returns
 * -ENOSPC at max_bytes, the callback holds the message unacknowledged, and
 * metrics.spool_state says "full" (/readyz 503) until the forwarder's deletes or
 * max_age make room. We keep blocking rather than disconnecting: Paho's other threads
 * keep the connection alive (measured: a 12 s stall under a 10 s keepalive kept the
 * connection, 0 lost), and should the broker drop it anyway, the unacknowledged
 * message and the session queue come back on reconnect. The flusher thread also runs
 * spool_retain once a second (max_age and the aggregate drop log lines).
 *
 * Reconnects are ours, not Paho's automaticReconnect. Paho 1.3.12 does jitter its
 * retries, but it forgets the connect callbacks after the first failure, so a
 * reconnect would no longer tell us sessionPresent. On connection loss or a failed
 * connect the flusher thread (which doubles as the reconnect timer) calls
 * MQTTAsync_connect again after an "equal jitter" delay: base 1 s doubling to 30 s,
 * delay uniform in [base/2, base], never below 1 s. After every successful connect
 * we subscribe to every filter: with MQTT 5 the subscriptions use retain handling 1
 * (retained messages only for a subscription that did not exist yet), so resubscribing
 * into a present session does not replay retained messages; with MQTT 3.1.1 there is
 * no such option, and we resubscribe only when the broker reports no session (or a
 * reload changed the filters).
 *
 * Threads and the lock rule. There is one ingest mutex (mu). It guards the spool
 * handle, the mapper, the config pointer, the subscription lists and the connection
 * state. The Paho receive thread holds it while mapping and appending a message; the
 * flusher holds it while committing a QoS 0 batch; ingest_set_config holds it for the
 * pointer swap, so once that returns no callback still uses the old config (a retrying
 * callback drops mu while it sleeps and maps the message again afterwards). Paho
 * itself holds its global mutex while it runs our callbacks, so the order is always
 * Paho's mutex, then mu: we never call a Paho function while holding mu.
 *
 * Codec hooks (codec.h). The mapper's codecs run under mu and get two hooks from us:
 * before_write commits the open QoS 0 batch, so that a Sparkplug BIRTH's alias rows
 * (written on the codec's own connection) are durable before the BIRTH itself is
 * appended (see codec_sparkplug.c); publish queues a message (a Sparkplug Rebirth
 * NCMD) that the callback sends with MQTTAsync_sendMessage after dropping mu, per
 * the rule above. QoS 0 sends only queue inside Paho, so the receive thread never
 * waits for the network. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "sluice/clock.h"
#include "sluice/codec.h"
#include "sluice/config.h"
#include "sluice/err.h"
#include "sluice/ingest.h"
#include "sluice/log.h"
#include "sluice/mapper.h"
#include "sluice/metrics.h"
#include "sluice/record.h"
#include "sluice/route.h"
#include "sluice/spool.h"

#define INGEST_QOS0_BATCH_ROWS  1000   /* commit a QoS 0 batch inline at this size */
#define INGEST_MAX_USER_PROPS   32     /* MQTT 5 user properties kept per message */
#define INGEST_BACKOFF_MIN_MS   1000
#define INGEST_BACKOFF_MAX_MS   30000
#define INGEST_RETRY_MIN_MS     10     /* spool append retry: 10 ms doubling to 1 s */
#define INGEST_RETRY_MAX_MS     1000
#define INGEST_DISCONNECT_MS    1000   /* Paho's disconnect timeout */
#define INGEST_STOP_WAIT_MS     3000   /* how long ingest_stop waits for the disconnect */
#define INGEST_DESTROY_WAIT_MS  5000   /* how long destroy waits for a stuck callback */
#define INGEST_LOG_EVERY_MS     10000  /* rate limit of repeated errors */
#define INGEST_RETAIN_MS        1000   /* spool max_age check interval */
#define INGEST_OUTBOX_MAX       16     /* codec publishes queued per message */

static const char *const COMP = "ingest";

enum ingest_conn {
    CONN_IDLE = 0,     /* not started */
    CONN_CONNECTING,   /* a connect is in flight */
    CONN_UP,           /* connected */
    CONN_WAIT,         /* waiting for retry_at to reconnect */
    CONN_STOPPED,      /* ingest_stop: never reconnect */
};

/* A message a codec asked us to publish (owned copies). */
struct ingest_pub {
    char   *topic;
    void   *payload;
    size_t  len;
};

/* A list of owned filter strings. */
struct ingest_filters {
    char  **v;
    size_t  n;
};

struct ingest {
    pthread_mutex_t      mu;            /* the ingest mutex: see the lock rule on top */
    pthread_cond_t       wake;          /* flusher: batch opened, reconnect due, stop */
    pthread_cond_t       changed;       /* disconnect done, callback left, stop */
    const struct config *cfg;           /* borrowed; swapped by ingest_set_config */
    struct spool        *sp;            /* owned */
    struct mapper       *mp;            /* owned; used under mu only */
    ingest_notify_fn     notify;
    void                *notify_arg;
    MQTTAsync            client;

    /* Connection settings, copied at create: a reload does not change them. */
    char    *url, *client_id, *username, *password;
    char    *ca_file, *cert_file, *key_file;
    bool     tls, tls_verify, clean_start;
    int      version;                   /* MQTTVERSION_5 or MQTTVERSION_3_1_1 */
    int      keepalive_s;
    uint32_t session_expiry_s;

    struct ingest_filters subs;         /* wanted subscriptions, $share prefix included */
    struct ingest_filters unsubs;       /* removed while down: unsubscribe on connect */
    bool     subs_dirty;                /* filters changed since the last SUBSCRIBE */

    enum ingest_conn state;
    int64_t  retry_at;                  /* mono ms of the next connect in CONN_WAIT */
    int64_t  backoff_ms;                /* current base of the reconnect backoff */
    uint64_t rng;                       /* xorshift state for the jitter */
    bool     ever_connected;

    pthread_t thread;
    bool     thread_started;
    bool     thread_stop;
    bool     started, stopped;
    atomic_bool stopping;
    atomic_int  connected;
    bool     disc_done;                 /* the stop's disconnect completed */
    bool     in_cb;                     /* the receive thread is in messageArrived */
    bool     stalled;                   /* ... and retrying a failed append */

    struct codec_hooks hooks;           /* lent to the mapper's codecs */
    struct ingest_pub  outbox[INGEST_OUTBOX_MAX];  /* queued under mu by hooks.publish */
    size_t   noutbox;
    bool     hook_committed;            /* hooks.before_write committed a batch */

    struct log_limiter lim_spool, lim_connect, lim_noroute, lim_tls, lim_dead;
    struct log_limiter lim_commit;      /* batch commits: not to mute lim_spool's lines */
    struct log_limiter lim_host;       /* the wrong-host hint; under mu */
    atomic_bool tls_err_seen;          /* OpenSSL reported an error this attempt */
    struct log_limiter lim_publish;     /* receive thread only, without mu */
};

/* ---- small helpers ------------------------------------------------------------ */

static char *
ingest_strdup(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static void
ingest_filters_fini(struct ingest_filters *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i]);
    free(f->v);
    f->v = NULL;
    f->n = 0;
}

static bool
ingest_filters_has(const struct ingest_filters *f, const char *s)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->v[i], s) == 0)
            return true;
    return false;
}

static int
ingest_filters_add(struct ingest_filters *f, const char *s)
{
    char **v, *copy;

    if ((copy = strdup(s)) == NULL)
        return -ENOMEM;
    if ((v = realloc(f->v, (f->n + 1) * sizeof(*v))) == NULL) {
        free(copy);
        return -ENOMEM;
    }
    f->v = v;
    f->v[f->n++] = copy;
    return 0;
}

static void
ingest_filters_remove(struct ingest_filters *f, const char *s)
{
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->v[i], s) == 0) {
            free(f->v[i]);
            memmove(&f->v[i], &f->v[i + 1], (f->n - i - 1) * sizeof(*f->v));
            f->n--;
            return;
        }
    }
}

/* The subscriptions cfg implies: the router's filters, each prefixed with
 * "$share/<group>/" when a share group is set. */
static int
ingest_filters_build(struct ingest_filters *out, const struct config *cfg)
{
    const char *group = cfg->mqtt.share_group != NULL ? cfg->mqtt.share_group : "";
    size_t n = cfg->router != NULL ? router_nsubscriptions(cfg->router) : 0;
    char tmp[1024];
    int rc;

    out->v = NULL;
    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        const char *f = router_subscription(cfg->router, i);
        if (group[0] != '\0') {
            if ((size_t)snprintf(tmp, sizeof(tmp), "$share/%s/%s", group, f) >= sizeof(tmp)) {
                ingest_filters_fini(out);
                return -ENAMETOOLONG;
            }
            f = tmp;
        }
        if ((rc = ingest_filters_add(out, f)) < 0) {
            ingest_filters_fini(out);
            return rc;
        }
    }
    return 0;
}

static void
ingest_abstime(struct timespec *ts, int64_t mono_ms)
{
    ts->tv_sec = (time_t)(mono_ms / 1000);
    ts->tv_nsec = (long)(mono_ms % 1000) * 1000000L;
}

static uint64_t
ingest_rand(struct ingest *in)
{
    uint64_t x = in->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return in->rng = x;
}

static const char *
ingest_mqtt_err(int rc)
{
    const char *s = MQTTAsync_strerror(rc);
    return s != NULL ? s : "unknown error";
}

/* The QoS we subscribe at. Paho handles an inbound MQTT 3.1.1 QoS 2 message by sending
 * PUBREC first and calling messageArrived only when PUBREL arrives; with no Paho
 * persistence a crash in between loses a message the broker already considers
 * received. So over 3.1.1 we subscribe at QoS 1 instead (at least once, which is all
 * the Kafka side promises anyway). MQTT 5 QoS 2 is safe: Paho calls messageArrived on
 * the PUBLISH and sends PUBREC after it returns. */
static int
ingest_sub_qos(const struct ingest *in, const struct config *cfg)
{
    int qos = cfg->mqtt.qos;

    if (qos < 0)
        qos = 0;
    if (qos > 2)
        qos = 2;
    if (qos == 2 && in->version != MQTTVERSION_5)
        qos = 1;
    return qos;
}

/* ---- connection --------------------------------------------------------------- */

static void ingest_on_connect_ok(void *ctx, MQTTAsync_successData *resp);
static void ingest_on_connect_fail(void *ctx, MQTTAsync_failureData *resp);
static void ingest_on_connect_ok5(void *ctx, MQTTAsync_successData5 *resp);
static void ingest_on_connect_fail5(void *ctx, MQTTAsync_failureData5 *resp);

/* Under mu: schedules the next connect attempt with jittered exponential backoff and
 * returns its delay in ms. */
static int64_t
ingest_schedule_locked(struct ingest *in)
{
    int64_t base = in->backoff_ms, delay;

    delay = base / 2 + (int64_t)(ingest_rand(in) % (uint64_t)(base / 2 + 1));
    if (delay < INGEST_BACKOFF_MIN_MS)
        delay = INGEST_BACKOFF_MIN_MS;
    in->backoff_ms = base * 2 < INGEST_BACKOFF_MAX_MS ? base * 2 : INGEST_BACKOFF_MAX_MS;
    in->state = CONN_WAIT;
    in->retry_at = clock_mono_ms() + delay;
    pthread_cond_signal(&in->wake);
    return delay;
}

/* OpenSSL's reason for a failed handshake (certificate, hostname...): Paho itself
 * only reports "TCP/TLS connect failure". */
static int
ingest_on_ssl_error(const char *str, size_t len, void *ctx)
{
    struct ingest *in = ctx;

    while (len > 0 && (str[len - 1] == '\n' || str[len - 1] == '\0'))
        len--;
    atomic_store(&in->tls_err_seen, true);
    log_limited(&in->lim_tls, INGEST_LOG_EVERY_MS, LOG_WARN, COMP, "tls: %.*s", (int)len, str);
    return 0;
}

/* Issues one MQTTAsync_connect. Called without mu. Returns 0 or -EIO with a sentence. */
static int
ingest_connect(struct ingest *in, struct err *err)
{
    MQTTAsync_connectOptions opts5 = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_connectOptions opts3 = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions *o = in->version == MQTTVERSION_5 ? &opts5 : &opts3;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    MQTTProperties props = MQTTProperties_initializer;
    MQTTProperty prop;
    int rc;

    o->keepAliveInterval = in->keepalive_s;
    o->connectTimeout = 10;
    o->automaticReconnect = 0;
    o->username = in->username;
    o->password = in->password;
    o->context = in;
    o->MQTTVersion = in->version;
    if (in->version == MQTTVERSION_5) {
        o->cleansession = 0;
        o->cleanstart = in->clean_start;
        o->onSuccess5 = ingest_on_connect_ok5;
        o->onFailure5 = ingest_on_connect_fail5;
        memset(&prop, 0, sizeof(prop));
        prop.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
        prop.value.integer4 = in->session_expiry_s;
        if (MQTTProperties_add(&props, &prop) != 0)
            return err_set(err, -ENOMEM, "ingest: out of memory");

        o->connectProperties = &props;
    } else {
        o->cleansession = in->clean_start;
        o->onSuccess = ingest_on_connect_ok;
        o->onFailure = ingest_on_connect_fail;
    }
    if (in->tls) {
        ssl.trustStore = in->ca_file;
        ssl.keyStore = in->cert_file;
        ssl.privateKey = in->key_file;
        ssl.enableServerCertAuth = in->tls_verify;
        ssl.verify = in->tls_verify;
        ssl.ssl_error_cb = ingest_on_ssl_error;
        ssl.ssl_error_context = in;
        o->ssl = &ssl;
    }
    atomic_store(&in->tls_err_seen, false);
    rc = MQTTAsync_connect(in->client, o);
    MQTTProperties_free(&props);
    if (rc != MQTTASYNC_SUCCESS)
        return err_set(err, -EIO, "ingest: connect to %s: %s", in->url, ingest_mqtt_err(rc));
    return 0;
}

/* From the flusher or ingest_start, without mu: connect now or schedule a retry. */
static void
ingest_connect_or_retry(struct ingest *in)
{
    struct err e = { 0 };
    int64_t delay;

    if (ingest_connect(in, &e) == 0)
        return;
    pthread_mutex_lock(&in->mu);
    if (in->state == CONN_CONNECTING) {
        delay = ingest_schedule_locked(in);
        log_limited(&in->lim_connect, INGEST_LOG_EVERY_MS, LOG_WARN, COMP,
                    "%s (retrying in %" PRId64 " ms)", e.msg, delay);
    }
    pthread_mutex_unlock(&in->mu);
}

/* MQTT 5 SUBACK of one filter: Paho fills only reasonCode (alt.sub is not set). */
static void
ingest_on_sub_ok5_one(void *ctx, MQTTAsync_successData5 *resp)
{
    (void)ctx;
    if (resp->reasonCode >= MQTTREASONCODE_UNSPECIFIED_ERROR)
        log_error(COMP, "broker refused the subscription (reason %d: %s)", (int)resp->reasonCode,
                  MQTTReasonCode_toString(resp->reasonCode));
    else
        log_info(COMP, "subscribed (1 filter)");
}

/* MQTT 5 SUBACK of several filters: one reason code each in alt.sub. */
static void
ingest_on_sub_ok5(void *ctx, MQTTAsync_successData5 *resp)
{
    int n = resp->alt.sub.reasonCodeCount, granted = 0;

    (void)ctx;
    for (int i = 0; i < n; i++) {
        if (resp->alt.sub.reasonCodes[i] >= MQTTREASONCODE_UNSPECIFIED_ERROR)
            log_error(COMP, "broker refused subscription %d of %d (reason %d: %s)", i + 1, n,
                      (int)resp->alt.sub.reasonCodes[i],
                      MQTTReasonCode_toString(resp->alt.sub.reasonCodes[i]));
        else
            granted++;
    }
    if (granted > 0)
        log_info(COMP, "subscribed (%d of %d filters)", granted, n);
}

static void
ingest_on_sub_fail5(void *ctx, MQTTAsync_failureData5 *resp)
{
    (void)ctx;
    log_error(COMP, "subscribe failed: %s (reason %d)",
              resp->message != NULL ? resp->message : ingest_mqtt_err(resp->code),
              (int)resp->reasonCode);
}

/* MQTT 3.1.1 SUBACK of one filter: granted QoS 0x80 means refused. (For several
 * filters Paho's qosList carries no length, so those are not checked.) */
static void
ingest_on_sub_ok_one(void *ctx, MQTTAsync_successData *resp)
{
    (void)ctx;
    if (resp->alt.qos == 0x80)
        log_error(COMP, "broker refused the subscription");
    else
        log_info(COMP, "subscribed (1 filter)");
}

static void
ingest_on_sub_ok(void *ctx, MQTTAsync_successData *resp)
{
    (void)ctx;
    (void)resp;
    log_info(COMP, "subscribed (several filters)");
}

static void
ingest_on_sub_fail(void *ctx, MQTTAsync_failureData *resp)
{
    (void)ctx;
    log_error(COMP, "subscribe failed: %s",
              resp->message != NULL ? resp->message : ingest_mqtt_err(resp->code));
}

/* Subscribes to n filters at qos. Without mu. Best effort: failures are logged. */
static void
ingest_subscribe(struct ingest *in, char *const *filters, size_t n, int qos)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    MQTTSubscribe_options *so = NULL;
    int *qv;
    int rc;

    if (n == 0)
        return;
    if ((qv = calloc(n, sizeof(*qv))) == NULL) {
        log_error(COMP, "subscribe: out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        qv[i] = qos;
    ro.context = in;
    if (in->version == MQTTVERSION_5) {
        MQTTSubscribe_options init = MQTTSubscribe_options_initializer;
        if ((so = calloc(n, sizeof(*so))) == NULL) {
            free(qv);
            log_error(COMP, "subscribe: out of memory");
            return;
        }
        /* retainAsPublished keeps mqtt.retained true to what the publisher set;
         * retainHandling 1 sends retained messages only for a new subscription, so a
         * resubscribe after a reconnect into a present session replays nothing. */
        for (size_t i = 0; i < n; i++) {
            so[i] = init;
            so[i].noLocal = 0;
            so[i].retainAsPublished = 1;
            so[i].retainHandling = 1;
        }
        ro.subscribeOptions = so[0];       /* Paho reads this one for a single filter */
        ro.subscribeOptionsList = so;
        ro.subscribeOptionsCount = (int)n;
        ro.onSuccess5 = n == 1 ? ingest_on_sub_ok5_one : ingest_on_sub_ok5;
        ro.onFailure5 = ingest_on_sub_fail5;
    } else {
        ro.onSuccess = n == 1 ? ingest_on_sub_ok_one : ingest_on_sub_ok;
        ro.onFailure = ingest_on_sub_fail;
    }
    rc = MQTTAsync_subscribeMany(in->client, (int)n, filters, qv, &ro);
    if (rc != MQTTASYNC_SUCCESS)
        log_error(COMP, "subscribe to %zu filter(s): %s", n, ingest_mqtt_err(rc));
    else
        for (size_t i = 0; i < n; i++)
            log_info(COMP, "subscribing to %s (qos %d)", filters[i], qos);
    free(qv);
    free(so);
}

/* Without mu. Best effort. */
static void
ingest_unsubscribe(struct ingest *in, char *const *filters, size_t n)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    int rc;

    if (n == 0)
        return;
    rc = MQTTAsync_unsubscribeMany(in->client, (int)n, filters, &ro);
    if (rc != MQTTASYNC_SUCCESS)
        log_warn(COMP, "unsubscribe from %zu filter(s): %s", n, ingest_mqtt_err(rc));
    else
        for (size_t i = 0; i < n; i++)
            log_info(COMP, "unsubscribing from %s", filters[i]);
}

/* Both connect-success paths. Runs on a Paho thread (Paho's mutex held). */
static void
ingest_connected(struct ingest *in, bool session_present)
{
    struct ingest_filters subs = { 0 }, unsubs = { 0 };
    bool resubscribe, stopping;
    int qos = 1;

    pthread_mutex_lock(&in->mu);
    stopping = in->state == CONN_STOPPED || atomic_load(&in->stopping);
    if (!stopping) {
        in->state = CONN_UP;
        in->backoff_ms = INGEST_BACKOFF_MIN_MS;
        resubscribe = in->version == MQTTVERSION_5 || !session_present || in->subs_dirty
                      || !in->ever_connected;
        in->ever_connected = true;
        if (resubscribe) {
            /* Copied: a reload may replace in->subs while we subscribe without mu. */
            for (size_t i = 0; i < in->subs.n; i++)
                if (ingest_filters_add(&subs, in->subs.v[i]) < 0)
                    break;
            in->subs_dirty = false;
        }
        unsubs = in->unsubs;       /* take the pending list */
        in->unsubs.v = NULL;
        in->unsubs.n = 0;
        qos = ingest_sub_qos(in, in->cfg);
        atomic_store(&in->connected, 1);
        atomic_store_explicit(&metrics.mqtt_connected, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&in->mu);

    if (stopping) {
        /* A connect that completed after ingest_stop: drop it again. */
        MQTTAsync_disconnect(in->client, NULL);
        return;
    }
    log_info(COMP, "connected to %s (%s)", in->url,
             session_present ? "session present" : "new session");
    ingest_unsubscribe(in, unsubs.v, unsubs.n);
    ingest_subscribe(in, subs.v, subs.n, qos);
    ingest_filters_fini(&subs);
    ingest_filters_fini(&unsubs);
}

static void
ingest_connect_failed(struct ingest *in, const char *why)
{
    int64_t delay;

    pthread_mutex_lock(&in->mu);
    if (in->state == CONN_CONNECTING && !atomic_load(&in->stopping)) {
        delay = ingest_schedule_locked(in);
        /* Under mu: the limiter is shared with ingest_connect_or_retry. */
        log_limited(&in->lim_connect, INGEST_LOG_EVERY_MS, LOG_WARN, COMP,
                    "cannot connect to %s (%s); retrying in %" PRId64 " ms", in->url, why,
                    delay);
        /* Paho checks the host name itself after the handshake (X509_check_host, then
         * X509_check_ip_asc) and fails with its bare "TCP/TLS connect failure", leaving
         * nothing on OpenSSL's error queue for ingest_on_ssl_error: say the likely why.
         * A broker that is down fails the same way, hence "if the broker is up". */
        if (in->tls && in->tls_verify && strstr(why, "TCP/TLS") != NULL &&
            !atomic_load(&in->tls_err_seen)) {
            /* scheme://host:port or scheme://[v6]:port: the name Paho checks. */
            const char *h = strstr(in->url, "://");
            size_t n;
            h = h != NULL ? h + 3 : in->url;
            n = *h == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
            log_limited(&in->lim_host, INGEST_LOG_EVERY_MS, LOG_WARN, COMP,
                        "tls: connect to %s failed without an OpenSSL error: if the broker "
                        "is up, its certificate may not match host %.*s (hostname "
                        "verification failed? check the certificate's subjectAltName)",
                        in->url, (int)n, h);
        }
    }
    pthread_mutex_unlock(&in->mu);
}

static void
ingest_on_connect_ok(void *ctx, MQTTAsync_successData *resp)
{
    ingest_connected(ctx, resp != NULL && resp->alt.connect.sessionPresent);
}

static void
ingest_on_connect_ok5(void *ctx, MQTTAsync_successData5 *resp)
{
    ingest_connected(ctx, resp != NULL && resp->alt.connect.sessionPresent);
}

static void
ingest_on_connect_fail(void *ctx, MQTTAsync_failureData *resp)
{
    char why[160];

    snprintf(why, sizeof(why), "%s",
             resp == NULL ? "unknown error"
             : resp->message != NULL ? resp->message : ingest_mqtt_err(resp->code));
    ingest_connect_failed(ctx, why);
}

static void
ingest_on_connect_fail5(void *ctx, MQTTAsync_failureData5 *resp)
{
    char why[200];

    if (resp == NULL)
        snprintf(why, sizeof(why), "unknown error");
    else if (resp->reasonCode != MQTTREASONCODE_SUCCESS)
        snprintf(why, sizeof(why), "%s: reason %d, %s",
                 resp->message != NULL ? resp->message : ingest_mqtt_err(resp->code),
                 (int)resp->reasonCode, MQTTReasonCode_toString(resp->reasonCode));
    else
        snprintf(why, sizeof(why), "%s",
                 resp->message != NULL ? resp->message : ingest_mqtt_err(resp->code));
    ingest_connect_failed(ctx, why);
}

/* Connection lost (socket error, keepalive timeout, server DISCONNECT). Idempotent. */
static void
ingest_lost(struct ingest *in, const char *why)
{
    bool was_up = false;

    pthread_mutex_lock(&in->mu);
    if (in->state == CONN_UP) {
        was_up = true;
        atomic_store(&in->connected, 0);
        atomic_store_explicit(&metrics.mqtt_connected, 0, memory_order_relaxed);
        if (!atomic_load(&in->stopping)) {
            /* The first retry comes after about a second, not at once: a broker that
             * just dropped us is often restarting. */
            in->backoff_ms = INGEST_BACKOFF_MIN_MS;
            ingest_schedule_locked(in);
        }
    }
    pthread_mutex_unlock(&in->mu);
    if (was_up && !atomic_load(&in->stopping))
        log_warn(COMP, "connection lost (%s); reconnecting", why);
}

static void
ingest_on_connection_lost(void *ctx, char *cause)
{
    ingest_lost(ctx, cause != NULL && cause[0] != '\0' ? cause : "socket closed");
}

static void
ingest_on_disconnected(void *ctx, MQTTProperties *props, enum MQTTReasonCodes rc)
{
    char why[128];

    (void)props;
    snprintf(why, sizeof(why), "broker sent DISCONNECT: reason %d, %s", (int)rc,
             MQTTReasonCode_toString(rc));
    ingest_lost(ctx, why);
}

/* ---- messages ------------------------------------------------------------------ */

/* Under mu: commits the open QoS 0 batch and the intake journal. Returns true when
 * rows were committed (the caller notifies after dropping mu). With may_hold, the
 * spool may only write the journal's frames to its file while the live path
 * produces them (spool_commit_or_hold): then *held is true. */
static bool
ingest_commit_locked(struct ingest *in, bool may_hold, bool *held)
{
    struct err e = { 0 };
    size_t n = spool_pending(in->sp);
    int rc;

    if (held != NULL)
        *held = false;
    if (n == 0)
        return false;
    rc = may_hold ? spool_commit_or_hold(in->sp, &e) : spool_commit(in->sp, &e);
    if (rc > 0) {
        *held = true;
        return false;
    }
    if (rc < 0) {
        size_t kept = spool_pending(in->sp);

        metrics_add(&metrics.spool_errors, 1);
        metrics_set_spool_state(SPOOL_STATE_FAILING);
        if (kept > 0)
            log_limited(&in->lim_commit, INGEST_LOG_EVERY_MS, LOG_ERROR, COMP,
                        "commit of %zu message(s) failed; the %zu in the intake journal "
                        "are kept and retried: %s", n, kept, e.msg);
        else
            log_limited(&in->lim_commit, INGEST_LOG_EVERY_MS, LOG_ERROR, COMP,
                        "commit of %zu QoS 0 message(s) failed, they are lost: %s", n,
                        e.msg);
        mapper_state_reset(in->mp);   /* the batch's route state went with it */
        return false;
    }
    return true;
}

static bool
ingest_commit_batch_locked(struct ingest *in)
{
    return ingest_commit_locked(in, false, NULL);
}

/* hooks.before_write: from mapper_map, under mu. */
static void
ingest_hook_before_write(void *arg)
{
    struct ingest *in = arg;

    if (ingest_commit_batch_locked(in))
        in->hook_committed = true;
}

/* hooks.publish: from mapper_map, under mu, so only queued here. */
static int
ingest_hook_publish(void *arg, const char *topic, const void *payload, size_t len)
{
    struct ingest *in = arg;
    struct ingest_pub *p;

    if (in->noutbox == INGEST_OUTBOX_MAX)
        return -ENOBUFS;
    p = &in->outbox[in->noutbox];
    p->topic = strdup(topic);
    p->payload = malloc(len > 0 ? len : 1);
    if (p->topic == NULL || p->payload == NULL) {
        free(p->topic);
        free(p->payload);
        return -ENOMEM;
    }
    memcpy(p->payload, payload, len);
    p->len = len;
    in->noutbox++;
    return 0;
}

/* Sends and frees what the codecs queued. Without mu (the lock rule on top). */
static void
ingest_send_queued(struct ingest *in, struct ingest_pub *q, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        MQTTAsync_message msg = MQTTAsync_message_initializer;
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        int rc;

        msg.payload = q[i].payload;
        msg.payloadlen = (int)q[i].len;
        msg.qos = 0;
        msg.retained = 0;
        rc = MQTTAsync_sendMessage(in->client, q[i].topic, &msg, &ro);
        if (rc != MQTTASYNC_SUCCESS)
            log_limited(&in->lim_publish, INGEST_LOG_EVERY_MS, LOG_WARN, COMP,
                        "publish to %s failed: %s", q[i].topic, ingest_mqtt_err(rc));
        else
            log_limited(&in->lim_publish, INGEST_LOG_EVERY_MS, LOG_INFO, COMP,
                        "published %s (qos 0)", q[i].topic);
        free(q[i].topic);
        free(q[i].payload);
    }
}

static enum metrics_dead
ingest_dead_reason(const struct record *rec)
{
    struct record_header h;

    if (record_hdrs_find(rec->hdrs, rec->hdrs_len, "error.stage", &h) && h.value_len == 6
        && memcmp(h.value, "decode", 6) == 0)
        return DEAD_DECODE;
    return DEAD_ROUTE;
}

/* Topics reach 64 KiB; a log line shows at most the first 200 bytes of one. */
static int
log_topic_len(const struct mapper_msg *msg)
{
    return msg->topic_len > 200 ? 200 : (int)msg->topic_len;
}

static int
ingest_on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    struct ingest *in = ctx;
    struct record_header props[INGEST_MAX_USER_PROPS];
    struct ingest_pub outbox[INGEST_OUTBOX_MAX];
    size_t noutbox;
    struct mapper_msg msg;
    struct record rec;
    struct err e;
    size_t nprops = 0;
    int64_t retry_ms = INGEST_RETRY_MIN_MS;
    unsigned attempt = 0;
    bool commit = m->qos > 0, notify = false, wake_flusher = false, agg_failed;
    int rc;

    memset(&msg, 0, sizeof(msg));
    msg.topic = topic;
    msg.topic_len = topic_len > 0 ? (size_t)topic_len : strlen(topic);
    msg.payload = m->payload;
    msg.payload_len = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
    msg.qos = m->qos;
    msg.retained = m->retained != 0;
    msg.arrival_ms = clock_wall_ms();
    for (int i = 0; i < m->properties.count && nprops < INGEST_MAX_USER_PROPS; i++) {
        const MQTTProperty *p = &m->properties.array[i];
        if (p->identifier != MQTTPROPERTY_CODE_USER_PROPERTY)
            continue;
        props[nprops].name = p->value.data.data;
        props[nprops].name_len = (size_t)p->value.data.len;
        props[nprops].value = p->value.value.data;
        props[nprops].value_len = (size_t)p->value.value.len;
        nprops++;
    }
    msg.user_props = nprops > 0 ? props : NULL;
    msg.nuser_props = nprops;

    pthread_mutex_lock(&in->mu);
    in->in_cb = true;
    for (;;) {
        /* Mapped again on every attempt: while we slept without mu, a reload may have
         * freed the config that rec's pointers borrowed from. */
        err_clear(&e);
        rc = mapper_map(in->mp, in->cfg, &msg, &rec, &e);
        agg_failed = false;
        if (rc == MAPPER_NO_ROUTE) {
            metrics_add(&metrics.dropped[DROP_NO_ROUTE], 1);
            if (log_enabled(LOG_DEBUG))
                log_limited(&in->lim_noroute, 1000, LOG_DEBUG, COMP,
                            "no route for %.*s: dropped", log_topic_len(&msg), msg.topic);
            break;
        }
        if (rc == MAPPER_FILTERED) {
            /* Processed, by the route's own rule: acknowledged, nothing to spool. */
            metrics_add(&metrics.filtered[metrics_route_slot(rec.route)], 1);
            break;
        }
        if (rc == MAPPER_SUPPRESSED) {
            metrics_add(&metrics.deadband_suppressed[metrics_route_slot(rec.route)], 1);
            break;
        }
        if (rc == MAPPER_LATE) {
            metrics_add(&metrics.aggregate_late[metrics_route_slot(rec.route)], 1);
            break;
        }
        if (rc == MAPPER_AGGREGATED) {
            /* The accumulator and any windows this message closed, in one committed
             * transaction: acknowledged only once all of it is in the spool. */
            const struct mapper_aggregate_info *ag = mapper_aggregate(in->mp);
            err_clear(&e);
            rc = spool_append_all(in->sp, ag->recs, ag->nrecs, ag->puts, ag->nputs, &e);
            if (rc == 0) {
                mapper_state_committed(in->mp);
                metrics_add(&metrics.aggregate_windows[metrics_route_slot(rec.route)],
                            ag->nrecs);
                metrics_add(&metrics.spool_appends, ag->nrecs);
                metrics_set_spool_state(SPOOL_STATE_OK);
                metrics_add(&metrics.mqtt_messages[metrics_route_slot(rec.route)], 1);
                notify = true;
                break;
            }
            mapper_state_reset(in->mp);   /* reloads what the spool committed */
            metrics_add(&metrics.spool_errors, 1);
            metrics_set_spool_state(rc == -ENOSPC ? SPOOL_STATE_FULL : SPOOL_STATE_FAILING);
            agg_failed = true;
        }
        if (rc == MAPPER_DEAD_LETTER && attempt == 0)
            log_limited(&in->lim_dead, INGEST_LOG_EVERY_MS, LOG_WARN, COMP,
                        "%.*s: to the dead letter topic: %s", log_topic_len(&msg), msg.topic,
                        e.msg);
        if (agg_failed) {
            /* e says why; retried below like any append */
        } else if (rc >= 0) {
            size_t before = spool_pending(in->sp), after;
            err_clear(&e);
            const struct spool_state_put *puts;
            size_t nputs = mapper_state_puts(in->mp, &puts);
            rc = spool_append_with_state(in->sp, &rec, commit, puts, nputs, &e);
            if (rc < 0)
                mapper_state_reset(in->mp);   /* a batch may have been rolled back */
            if (rc == 0) {
                mapper_state_committed(in->mp);
                if (mapper_aggregate(in->mp)->late)
                    metrics_add(&metrics.aggregate_late[metrics_route_slot(rec.route)], 1);
                if (mapper_deadband(in->mp)->verdict == MAPPER_DEADBAND_NOT_NUMERIC)
                    metrics_add(&metrics.deadband_not_numeric[metrics_route_slot(rec.route)],
                                1);
                metrics_add(&metrics.spool_appends, 1);
                metrics_set_spool_state(SPOOL_STATE_OK);
                /* Every routed message counts for its route; dead letters also
                 * count by reason. */
                metrics_add(&metrics.mqtt_messages[metrics_route_slot(rec.route)], 1);
                if (rec.dead_letter)
                    metrics_add(&metrics.dead_letter[ingest_dead_reason(&rec)], 1);
                /* Nothing pending: the row is in the database, the forwarder may
                 * claim it. Otherwise it waits in the batch (QoS 0) or the intake
                 * journal (QoS 1/2, durable already) for the flusher's commit. */
                if ((after = spool_pending(in->sp)) == 0 || spool_offered(in->sp))
                    notify = true;         /* on the live path it is the forwarder's now */
                if (after >= INGEST_QOS0_BATCH_ROWS && !spool_holding(in->sp) &&
                    ingest_commit_batch_locked(in))
                    notify = true;
                else if (after > 0 && before == 0)
                    wake_flusher = true;   /* a batch began: the flusher times it */
                break;
            }
            metrics_add(&metrics.spool_errors, 1);
            metrics_set_spool_state(rc == -ENOSPC ? SPOOL_STATE_FULL : SPOOL_STATE_FAILING);
        } else {
            err_set(&e, rc, "mapping %.*s: out of memory", (int)msg.topic_len, msg.topic);
        }
        if (!commit && atomic_load(&in->stopping)) {
            log_limited(&in->lim_spool, INGEST_LOG_EVERY_MS, LOG_ERROR, COMP,
                        "spool append failed while stopping; QoS 0 message dropped: %s",
                        e.msg);
            break;
        }
        /* Never acknowledge what is not committed: keep the message (and Paho's
         * receive thread) here until the spool takes it. */
        in->stalled = true;
        if (rc == -ENOSPC)
            log_limited(&in->lim_spool, INGEST_LOG_EVERY_MS, LOG_WARN, COMP,
                        "spool full: holding the message unacknowledged until there is room "
                        "(the broker queues the rest): %s", e.msg);
        else
            log_limited(&in->lim_spool, INGEST_LOG_EVERY_MS, LOG_ERROR, COMP,
                        "spool append failed, retrying (the message stays unacknowledged): %s",
                        e.msg);
        struct timespec ts;
        ingest_abstime(&ts, clock_mono_ms() + retry_ms);
        pthread_cond_timedwait(&in->changed, &in->mu, &ts);
        retry_ms = retry_ms * 2 < INGEST_RETRY_MAX_MS ? retry_ms * 2 : INGEST_RETRY_MAX_MS;
        attempt++;
    }
    in->in_cb = false;
    in->stalled = false;
    if (in->hook_committed) {
        in->hook_committed = false;
        notify = true;
    }
    noutbox = in->noutbox;
    memcpy(outbox, in->outbox, noutbox * sizeof(outbox[0]));
    in->noutbox = 0;
    if (wake_flusher)
        pthread_cond_signal(&in->wake);
    pthread_cond_broadcast(&in->changed);
    pthread_mutex_unlock(&in->mu);

    if (notify && in->notify != NULL)
        in->notify(in->notify_arg);
    ingest_send_queued(in, outbox, noutbox);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

/* ---- the flusher / reconnect timer thread ---------------------------------------- */

/* Under mu: closes the aggregate windows whose keys went quiet for a window of wall
 * time, each record with the delete of its accumulator in one transaction. Returns
 * true when records were committed (the caller notifies after dropping mu). */
static bool
ingest_aggregate_expire_locked(struct ingest *in)
{
    const struct mapper_aggregate_info *ag;
    struct err e = { 0 };
    int rc;

    if (in->cfg == NULL)
        return false;
    if ((rc = mapper_aggregate_expire(in->mp, in->cfg, clock_wall_ms(), &ag)) < 0) {
        log_limited(&in->lim_spool, INGEST_LOG_EVERY_MS, LOG_ERROR, COMP,
                    "aggregate: closing quiet windows: %s (retrying in a second)",
                    strerror(-rc));
        return false;
    }
    if (ag->nrecs == 0)
        return false;
    if (spool_append_all(in->sp, ag->recs, ag->nrecs, ag->puts, ag->nputs, &e) < 0) {
        mapper_state_reset(in->mp);   /* the windows stay open in the spool */
        metrics_add(&metrics.spool_errors, 1);
        log_limited(&in->lim_spool, INGEST_LOG_EVERY_MS, LOG_ERROR, COMP,
                    "aggregate: closing quiet windows failed (retrying in a second): %s",
                    e.msg);
        return false;
    }
    for (size_t i = 0; i < ag->nrecs; i++)
        metrics_add(&metrics.aggregate_windows[metrics_route_slot(ag->recs[i].route)], 1);
    metrics_add(&metrics.spool_appends, ag->nrecs);
    return true;
}

static void *
ingest_thread(void *arg)
{
    struct ingest *in = arg;
    struct timespec ts;
    int64_t retain_at = 0, agg_at = 0, held_until = 0;

    pthread_setname_np(pthread_self(), "sluice-flusher");   /* top -H, perf */
    pthread_mutex_lock(&in->mu);
    while (!in->thread_stop) {
        int64_t now = clock_mono_ms(), deadline = now + 1000;

        /* Retention by age, and the aggregate drop log lines: once a second, on the
         * ingest handle (spool_retain skips while a QoS 0 batch is open). */
        if (now >= retain_at) {
            struct err e = { 0 };
            retain_at = now + INGEST_RETAIN_MS;
            if (spool_retain(in->sp, clock_wall_ms(), &e) < 0)
                log_limited(&in->lim_spool, INGEST_LOG_EVERY_MS, LOG_ERROR, COMP,
                            "spool retention failed (retrying in a second): %s", e.msg);
        }
        if (retain_at < deadline)
            deadline = retain_at;
        if (now >= agg_at) {
            agg_at = now + INGEST_RETAIN_MS;
            if (ingest_aggregate_expire_locked(in) && in->notify != NULL) {
                pthread_mutex_unlock(&in->mu);
                in->notify(in->notify_arg);
                pthread_mutex_lock(&in->mu);
                continue;
            }
        }
        if (agg_at < deadline)
            deadline = agg_at;

        if (spool_pending(in->sp) > 0) {
            int64_t due = spool_pending_since_ms(in->sp) + INGEST_QOS0_BATCH_MS;
            if (due < held_until)
                due = held_until;
            if (due <= now) {
                bool held, committed = ingest_commit_locked(in, true, &held);
                if (committed && in->notify != NULL) {
                    pthread_mutex_unlock(&in->mu);
                    in->notify(in->notify_arg);
                    pthread_mutex_lock(&in->mu);
                }
                if (held) {
                    /* The merge waits for Kafka; QoS 0 frames still reach the file
                     * every INGEST_QOS0_BATCH_MS. */
                    held_until = now + INGEST_QOS0_BATCH_MS;
                    continue;
                }
                if (committed || spool_pending(in->sp) == 0)
                    continue;
                due = now + 100;   /* a failed commit kept its batch: do not spin */
            }
            if (due < deadline)
                deadline = due;
        }
        if (in->state == CONN_WAIT && !atomic_load(&in->stopping)) {
            if (in->retry_at <= now) {
                in->state = CONN_CONNECTING;
                pthread_mutex_unlock(&in->mu);
                ingest_connect_or_retry(in);
                pthread_mutex_lock(&in->mu);
                continue;
            }
            if (in->retry_at < deadline)
                deadline = in->retry_at;
        }
        ingest_abstime(&ts, deadline);
        pthread_cond_timedwait(&in->wake, &in->mu, &ts);
    }
    pthread_mutex_unlock(&in->mu);
    return NULL;
}

/* ---- public API ---------------------------------------------------------------- */

static int
ingest_copy_settings(struct ingest *in, const struct config *cfg)
{
    const struct config_mqtt *mq = &cfg->mqtt;
    int64_t exp_s = mq->session_expiry_ms / 1000;
    int64_t ka_s = mq->keepalive_ms / 1000;

    in->url = ingest_strdup(mq->url != NULL ? mq->url : "tcp://127.0.0.1:1883");
    in->client_id = ingest_strdup(mq->client_id != NULL ? mq->client_id : "sluice");
    in->username = ingest_strdup(mq->username);
    in->password = ingest_strdup(mq->password);
    in->ca_file = ingest_strdup(mq->tls_ca_file);
    in->cert_file = ingest_strdup(mq->tls_cert_file);
    in->key_file = ingest_strdup(mq->tls_key_file);
    if (in->url == NULL || in->client_id == NULL
        || (mq->username != NULL && in->username == NULL)
        || (mq->password != NULL && in->password == NULL)
        || (mq->tls_ca_file != NULL && in->ca_file == NULL)
        || (mq->tls_cert_file != NULL && in->cert_file == NULL)
        || (mq->tls_key_file != NULL && in->key_file == NULL))
        return -ENOMEM;
    in->tls = strncasecmp(in->url, "ssl://", 6) == 0 || strncasecmp(in->url, "mqtts://", 8) == 0
              || strncasecmp(in->url, "wss://", 6) == 0;
    in->tls_verify = mq->tls_verify;
    in->clean_start = mq->clean_start;
    in->version = mq->version == 4 ? MQTTVERSION_3_1_1 : MQTTVERSION_5;
    in->keepalive_s = ka_s <= 0 ? 0 : ka_s > 65535 ? 65535 : (int)ka_s;
    in->session_expiry_s = exp_s <= 0 ? 0 : exp_s >= (int64_t)UINT32_MAX ? UINT32_MAX
                                                                        : (uint32_t)exp_s;
    return 0;
}

int
ingest_create(struct ingest **out, const struct config *cfg, struct spool *sp,
              ingest_notify_fn notify, void *notify_arg, struct err *err)
{
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
    pthread_condattr_t ca;
    struct ingest *in;
    int rc;

    *out = NULL;
    if ((in = calloc(1, sizeof(*in))) == NULL)
        return err_set(err, -ENOMEM, "ingest: out of memory");
    pthread_mutex_init(&in->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&in->wake, &ca);
    pthread_cond_init(&in->changed, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&in->stopping, false);
    atomic_init(&in->connected, 0);
    in->cfg = cfg;
    in->notify = notify;
    in->notify_arg = notify_arg;
    in->backoff_ms = INGEST_BACKOFF_MIN_MS;
    in->rng = (uint64_t)clock_wall_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid()
              ^ (uint64_t)(uintptr_t)in;
    if (in->rng == 0)
        in->rng = 1;

    if ((rc = ingest_copy_settings(in, cfg)) < 0) {
        err_set(err, rc, "ingest: out of memory");
        goto fail;
    }
    if ((rc = ingest_filters_build(&in->subs, cfg)) < 0) {
        err_set(err, rc, "ingest: building the subscription list: %s", strerror(-rc));
        goto fail;
    }
    if ((rc = mapper_create(&in->mp)) < 0) {
        err_set(err, rc, "ingest: creating the mapper: %s", strerror(-rc));
        goto fail;
    }
    in->hooks = (struct codec_hooks){ in, ingest_hook_publish, ingest_hook_before_write };
    mapper_set_hooks(in->mp, &in->hooks);
    co.MQTTVersion = in->version;
    rc = MQTTAsync_createWithOptions(&in->client, in->url, in->client_id,
                                     MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        in->client = NULL;
        rc = err_set(err, -EINVAL, "ingest: mqtt client for %s: %s", in->url,
                     ingest_mqtt_err(rc));
        goto fail;
    }
    rc = MQTTAsync_setCallbacks(in->client, in, ingest_on_connection_lost, ingest_on_message,
                                NULL);
    if (rc == MQTTASYNC_SUCCESS && in->version == MQTTVERSION_5)
        rc = MQTTAsync_setDisconnected(in->client, in, ingest_on_disconnected);
    if (rc != MQTTASYNC_SUCCESS) {
        rc = err_set(err, -EINVAL, "ingest: mqtt callbacks: %s", ingest_mqtt_err(rc));
        goto fail;
    }
    if (cfg->mqtt.qos == 2 && in->version != MQTTVERSION_5)
        log_warn(COMP, "mqtt.qos 2 over MQTT 3.1.1: subscribing at qos 1 (Paho acknowledges "
                       "3.1.1 QoS 2 before handing the message over; see ingest.c)");
    in->sp = sp;   /* taken only on success: see the fail path */
    *out = in;
    return 0;
fail:
    in->sp = NULL;
    ingest_destroy(in);
    return rc;
}

int
ingest_start(struct ingest *in, struct err *err)
{
    int rc;

    if (in->started)
        return 0;
    pthread_mutex_lock(&in->mu);
    in->state = CONN_CONNECTING;
    pthread_mutex_unlock(&in->mu);
    if ((rc = pthread_create(&in->thread, NULL, ingest_thread, in)) != 0) {
        pthread_mutex_lock(&in->mu);
        in->state = CONN_IDLE;
        pthread_mutex_unlock(&in->mu);
        return err_set(err, -rc, "ingest: starting the flusher thread: %s", strerror(rc));
    }
    in->thread_started = true;
    in->started = true;
    log_info(COMP, "connecting to %s as %s (MQTT %s, %s)", in->url, in->client_id,
             in->version == MQTTVERSION_5 ? "5" : "3.1.1",
             in->clean_start ? "clean start" : "persistent session");
    /* A broker that is down at start is not an error: we keep retrying. */
    ingest_connect_or_retry(in);
    return 0;
}

static void
ingest_on_disc_ok(void *ctx, MQTTAsync_successData *resp)
{
    struct ingest *in = ctx;

    (void)resp;
    pthread_mutex_lock(&in->mu);
    in->disc_done = true;
    pthread_cond_broadcast(&in->changed);
    pthread_mutex_unlock(&in->mu);
}

static void
ingest_on_disc_fail(void *ctx, MQTTAsync_failureData *resp)
{
    (void)resp;
    ingest_on_disc_ok(ctx, NULL);
}

static void
ingest_on_disc_ok5(void *ctx, MQTTAsync_successData5 *resp)
{
    (void)resp;
    ingest_on_disc_ok(ctx, NULL);
}

static void
ingest_on_disc_fail5(void *ctx, MQTTAsync_failureData5 *resp)
{
    (void)resp;
    ingest_on_disc_ok(ctx, NULL);
}

void
ingest_stop(struct ingest *in)
{
    MQTTAsync_disconnectOptions d5 = MQTTAsync_disconnectOptions_initializer5;
    MQTTAsync_disconnectOptions d3 = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnectOptions *d = in != NULL && in->version == MQTTVERSION_5 ? &d5 : &d3;
    struct timespec ts;
    bool stalled, notify;
    int rc;

    if (in == NULL || !in->started || in->stopped)
        return;
    in->stopped = true;
    atomic_store(&in->stopping, true);
    pthread_mutex_lock(&in->mu);
    in->state = CONN_STOPPED;
    in->disc_done = false;
    stalled = in->stalled;
    pthread_cond_broadcast(&in->changed);
    pthread_cond_signal(&in->wake);
    pthread_mutex_unlock(&in->mu);

    if (stalled) {
        /* Paho's mutex is held by the callback that is retrying a failed append, so
         * MQTTAsync_disconnect would block; the broker keeps the message. */
        log_error(COMP, "stopping while the spool fails: a message stays unacknowledged "
                        "(the broker redelivers it after the restart)");
    } else {
        d->timeout = INGEST_DISCONNECT_MS;
        d->context = in;
        if (in->version == MQTTVERSION_5) {
            d->onSuccess5 = ingest_on_disc_ok5;
            d->onFailure5 = ingest_on_disc_fail5;
        } else {
            d->onSuccess = ingest_on_disc_ok;
            d->onFailure = ingest_on_disc_fail;
        }
        rc = MQTTAsync_disconnect(in->client, d);
        pthread_mutex_lock(&in->mu);
        if (rc == MQTTASYNC_SUCCESS) {
            ingest_abstime(&ts, clock_mono_ms() + INGEST_STOP_WAIT_MS);
            while (!in->disc_done)
                if (pthread_cond_timedwait(&in->changed, &in->mu, &ts) == ETIMEDOUT)
                    break;
            if (!in->disc_done)
                log_warn(COMP, "disconnect did not complete within %d ms", INGEST_STOP_WAIT_MS);
        }
        pthread_mutex_unlock(&in->mu);
    }
    if (atomic_exchange(&in->connected, 0) && !stalled)
        log_info(COMP, "disconnected from %s", in->url);
    atomic_store_explicit(&metrics.mqtt_connected, 0, memory_order_relaxed);

    pthread_mutex_lock(&in->mu);
    in->thread_stop = true;
    pthread_cond_signal(&in->wake);
    notify = ingest_commit_batch_locked(in);
    pthread_mutex_unlock(&in->mu);
    if (notify && in->notify != NULL)
        in->notify(in->notify_arg);
    if (in->thread_started) {
        pthread_join(in->thread, NULL);
        in->thread_started = false;
    }
}

void
ingest_destroy(struct ingest *in)
{
    struct timespec ts;
    bool stuck;

    if (in == NULL)
        return;
    ingest_stop(in);
    if (in->client != NULL) {
        pthread_mutex_lock(&in->mu);
        ingest_abstime(&ts, clock_mono_ms() + INGEST_DESTROY_WAIT_MS);
        while (in->in_cb && in->stalled)
            if (pthread_cond_timedwait(&in->changed, &in->mu, &ts) == ETIMEDOUT)
                break;
        stuck = in->in_cb && in->stalled;
        pthread_mutex_unlock(&in->mu);
        if (stuck) {
            /* MQTTAsync_destroy would wait forever for the callback, and freeing what it
             * uses would be worse: leave everything to the process exit. */
            log_error(COMP, "spool still failing at exit: leaving one message unacknowledged");
            return;
        }
        MQTTAsync_destroy(&in->client);
    }
    if (in->sp != NULL) {
        bool notify;
        /* QoS 0 messages that arrived between stop and destroy. */
        pthread_mutex_lock(&in->mu);
        notify = ingest_commit_batch_locked(in);
        pthread_mutex_unlock(&in->mu);
        if (notify && in->notify != NULL)
            in->notify(in->notify_arg);
        spool_close(in->sp);
    }
    mapper_destroy(in->mp);
    for (size_t i = 0; i < in->noutbox; i++) {
        free(in->outbox[i].topic);
        free(in->outbox[i].payload);
    }
    ingest_filters_fini(&in->subs);
    ingest_filters_fini(&in->unsubs);
    if (in->password != NULL) {
        explicit_bzero(in->password, strlen(in->password));
        free(in->password);
    }
    free(in->url);
    free(in->client_id);
    free(in->username);
    free(in->ca_file);
    free(in->cert_file);
    free(in->key_file);
    pthread_cond_destroy(&in->wake);
    pthread_cond_destroy(&in->changed);
    pthread_mutex_destroy(&in->mu);
    free(in);
}

static bool
ingest_str_differs(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a != b;
    return strcmp(a, b) != 0;
}

void
ingest_set_config(struct ingest *in, const struct config *cfg)
{
    struct ingest_filters next = { 0 }, added = { 0 }, removed = { 0 };
    const struct config_mqtt *a, *b;
    bool up;
    int qos, rc;

    if ((rc = ingest_filters_build(&next, cfg)) < 0) {
        /* Keep the old filters; routing still switches to the new config. */
        log_error(COMP, "reload: building the subscription list: %s; subscriptions unchanged",
                  strerror(-rc));
    }

    pthread_mutex_lock(&in->mu);
    a = &in->cfg->mqtt;
    b = &cfg->mqtt;
    if (ingest_str_differs(a->url, b->url) || ingest_str_differs(a->client_id, b->client_id)
        || ingest_str_differs(a->username, b->username)
        || ingest_str_differs(a->password, b->password) || a->version != b->version
        || a->clean_start != b->clean_start || a->keepalive_ms != b->keepalive_ms
        || a->session_expiry_ms != b->session_expiry_ms
        || ingest_str_differs(a->tls_ca_file, b->tls_ca_file)
        || ingest_str_differs(a->tls_cert_file, b->tls_cert_file)
        || ingest_str_differs(a->tls_key_file, b->tls_key_file) || a->tls_verify != b->tls_verify)
        log_warn(COMP, "reload: mqtt connection settings changed; they take effect at the "
                       "next restart");
    in->cfg = cfg;
    if (spool_set_policy(in->sp, cfg) < 0)
        log_error(COMP, "reload: out of memory; spool retention policy unchanged");
    qos = ingest_sub_qos(in, cfg);
    if (rc == 0) {
        bool fail = false;
        for (size_t i = 0; i < next.n && !fail; i++)
            if (!ingest_filters_has(&in->subs, next.v[i]))
                fail = ingest_filters_add(&added, next.v[i]) < 0;
        for (size_t i = 0; i < in->subs.n && !fail; i++)
            if (!ingest_filters_has(&next, in->subs.v[i]))
                fail = ingest_filters_add(&removed, in->subs.v[i]) < 0;
        if (fail) {
            log_error(COMP, "reload: out of memory; subscriptions unchanged");
            ingest_filters_fini(&added);
            ingest_filters_fini(&removed);
        } else {
            ingest_filters_fini(&in->subs);
            in->subs = next;
            next.v = NULL;
            next.n = 0;
            if (added.n > 0 || removed.n > 0)
                in->subs_dirty = true;
        }
    }
    up = in->state == CONN_UP;
    if (!up) {
        /* Applied at the next connect: everything is resubscribed then; removed
         * filters are unsubscribed (the persistent session still has them). */
        for (size_t i = 0; i < removed.n; i++)
            if (!ingest_filters_has(&in->unsubs, removed.v[i]))
                (void)ingest_filters_add(&in->unsubs, removed.v[i]);
        for (size_t i = 0; i < added.n; i++)
            ingest_filters_remove(&in->unsubs, added.v[i]);
    }
    /* subs_dirty stays set while up too: should this SUBSCRIBE be lost to a
     * connection drop, an MQTT 3.1.1 reconnect into the present session still sends it. */
    pthread_mutex_unlock(&in->mu);
    ingest_filters_fini(&next);

    if (added.n > 0 || removed.n > 0)
        log_info(COMP, "reload: %zu new subscription(s), %zu removed%s", added.n, removed.n,
                 up ? "" : " (applied at the next connect)");
    if (up) {
        ingest_unsubscribe(in, removed.v, removed.n);
        ingest_subscribe(in, added.v, added.n, qos);
    }
    ingest_filters_fini(&added);
    ingest_filters_fini(&removed);
}

bool
ingest_is_connected(const struct ingest *in)
{
    return in != NULL && atomic_load(&in->connected) != 0;
}
