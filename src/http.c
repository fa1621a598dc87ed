/* http.c - /metrics, /healthz and /readyz on libmicrohttpd; the `sluice health` client.
 *
 * Threads. libmicrohttpd runs one internal polling thread (no thread per connection),
 * so requests are served one at a time and everything marked "server thread" below
 * needs no lock. That thread owns nothing the bridge uses. It reads:
 *   - struct metrics: relaxed atomics, bumped by the other threads;
 *   - the route and lane names: copies made by http_start / http_set_config on the
 *     main thread and swapped under mu, so a reload can free its old config at once;
 *   - its own read-only spool handle (a third SQLite connection, WAL lets it read
 *     beside the writers) for the spool gauges.
 *
 * Why a handle of our own for the spool gauges, queried at scrape time, rather than
 * the forwarder publishing them: spool_stats scans every row (count, sum of sizes,
 * oldest per lane), which is O(records): nothing on a healthy spool, but seconds on a
 * full 2 GiB one. Run every second on the forwarder thread, that scan would stall the
 * drain exactly when a backlog makes the drain matter. Here it costs only the scrape
 * itself, and the result is cached for max(1 s, 20 x the last query's duration), at
 * most a minute, so the scan never takes more than about 5% of one core however
 * often the endpoint is scraped. The handle is opened at the first scrape (the spool
 * file may not exist yet when the server starts) and reopened after an error.
 *
 * The drain ETA divides the records waiting by the delivery rate over the last few
 * minutes, measured from samples of the delivered counter taken at scrapes (at most
 * one a second): -1 until two samples a second apart exist, or while nothing is
 * delivered although records wait.
 *
 * Labels stay bounded: routes (names from the current config, by index as struct
 * metrics counts them), lanes (config and spool), and fixed reasons. Label values are
 * escaped as the exposition format requires (backslash, double quote, newline).
 *
 * Fail fast: http_start binds the socket itself so that a port in use is reported as
 * such ("address already in use") and main exits 1 instead of running unobservable. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef SLUICE_HAVE_MICROHTTPD
#include <microhttpd.h>
#endif

#include "sluice/buf.h"
#include "sluice/clock.h"
#include "sluice/config.h"
#include "sluice/err.h"
#include "sluice/http.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/spool.h"
#include "sluice_version.h"

#define HTTP_GET_MAX_BODY   65536   /* the client keeps at most this much */

/* ---- listen addresses (server and client) ------------------------------------ */

/* Splits "host:port" / "[v6]:port" into host (brackets removed) and port. */
static int
http_split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon, *h = s, *hend;

    if (s[0] == '[') {
        if ((hend = strchr(s, ']')) == NULL || hend[1] != ':')
            return -EINVAL;
        h = s + 1;
        colon = hend + 1;
    } else {
        if ((colon = strrchr(s, ':')) == NULL)
            return -EINVAL;
        hend = colon;
    }
    if ((size_t)(hend - h) >= hostlen || strlen(colon + 1) >= portlen || colon[1] == '\0')
        return -EINVAL;
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

int
http_local_url(const char *listen, const char *path, char *out, size_t outlen)
{
    char host[256], port[16];
    int n;

    if (listen == NULL || listen[0] == '\0' ||
        http_split_hostport(listen, host, sizeof(host), port, sizeof(port)) < 0 ||
        strtol(port, NULL, 10) == 0)
        return -EINVAL;
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
        strcpy(host, "127.0.0.1");
    else if (strcmp(host, "::") == 0)
        strcpy(host, "::1");
    n = snprintf(out, outlen, strchr(host, ':') != NULL ? "http://[%s]:%s%s" : "http://%s:%s%s",
                 host, port, path);
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

/* ---- the client --------------------------------------------------------------- */

/* Connects to one address within the deadline: 0 and *fd, or -errno. */
static int
http_connect_one(const struct addrinfo *ai, int64_t deadline, int *fd)
{
    struct pollfd pfd;
    socklen_t len = sizeof(int);
    int s, soerr = 0, left;

    if ((s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol)) < 0)
        return -errno;
    if (connect(s, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            soerr = errno;
            close(s);
            return -soerr;
        }
        pfd = (struct pollfd){ .fd = s, .events = POLLOUT };
        left = (int)(deadline - clock_mono_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0) {
            close(s);
            return -ETIMEDOUT;
        }
        if (getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr != 0) {
            close(s);
            return soerr != 0 ? -soerr : -EIO;
        }
    }
    *fd = s;
    return 0;
}

/* Writes all of p before the deadline. */
static int
http_send_all(int fd, const char *p, size_t n, int64_t deadline)
{
    struct pollfd pfd = { .fd = fd, .events = POLLOUT };
    ssize_t w;
    int left;

    while (n > 0) {
        if ((w = send(fd, p, n, MSG_NOSIGNAL)) > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        left = (int)(deadline - clock_mono_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            return -ETIMEDOUT;
    }
    return 0;
}

/* Reads until EOF (HTTP/1.0: the server closes) or the cap, before the deadline. */
static int
http_recv_all(int fd, struct buf *in, int64_t deadline)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    char chunk[4096];
    ssize_t r;
    int left;

    for (;;) {
        if ((r = recv(fd, chunk, sizeof(chunk), 0)) > 0) {
            if (in->len < HTTP_GET_MAX_BODY + 4096 && buf_append(in, chunk, (size_t)r) < 0)
                return -ENOMEM;
            continue;
        }
        if (r == 0)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        left = (int)(deadline - clock_mono_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            return -ETIMEDOUT;
    }
}

int
http_get(const char *url, int timeout_ms, int *status, struct buf *body, struct err *err)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res = NULL, *ai;
    char host[256], port[16] = "80", hostport[300], req[1024];
    const char *p, *path, *hend, *sep;
    int64_t deadline = clock_mono_ms() + timeout_ms;
    struct buf in;
    int rc, fd = -1, n;

    *status = 0;
    if (strncmp(url, "http://", 7) != 0)
        return err_set(err, -EINVAL, "%s: only http:// URLs are supported", url);
    p = url + 7;
    path = strchr(p, '/');
    if (path == NULL)
        path = p + strlen(p);
    n = snprintf(hostport, sizeof(hostport), "%.*s", (int)(path - p), p);
    if (n <= 0 || (size_t)n >= sizeof(hostport))
        return err_set(err, -EINVAL, "%s: no host, or a host name too long", url);
    if (hostport[0] == '[') {
        if ((hend = strchr(hostport, ']')) == NULL)
            return err_set(err, -EINVAL, "%s: unterminated [IPv6 address]", url);
        snprintf(host, sizeof(host), "%.*s", (int)(hend - hostport - 1), hostport + 1);
        sep = hend[1] == ':' ? hend + 1 : NULL;
    } else {
        sep = strrchr(hostport, ':');
        snprintf(host, sizeof(host), "%.*s",
                 (int)(sep != NULL ? (size_t)(sep - hostport) : strlen(hostport)), hostport);
    }
    if (sep != NULL) {
        if (sep[1] == '\0' || strlen(sep + 1) >= sizeof(port) ||
            strspn(sep + 1, "0123456789") != strlen(sep + 1))
            return err_set(err, -EINVAL, "%s: bad port", url);
        strcpy(port, sep + 1);
    }
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
        return err_set(err, -EHOSTUNREACH, "%s: %s", host, gai_strerror(rc));
    rc = -EHOSTUNREACH;
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
        rc = http_connect_one(ai, deadline, &fd);
    freeaddrinfo(res);
    if (fd < 0)
        return err_set(err, rc, "%s: cannot connect: %s", url, strerror(-rc));

    n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: sluice/%s\r\n"
                 "Connection: close\r\n\r\n", path[0] != '\0' ? path : "/", hostport,
                 SLUICE_VERSION);
    if (n < 0 || (size_t)n >= sizeof(req)) {
        close(fd);
        return err_set(err, -EINVAL, "%s: URL too long", url);
    }
    buf_init(&in);
    if ((rc = http_send_all(fd, req, (size_t)n, deadline)) < 0 ||
        (rc = http_recv_all(fd, &in, deadline)) < 0 ||
        (rc = buf_append_str(&in, "", 0)) < 0) {
        close(fd);
        buf_fini(&in);
        return err_set(err, rc, "%s: %s", url, strerror(-rc));
    }
    close(fd);
    if (in.len < 12 || strncmp(in.data, "HTTP/1.", 7) != 0 ||
        sscanf(in.data + 8, " %3d", status) != 1) {
        buf_fini(&in);
        return err_set(err, -EPROTO, "%s: not an HTTP response", url);
    }
    if ((p = strstr(in.data, "\r\n\r\n")) != NULL) {
        size_t blen = in.len - (size_t)(p + 4 - in.data);
        rc = buf_append(body, p + 4, blen < HTTP_GET_MAX_BODY ? blen : HTTP_GET_MAX_BODY);
    }
    buf_fini(&in);
    return rc < 0 ? err_set(err, rc, "%s: out of memory", url) : 0;
}

#ifdef SLUICE_HAVE_MICROHTTPD

/* ---- the server ----------------------------------------------------------------- */

#define HTTP_CONN_LIMIT     32      /* concurrent connections: scrapers and probes only */
#define HTTP_CONN_TIMEOUT_S 10      /* idle connections are closed after this */
#define HTTP_STATS_TTL_MIN  1000    /* ms: spool gauges are cached at least this long */
#define HTTP_STATS_TTL_MAX  60000   /* ms: ... and at most this long */
#define HTTP_STATS_TTL_MUL  20      /* ... else 20 x the query time: <= 5% of a core */
#define HTTP_RATE_SAMPLES   32
#define HTTP_RATE_SPAN_MS   300000  /* the delivery rate is measured over up to 5 min */
#define HTTP_LOG_EVERY_MS   60000

/* Immutable once built; swapped whole under mu. */
struct http_names {
    char  **routes;       /* config order = the metrics route slots */
    size_t  nroutes;
    char  **lanes;        /* configured lanes, so an empty lane still shows 0 */
    size_t  nlanes;
};

struct http_sample {
    int64_t  mono_ms;
    uint64_t done;        /* delivered + dead-lettered by Kafka: records that left */
};

struct http {
    struct MHD_Daemon *mhd;
    int                fd;            /* the listen socket, ours until MHD takes it */
    char              *listen;        /* owned copy, as configured */

    pthread_mutex_t    mu;            /* guards names and lim_mhd */
    struct http_names *names;
    struct log_limiter lim_mhd;

    /* Server thread only. */
    char              *spool_path;    /* owned copy */
    enum config_durability durability;
    struct spool      *sp;            /* read-only handle, NULL until the first scrape */
    struct spool_stats st;            /* the cached snapshot */
    bool               st_ok;         /* st holds a snapshot */
    int64_t            st_next_ms;    /* mono ms of the next refresh */
    struct http_sample samples[HTTP_RATE_SAMPLES];
    size_t             nsamples, sample_head;   /* ring: head = the oldest */
    int64_t            start_wall_ms;
    struct log_limiter lim_spool;
    struct buf         out;           /* the page being rendered */
};

static void
http_names_destroy(struct http_names *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nroutes; i++)
        free(n->routes[i]);
    for (size_t i = 0; i < n->nlanes; i++)
        free(n->lanes[i]);
    free(n->routes);
    free(n->lanes);
    free(n);
}

static struct http_names *
http_names_create(const struct config *cfg)
{
    struct http_names *n = calloc(1, sizeof(*n));
    bool ok = n != NULL;

    if (ok && cfg->nroutes > 0)
        ok = (n->routes = calloc(cfg->nroutes, sizeof(*n->routes))) != NULL;
    if (ok && cfg->nlanes > 0)
        ok = (n->lanes = calloc(cfg->nlanes, sizeof(*n->lanes))) != NULL;
    for (size_t i = 0; ok && i < cfg->nroutes; i++, n->nroutes++)
        ok = (n->routes[i] = strdup(cfg->routes[i].name)) != NULL;
    for (size_t i = 0; ok && i < cfg->nlanes; i++, n->nlanes++)
        ok = (n->lanes[i] = strdup(cfg->lanes[i].name)) != NULL;
    if (!ok) {
        http_names_destroy(n);
        return NULL;
    }
    return n;
}

/* ---- rendering -------------------------------------------------------------- */

/* Appends a label value with the exposition format's escapes. */
static void
http_put_label(struct buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            buf_append(b, "\\\\", 2);
        else if (*s == '"')
            buf_append(b, "\\\"", 2);
        else if (*s == '\n')
            buf_append(b, "\\n", 2);
        else
            buf_append(b, s, 1);
    }
}

static void
http_put_head(struct buf *b, const char *name, const char *type, const char *help)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{label="value"} v, value escaped. */
static void
http_put_labeled(struct buf *b, const char *name, const char *label, const char *value,
                 uint64_t v)
{
    buf_printf(b, "%s{%s=\"", name, label);
    http_put_label(b, value);
    buf_printf(b, "\"} %" PRIu64 "\n", v);
}

static uint64_t
http_done_total(void)
{
    uint64_t sum = metrics_get(&metrics.dead_letter[DEAD_KAFKA]);

    for (size_t i = 0; i < METRICS_MAX_ROUTES; i++)
        sum += metrics_get(&metrics.delivered[i]);
    return sum;
}

/* Server thread: refreshes the cached spool snapshot when it is due. */
static void
http_stats_refresh(struct http *h)
{
    struct spool_conf sc = { .path = h->spool_path, .durability = h->durability,
                             .readonly = true, .cache_kib = 256 };   /* a scan: no reuse */
    struct spool_stats st = { 0 };
    struct err e = { 0 };
    int64_t t0 = clock_mono_ms(), ttl;
    int rc;

    if (t0 < h->st_next_ms)
        return;
    h->st_next_ms = t0 + HTTP_STATS_TTL_MIN;
    if (h->sp == NULL && (rc = spool_open(&h->sp, &sc, &e)) < 0) {
        log_limited(&h->lim_spool, HTTP_LOG_EVERY_MS, LOG_WARN, "http",
                    "spool gauges unavailable: %s", e.msg);
        return;
    }
    if ((rc = spool_stats(h->sp, &st, &e)) < 0) {
        log_limited(&h->lim_spool, HTTP_LOG_EVERY_MS, LOG_WARN, "http",
                    "spool gauges unavailable: %s (reopening at the next scrape)", e.msg);
        spool_close(h->sp);
        h->sp = NULL;
        return;
    }
    spool_stats_fini(&h->st);
    h->st = st;
    h->st_ok = true;
    ttl = (clock_mono_ms() - t0) * HTTP_STATS_TTL_MUL;
    ttl = ttl < HTTP_STATS_TTL_MIN ? HTTP_STATS_TTL_MIN
          : ttl > HTTP_STATS_TTL_MAX ? HTTP_STATS_TTL_MAX : ttl;
    h->st_next_ms = t0 + ttl;
}

/* Server thread: records a delivery sample (at most one a second) and returns the
 * rate in records/s over the window, or a negative value when unknown. */
static double
http_done_rate(struct http *h, int64_t now, uint64_t done)
{
    const struct http_sample *old = NULL, *newest;
    size_t i;

    if (h->nsamples > 0) {
        newest = &h->samples[(h->sample_head + h->nsamples - 1) % HTTP_RATE_SAMPLES];
        if (now - newest->mono_ms < 1000)
            goto measure;
    }
    if (h->nsamples == HTTP_RATE_SAMPLES) {
        h->samples[h->sample_head] = (struct http_sample){ now, done };
        h->sample_head = (h->sample_head + 1) % HTTP_RATE_SAMPLES;
    } else {
        h->samples[(h->sample_head + h->nsamples++) % HTTP_RATE_SAMPLES] =
            (struct http_sample){ now, done };
    }
measure:
    for (i = 0; i < h->nsamples; i++) {
        old = &h->samples[(h->sample_head + i) % HTTP_RATE_SAMPLES];
        if (now - old->mono_ms <= HTTP_RATE_SPAN_MS)
            break;
    }
    if (old == NULL || i == h->nsamples || now - old->mono_ms < 1000 || done < old->done)
        return -1.0;
    return (double)(done - old->done) * 1000.0 / (double)(now - old->mono_ms);
}

static bool
http_stats_has_lane(const struct spool_stats *st, const char *name)
{
    for (size_t i = 0; i < st->nlanes; i++)
        if (strcmp(st->lanes[i].name, name) == 0)
            return true;
    return false;
}

/* The spool gauges for every configured lane and every lane the spool knows. */
static void
http_render_spool(struct http *h, struct buf *b, const struct http_names *names)
{
    static const char *const states[] = { "ok", "full", "failing" };
    int state = atomic_load_explicit(&metrics.spool_state, memory_order_relaxed);
    int64_t wall = clock_wall_ms(), mono = clock_mono_ms();
    double rate = http_done_rate(h, mono, http_done_total()), eta;

    http_put_head(b, "sluice_spool_records", "gauge", "Records waiting in the spool, by lane.");
    if (h->st_ok) {
        for (size_t i = 0; i < h->st.nlanes; i++)
            http_put_labeled(b, "sluice_spool_records", "lane", h->st.lanes[i].name,
                             h->st.lanes[i].records);
        for (size_t i = 0; i < names->nlanes; i++)
            if (!http_stats_has_lane(&h->st, names->lanes[i]))
                http_put_labeled(b, "sluice_spool_records", "lane", names->lanes[i], 0);
    }
    http_put_head(b, "sluice_spool_oldest_age_seconds", "gauge",
                  "Age of the oldest record waiting in the spool, by lane (0 when empty).");
    if (h->st_ok) {
        for (size_t i = 0; i < h->st.nlanes; i++) {
            const struct spool_lane_stats *l = &h->st.lanes[i];
            double age = l->records > 0 && l->oldest_ms > 0 && wall > l->oldest_ms
                             ? (double)(wall - l->oldest_ms) / 1000.0 : 0.0;
            buf_printf(b, "sluice_spool_oldest_age_seconds{lane=\"");
            http_put_label(b, l->name);
            buf_printf(b, "\"} %.3f\n", age);
        }
        for (size_t i = 0; i < names->nlanes; i++)
            if (!http_stats_has_lane(&h->st, names->lanes[i]))
                http_put_labeled(b, "sluice_spool_oldest_age_seconds", "lane", names->lanes[i],
                                 0);
    }
    http_put_head(b, "sluice_spool_bytes", "gauge",
                  "Bytes of the records waiting in the spool (payload, key, topic, headers).");
    if (h->st_ok)
        buf_printf(b, "sluice_spool_bytes %" PRIu64 "\n", h->st.bytes);
    http_put_head(b, "sluice_spool_file_bytes", "gauge",
                  "Size of the spool database and its WAL on disk.");
    if (h->st_ok)
        buf_printf(b, "sluice_spool_file_bytes %" PRIu64 "\n", h->st.file_bytes);
    http_put_head(b, "sluice_spool_drain_eta_seconds", "gauge",
                  "Records waiting divided by the recent delivery rate; -1 while unknown.");
    if (h->st_ok) {
        eta = h->st.records == 0 ? 0.0 : rate > 0.0 ? (double)h->st.records / rate : -1.0;
        buf_printf(b, "sluice_spool_drain_eta_seconds %.3f\n", eta);
    }
    http_put_head(b, "sluice_spool_state", "gauge",
                  "1 for the spool's current state: ok, full (appends refused for lack of "
                  "room) or failing (I/O errors).");
    for (int i = 0; i < 3; i++)
        buf_printf(b, "sluice_spool_state{state=\"%s\"} %d\n", states[i], state == i ? 1 : 0);
}

static void
http_render_route_counter(struct buf *b, const char *name, atomic_uint_fast64_t *c,
                          const struct http_names *names)
{
    size_t n = names->nroutes < METRICS_MAX_ROUTES ? names->nroutes : METRICS_MAX_ROUTES;

    for (size_t i = 0; i < n; i++)
        http_put_labeled(b, name, "route",
                         i == METRICS_MAX_ROUTES - 1 && names->nroutes > METRICS_MAX_ROUTES
                             ? "_other" : names->routes[i],
                         metrics_get(&c[i]));
}

static void
http_render_metrics(struct http *h, struct buf *b)
{
    uint64_t cum = 0, counts[METRICS_LATENCY_BUCKETS + 1];
    struct http_names *names;

    http_stats_refresh(h);
    pthread_mutex_lock(&h->mu);
    names = h->names;

    http_put_head(b, "sluice_build_info", "gauge", "Build information; always 1.");
    buf_printf(b, "sluice_build_info{version=\"");
    http_put_label(b, SLUICE_VERSION);
    buf_printf(b, "\"} 1\n");
    http_put_head(b, "sluice_start_time_seconds", "gauge",
                  "When the process started, in seconds since the epoch.");
    buf_printf(b, "sluice_start_time_seconds %.3f\n", (double)h->start_wall_ms / 1000.0);

    http_put_head(b, "sluice_mqtt_connected", "gauge", "1 while connected to the MQTT broker.");
    buf_printf(b, "sluice_mqtt_connected %d\n",
               atomic_load_explicit(&metrics.mqtt_connected, memory_order_relaxed) ? 1 : 0);
    http_put_head(b, "sluice_kafka_connected", "gauge", "1 while Kafka is reachable.");
    buf_printf(b, "sluice_kafka_connected %d\n",
               atomic_load_explicit(&metrics.kafka_connected, memory_order_relaxed) ? 1 : 0);

    http_put_head(b, "sluice_mqtt_messages_total", "counter",
                  "MQTT messages routed and committed to the spool, by route.");
    http_render_route_counter(b, "sluice_mqtt_messages_total", metrics.mqtt_messages, names);
    http_put_head(b, "sluice_kafka_delivered_total", "counter",
                  "Records Kafka acknowledged, by route.");
    http_render_route_counter(b, "sluice_kafka_delivered_total", metrics.delivered, names);
    http_put_head(b, "sluice_filtered_total", "counter",
                  "MQTT messages a route's where: condition dropped, by route.");
    http_render_route_counter(b, "sluice_filtered_total", metrics.filtered, names);
    http_put_head(b, "sluice_deadband_suppressed_total", "counter",
                  "MQTT messages a route's deadband dropped (the value moved too little), "
                  "by route.");
    http_render_route_counter(b, "sluice_deadband_suppressed_total",
                              metrics.deadband_suppressed, names);
    http_put_head(b, "sluice_deadband_not_numeric_total", "counter",
                  "Messages forwarded unchecked because the deadband field was absent or "
                  "not a number, by route.");
    http_render_route_counter(b, "sluice_deadband_not_numeric_total",
                              metrics.deadband_not_numeric, names);
    http_put_head(b, "sluice_aggregate_windows_total", "counter",
                  "Aggregate windows closed and spooled as one record per Kafka key, by "
                  "route.");
    http_render_route_counter(b, "sluice_aggregate_windows_total", metrics.aggregate_windows,
                              names);
    http_put_head(b, "sluice_aggregate_late_total", "counter",
                  "MQTT messages whose aggregate window was already closed (dropped, or "
                  "sent as they are to late_topic), by route.");
    http_render_route_counter(b, "sluice_aggregate_late_total", metrics.aggregate_late,
                              names);
    http_put_head(b, "sluice_compacted_total", "counter",
                  "Waiting records deleted because a newer record of the same Kafka key "
                  "arrived (lanes with compact: latest_per_key), by lane.");
    for (size_t i = 0; i < names->nlanes && i < METRICS_MAX_LANES; i++)
        http_put_labeled(b, "sluice_compacted_total", "lane", names->lanes[i],
                         metrics_get(&metrics.compacted[i]));
    http_put_head(b, "sluice_forward_bytes_total", "counter",
                  "Key, value and header bytes of the records Kafka acknowledged.");
    buf_printf(b, "sluice_forward_bytes_total %" PRIu64 "\n", metrics_get(&metrics.forward_bytes));

    http_put_head(b, "sluice_kafka_errors_total", "counter",
                  "Kafka errors: transient (retried), permanent (dead-lettered), fatal "
                  "(producer recreated).");
    for (int r = 0; r < KERR__COUNT; r++)
        http_put_labeled(b, "sluice_kafka_errors_total", "reason",
                         metrics_kafka_err_name((enum metrics_kafka_err)r),
                         metrics_get(&metrics.kafka_errors[r]));
    http_put_head(b, "sluice_kafka_retries_total", "counter",
                  "Produce retransmissions librdkafka made.");
    buf_printf(b, "sluice_kafka_retries_total %" PRIu64 "\n", metrics_get(&metrics.kafka_retries));
    http_put_head(b, "sluice_dropped_total", "counter",
                  "Messages dropped: no route matched, evicted from a full spool, or "
                  "older than max_age.");
    for (int r = 0; r < DROP__COUNT; r++)
        http_put_labeled(b, "sluice_dropped_total", "reason",
                         metrics_drop_name((enum metrics_drop)r),
                         metrics_get(&metrics.dropped[r]));
    http_put_head(b, "sluice_dead_letter_total", "counter",
                  "Records sent to the dead letter topic, by reason.");
    for (int r = 0; r < DEAD__COUNT; r++)
        http_put_labeled(b, "sluice_dead_letter_total", "reason",
                         metrics_dead_name((enum metrics_dead)r),
                         metrics_get(&metrics.dead_letter[r]));
    http_put_head(b, "sluice_spool_appends_total", "counter", "Records appended to the spool.");
    buf_printf(b, "sluice_spool_appends_total %" PRIu64 "\n",
               metrics_get(&metrics.spool_appends));
    http_put_head(b, "sluice_spool_skipped_total", "counter",
                  "Records Kafka acknowledged before they reached the spool's database "
                  "(the live path): never written to SQLite.");
    buf_printf(b, "sluice_spool_skipped_total %" PRIu64 "\n",
               metrics_get(&metrics.spool_skipped));
    http_put_head(b, "sluice_spool_errors_total", "counter",
                  "Failed spool appends and commits (each retry counts).");
    buf_printf(b, "sluice_spool_errors_total %" PRIu64 "\n", metrics_get(&metrics.spool_errors));
    http_put_head(b, "sluice_sparkplug_seq_gaps_total", "counter",
                  "Sparkplug messages whose seq did not follow the edge node's previous one.");
    buf_printf(b, "sluice_sparkplug_seq_gaps_total %" PRIu64 "\n",
               metrics_get(&metrics.sparkplug_seq_gaps));
    http_put_head(b, "sluice_sparkplug_unknown_alias_total", "counter",
                  "Sparkplug DATA with a metric alias or a node/device BIRTH sluice does "
                  "not know.");
    buf_printf(b, "sluice_sparkplug_unknown_alias_total %" PRIu64 "\n",
               metrics_get(&metrics.sparkplug_unknown_alias));
    http_put_head(b, "sluice_sparkplug_rebirth_requests_total", "counter",
                  "Sparkplug Rebirth NCMDs published (sparkplug.request_rebirth).");
    buf_printf(b, "sluice_sparkplug_rebirth_requests_total %" PRIu64 "\n",
               metrics_get(&metrics.sparkplug_rebirths));
    http_put_head(b, "sluice_config_reload_failures_total", "counter",
                  "SIGHUP reloads rejected because the new config was invalid.");
    buf_printf(b, "sluice_config_reload_failures_total %" PRIu64 "\n",
               metrics_get(&metrics.config_reload_failures));

    /* Buckets are read once, so _count equals the +Inf bucket exactly. */
    http_put_head(b, "sluice_delivery_latency_seconds", "histogram",
                  "MQTT arrival to Kafka acknowledgement, per delivered record.");
    for (size_t i = 0; i <= METRICS_LATENCY_BUCKETS; i++)
        counts[i] = metrics_get(&metrics.latency[i]);
    for (size_t i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        cum += counts[i];
        buf_printf(b, "sluice_delivery_latency_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                   (double)metrics_latency_bounds_ms[i] / 1000.0, cum);
    }
    cum += counts[METRICS_LATENCY_BUCKETS];
    buf_printf(b, "sluice_delivery_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    buf_printf(b, "sluice_delivery_latency_seconds_sum %.3f\n",
               (double)metrics_get(&metrics.latency_sum_ms) / 1000.0);
    buf_printf(b, "sluice_delivery_latency_seconds_count %" PRIu64 "\n", cum);

    http_render_spool(h, b, names);
    pthread_mutex_unlock(&h->mu);
}

/* ---- requests --------------------------------------------------------------- */

static enum MHD_Result
http_reply(struct MHD_Connection *c, unsigned status, const char *type, struct buf *b)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    r = MHD_create_response_from_buffer(b->len, b->data != NULL ? b->data : (void *)"",
                                        MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
http_on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                const char *version, const char *upload_data, size_t *upload_data_size,
                void **con_cls)
{
    static int seen;      /* marks a request whose headers arrived */
    struct http *h = cls;
    struct buf *b = &h->out;
    bool mqtt, kafka, ready;
    int spool;
    unsigned status = MHD_HTTP_OK;
    const char *type = "text/plain; charset=utf-8";

    (void)version;
    (void)upload_data;
    if (*con_cls == NULL) {
        *con_cls = &seen;             /* headers only: the body (if any) comes next */
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0;        /* a body on a GET: ignored */
        return MHD_YES;
    }
    buf_reset(b);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        buf_printf(b, "method not allowed\n");
    } else if (strcmp(url, "/metrics") == 0) {
        type = "text/plain; version=0.0.4; charset=utf-8";
        http_render_metrics(h, b);
    } else if (strcmp(url, "/healthz") == 0) {
        buf_printf(b, "ok\n");
    } else if (strcmp(url, "/readyz") == 0) {
        mqtt = atomic_load_explicit(&metrics.mqtt_connected, memory_order_relaxed) != 0;
        kafka = atomic_load_explicit(&metrics.kafka_connected, memory_order_relaxed) != 0;
        spool = atomic_load_explicit(&metrics.spool_state, memory_order_relaxed);
        /* Kafka being down is not unready: buffering in the spool is the job. */
        ready = mqtt && spool == SPOOL_STATE_OK;
        status = ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
        type = "application/json";
        buf_printf(b, "{\"mqtt\":\"%s\",\"kafka\":\"%s\",\"spool\":\"%s\"}\n",
                   mqtt ? "connected" : "disconnected", kafka ? "connected" : "disconnected",
                   metrics_spool_state_name((enum metrics_spool_state)spool));
    } else if (strcmp(url, "/") == 0) {
        buf_printf(b, "sluice %s: /metrics /healthz /readyz\n", SLUICE_VERSION);
    } else {
        status = MHD_HTTP_NOT_FOUND;
        buf_printf(b, "not found (try /metrics, /healthz or /readyz)\n");
    }
    *con_cls = NULL;
    return http_reply(c, status, type, b);
}

__attribute__((format(printf, 2, 0)))
static void
http_on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct http *h = cls;
    char line[256];
    size_t n;

    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    pthread_mutex_lock(&h->mu);
    log_limited(&h->lim_mhd, HTTP_LOG_EVERY_MS, LOG_WARN, "http", "%s", line);
    pthread_mutex_unlock(&h->mu);
}

/* ---- lifecycle -------------------------------------------------------------- */

/* Binds and listens on listen: 0 and *fd, or -errno with a sentence. */
static int
http_bind(const char *listen_addr, int *fd, char *shown, size_t shownlen, struct err *err)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res = NULL, *ai;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[256], port[16], addr[INET6_ADDRSTRLEN];
    int s = -1, rc = -EINVAL, one = 1;

    if (http_split_hostport(listen_addr, host, sizeof(host), port, sizeof(port)) < 0)
        return err_set(err, -EINVAL, "http: http.listen '%s' is not host:port", listen_addr);
    if ((rc = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res)) != 0)
        return err_set(err, -EADDRNOTAVAIL, "http: cannot listen on %s: %s", listen_addr,
                       gai_strerror(rc));
    rc = -EADDRNOTAVAIL;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        if ((s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol)) < 0) {
            rc = -errno;
            continue;
        }
        /* A restart must not wait out the old connections' TIME_WAIT. */
        (void)setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(s, ai->ai_addr, ai->ai_addrlen) == 0 && listen(s, 64) == 0)
            break;
        rc = -errno;
        close(s);
        s = -1;
    }
    freeaddrinfo(res);
    if (s < 0)
        return err_set(err, rc, "http: cannot listen on %s: %s (set http.listen to a free "
                       "address, or \"\" to turn the endpoints off)", listen_addr,
                       strerror(-rc));
    snprintf(shown, shownlen, "%s", listen_addr);
    if (getsockname(s, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, addr, sizeof(addr));
            snprintf(shown, shownlen, "%s:%u", addr, ntohs(a->sin_port));
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof(addr));
            snprintf(shown, shownlen, "[%s]:%u", addr, ntohs(a->sin6_port));
        }
    }
    *fd = s;
    return 0;
}

int
http_start(struct http **out, const struct config *cfg, struct err *err)
{
    struct http *h;
    char shown[300];
    int rc;

    *out = NULL;
    if (cfg->http_listen == NULL || cfg->http_listen[0] == '\0') {
        log_info("http", "http.listen is \"\": no /metrics, /healthz or /readyz");
        return 0;
    }
    if ((h = calloc(1, sizeof(*h))) == NULL)
        return err_set(err, -ENOMEM, "http: out of memory");
    h->fd = -1;
    pthread_mutex_init(&h->mu, NULL);
    buf_init(&h->out);
    h->durability = cfg->spool.durability;
    h->start_wall_ms = clock_wall_ms();
    h->listen = strdup(cfg->http_listen);
    h->spool_path = strdup(cfg->spool.path);
    h->names = http_names_create(cfg);
    if (h->listen == NULL || h->spool_path == NULL || h->names == NULL) {
        rc = err_set(err, -ENOMEM, "http: out of memory");
        goto fail;
    }
    if ((rc = http_bind(cfg->http_listen, &h->fd, shown, sizeof(shown), err)) < 0)
        goto fail;
    h->mhd = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                              http_on_request, h,
                              MHD_OPTION_EXTERNAL_LOGGER, http_on_mhd_log, h,
                              MHD_OPTION_LISTEN_SOCKET, h->fd,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONN_LIMIT,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_CONN_TIMEOUT_S,
                              MHD_OPTION_END);
    if (h->mhd == NULL) {
        rc = err_set(err, -EIO, "http: cannot start the server on %s (libmicrohttpd "
                     "refused; see the line above)", shown);
        goto fail;
    }
    log_info("http", "serving /metrics, /healthz and /readyz on http://%s", shown);
    *out = h;
    return 0;
fail:
    http_stop(h);
    return rc;
}

void
http_set_config(struct http *h, const struct config *cfg)
{
    struct http_names *next, *old;

    if (h == NULL)
        return;
    if (strcmp(cfg->http_listen, h->listen) != 0)
        log_warn("http", "reload: http.listen changed to '%s'; it takes effect at the next "
                 "restart (still serving %s)", cfg->http_listen, h->listen);
    if ((next = http_names_create(cfg)) == NULL) {
        log_error("http", "reload: out of memory; metrics keep the previous route names");
        return;
    }
    pthread_mutex_lock(&h->mu);
    old = h->names;
    h->names = next;
    pthread_mutex_unlock(&h->mu);
    http_names_destroy(old);
}

void
http_stop(struct http *h)
{
    if (h == NULL)
        return;
    if (h->mhd != NULL) {
        /* Quiesced first so the socket comes back to us: we opened it, we close it.
         * Should that fail, MHD_stop_daemon closes it itself. */
        if (MHD_quiesce_daemon(h->mhd) == MHD_INVALID_SOCKET)
            h->fd = -1;
        MHD_stop_daemon(h->mhd);
    }
    if (h->fd >= 0)
        close(h->fd);
    spool_close(h->sp);
    spool_stats_fini(&h->st);
    http_names_destroy(h->names);
    buf_fini(&h->out);
    free(h->listen);
    free(h->spool_path);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

#else /* !SLUICE_HAVE_MICROHTTPD */

struct http {
    int unused;
};

int
http_start(struct http **out, const struct config *cfg, struct err *err)
{
    *out = NULL;
    if (cfg->http_listen == NULL || cfg->http_listen[0] == '\0')
        return 0;
    return err_set(err, -ENOTSUP, "http: this sluice was built without libmicrohttpd; set "
                   "http.listen to \"\" to run without /metrics, /healthz and /readyz");
}

void
http_set_config(struct http *h, const struct config *cfg)
{
    (void)h;
    (void)cfg;
}

void
http_stop(struct http *h)
{
    free(h);
}

#endif
