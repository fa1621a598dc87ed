/* bare_sub.c - the baseline for bench/pipeline.py: a minimal Paho MQTTAsync
 * subscriber that does nothing with a message but count it.
 *
 * Usage: bare_sub URL TOPIC QOS COUNT [TIMEOUT_S]
 *
 * Prints "subscribed" once the broker granted the subscription (the driver starts
 * publishing after that line), then, when COUNT messages arrived or TIMEOUT_S
 * (default 120) passed, one line:
 *
 *   received=N first_to_last_s=S rate=R
 *
 * where rate is N / S between the first and the last message. The driver times the
 * end-to-end rate itself (publish start -> this line). Exit 0 when COUNT arrived,
 * 1 on timeout or connection trouble, 64 on usage. */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t  cv = PTHREAD_COND_INITIALIZER;
static uint64_t        received, want;
static int64_t         first_ns, last_ns;
static int             state;          /* 0 connecting, 1 subscribed, -1 failed */
static const char     *topic;
static int             qos;
static MQTTAsync       client;

static int64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
set_state(int s)
{
    pthread_mutex_lock(&mu);
    state = s;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int
on_message(void *ctx, char *t, int tlen, MQTTAsync_message *m)
{
    int64_t now = mono_ns();

    (void)ctx; (void)tlen;
    pthread_mutex_lock(&mu);
    if (received == 0)
        first_ns = now;
    last_ns = now;
    if (++received >= want)
        pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(t);
    return 1;
}

static void
on_lost(void *ctx, char *cause)
{
    (void)ctx;
    fprintf(stderr, "bare_sub: connection lost: %s\n", cause != NULL ? cause : "?");
    set_state(-1);
}

static void
on_sub_ok(void *ctx, MQTTAsync_successData *r)
{
    (void)ctx;
    if (r != NULL && r->alt.qos == 0x80) {
        fprintf(stderr, "bare_sub: subscription refused\n");
        set_state(-1);
        return;
    }
    set_state(1);
}

static void
on_fail(void *ctx, MQTTAsync_failureData *r)
{
    (void)ctx;
    fprintf(stderr, "bare_sub: %s failed: %s\n", (const char *)ctx,
            r != NULL && r->message != NULL ? r->message : "?");
    set_state(-1);
}

static void
on_conn_ok(void *ctx, MQTTAsync_successData *r)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;

    (void)ctx; (void)r;
    ro.onSuccess = on_sub_ok;
    ro.onFailure = on_fail;
    ro.context = (void *)"subscribe";
    if (MQTTAsync_subscribe(client, topic, qos, &ro) != MQTTASYNC_SUCCESS)
        set_state(-1);
}

int
main(int argc, char **argv)
{
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    char id[64];
    double timeout_s = 120;
    struct timespec dl;
    int rc, ok;

    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: bare_sub URL TOPIC QOS COUNT [TIMEOUT_S]\n");
        return 64;
    }
    topic = argv[2];
    qos = atoi(argv[3]);
    want = strtoull(argv[4], NULL, 10);
    if (argc == 6)
        timeout_s = strtod(argv[5], NULL);
    if (want == 0 || qos < 0 || qos > 2 || timeout_s <= 0) {
        fprintf(stderr, "usage: bare_sub URL TOPIC QOS COUNT [TIMEOUT_S]\n");
        return 64;
    }

    snprintf(id, sizeof(id), "bare-sub-%ld", (long)getpid());
    if ((rc = MQTTAsync_create(&client, argv[1], id, MQTTCLIENT_PERSISTENCE_NONE, NULL))
            != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "bare_sub: create: %s\n", MQTTAsync_strerror(rc));
        return 1;
    }
    MQTTAsync_setCallbacks(client, NULL, on_lost, on_message, NULL);
    co.keepAliveInterval = 30;
    co.cleansession = 1;
    co.onSuccess = on_conn_ok;
    co.onFailure = on_fail;
    co.context = (void *)"connect";
    if ((rc = MQTTAsync_connect(client, &co)) != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "bare_sub: connect: %s\n", MQTTAsync_strerror(rc));
        return 1;
    }

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)timeout_s;
    dl.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }

    pthread_mutex_lock(&mu);
    while (state == 0 && pthread_cond_timedwait(&cv, &mu, &dl) == 0)
        ;
    if (state == 1) {
        printf("subscribed\n");
        fflush(stdout);
    }
    while (state == 1 && received < want && pthread_cond_timedwait(&cv, &mu, &dl) == 0)
        ;
    ok = received >= want;
    double s = received > 1 ? (double)(last_ns - first_ns) / 1e9 : 0.0;
    printf("received=%" PRIu64 " first_to_last_s=%.3f rate=%.0f\n", received, s,
           s > 0 ? (double)received / s : 0.0);
    fflush(stdout);
    pthread_mutex_unlock(&mu);

    d.timeout = 1000;
    MQTTAsync_disconnect(client, &d);
    usleep(20000);
    MQTTAsync_destroy(&client);
    return ok ? 0 : 1;
}
