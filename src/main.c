/* main.c - the sluice command line, thread ownership and lifecycle.
 *
 * Who owns what (keep this table true):
 *
 * | thread                 | owns                                        | talks through                      |
 * |------------------------|---------------------------------------------|------------------------------------|
 * | main                   | config, lifecycle, signals (sigwait), the   | stop flag, joins, config swaps     |
 * |                        | WAL sync tick (durability: process)         |                                    |
 * | Paho receive           | ingest spool handle (and its intake         | spool_append; returns 1 only after |
 * | (messageArrived)       | journal), mapper                            | the journal write; forward_notify  |
 * | ingest flusher         | nothing (journal -> SQLite commits every    | spool_commit, then forward_notify  |
 * |                        | 5 ms, under the ingest mutex)               |                                    |
 * | forwarder              | rd_kafka_t, forwarder spool handle; sole    | spool claim/delete                 |
 * |                        | caller of rd_kafka_poll                     |                                    |
 * | HTTP (libmicrohttpd)   | nothing the bridge uses (its own read-only  | reads atomic counters; route names |
 * |                        | spool handle for the spool gauges)          | copied in by http_set_config       |
 *
 * Signals are blocked in every thread before any library starts one (the mask is
 * inherited), and the main thread takes them synchronously with sigtimedwait, so no
 * handler ever runs in the middle of Paho, librdkafka or SQLite.
 *
 * Start order: config -> HTTP endpoints (a port in use fails the start) -> spool
 * handles -> forwarder -> ingest (so the first message can already be forwarded).
 * Stop order: HTTP first (its read-only spool handle closes before the writers'),
 * then ingest (no new messages), then the forwarder flushes for a few seconds and leaves the rest in the
 * spool. A config reload (SIGHUP) builds a fresh struct config and swaps it into both
 * sides; each side confirms it no longer uses the old one before it is freed. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/buf.h"
#include "sluice/clock.h"
#include "sluice/config.h"
#include "sluice/err.h"
#include "sluice/filter.h"
#include "sluice/forward.h"
#include "sluice/live.h"
#include "sluice/jpath.h"
#include "sluice/http.h"
#include "sluice/ingest.h"
#include "sluice/log.h"
#include "sluice/mapper.h"
#include "sluice/metrics.h"
#include "sluice/notify.h"
#include "sluice/record.h"
#include "sluice/spool.h"
#include "sluice_version.h"

/* sysexits.h codes SPEC.md names. */
#define EXIT_USAGE     64
#define EXIT_DATAERR   65
#define EXIT_IOERR     74
#define EXIT_CONFIG    78

/* How long SIGTERM waits for Kafka to take what is in flight. */
#define STOP_FLUSH_MS  5000
/* Records waiting for the forwarder on the live path: past either bound it steps
 * aside and they go through SQLite (a forwarder that keeps up takes them within
 * milliseconds; these only cap the memory of one that does not). */
#define LIVE_MAX_RECORDS (2 * FORWARD_WINDOW)
#define LIVE_MAX_BYTES   (4u << 20)

static const char usage_text[] =
    "usage: sluice [run] -c FILE              run the bridge in the foreground\n"
    "       sluice check -c FILE [--print]    validate the config, print routes and\n"
    "                                          subscriptions (--print: effective config)\n"
    "       sluice map -c FILE TOPIC [PAYLOAD_FILE]\n"
    "                                          dry run of one message (PAYLOAD_FILE '-' = stdin)\n"
    "       sluice spool stats -c FILE        records, bytes and oldest age per lane\n"
    "       sluice spool dead-letters -c FILE the last dead letters: time, stage, error,\n"
    "                                          MQTT topic, size (works while Kafka is down)\n"
    "       sluice health -c FILE | --url URL GET http.listen's /readyz (or URL): exit 0\n"
    "                                          when ready (HTTP 200), else 1 (HEALTHCHECK)\n"
    "       sluice --version | --help\n"
    "\n"
    "exit codes: 0 ok, 1 no route (map), 64 usage, 65 bad payload (map),\n"
    "            74 spool I/O error, 78 invalid config\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sluice: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage_text);
    return EXIT_USAGE;
}

/* Loads the config or prints every error; returns 0 or the exit code. */
static int
load_config(const char *path, struct config **out)
{
    struct config_diags d = { 0 };
    int rc;

    rc = config_load(out, path, &d);
    config_diags_print(&d, stderr);
    config_diags_fini(&d);
    /* Unreadable files are config errors too: the user fixes the path. */
    return rc == 0 ? 0 : EXIT_CONFIG;
}

/* ---- check ---------------------------------------------------------------- */

static int
cmd_check(const char *path, bool print)
{
    struct config *cfg;
    int rc;

    if ((rc = load_config(path, &cfg)) != 0)
        return rc;
    if (print)
        config_print_effective(cfg, stdout);
    else
        config_print_summary(cfg, stdout);
    config_destroy(cfg);
    return 0;
}

/* ---- map ------------------------------------------------------------------ */

static int
read_file(const char *path, struct buf *b)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char chunk[65536];
    size_t n;

    if (f == NULL)
        return -errno;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (buf_append(b, chunk, n) < 0) {
            if (f != stdin)
                fclose(f);
            return -ENOMEM;
        }
    }
    if (ferror(f)) {
        if (f != stdin)
            fclose(f);
        return -EIO;
    }
    if (f != stdin)
        fclose(f);
    return 0;
}

/* Prints bytes, escaping what is not printable ASCII or UTF-8 continuation-safe. */
static void
print_bytes(FILE *f, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\\')
            fputs("\\\\", f);
        else if (c >= 0x20 && c != 0x7f)
            fputc(c, f);
        else if (c == '\n')
            fputs("\\n", f);
        else
            fprintf(f, "\\x%02x", c);
    }
}

static void
print_time(FILE *f, int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char b[32];

    gmtime_r(&s, &tm);
    strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(f, "%" PRId64 " (%s.%03dZ)", ms, b, (int)(ms % 1000));
}

/* The deadband verdict of a dry run, against the last values the spool holds (read
 * only; none when there is no spool yet). A suppressed message exits 0 like a
 * filtered one: the route decided, nothing is wrong. */
static void
print_deadband(const struct mapper *mp, const struct config_route *r)
{
    const struct mapper_deadband_info *d = mapper_deadband(mp);

    switch (d->verdict) {
    case MAPPER_DEADBAND_NONE:
        return;
    case MAPPER_DEADBAND_FIRST:
        printf("deadband:  forwarded: %s = %.17g is the first value of this key\n",
               jpath_text(r->deadband_field), d->value);
        return;
    case MAPPER_DEADBAND_PAST:
        printf("deadband:  forwarded: %s = %.17g moved past %g of the last forwarded %.17g\n",
               jpath_text(r->deadband_field), d->value, d->band, d->last);
        return;
    case MAPPER_DEADBAND_INSIDE:
        printf("suppressed: deadband: %s = %.17g is within %g of the last forwarded %.17g "
               "(the message would be counted and dropped)\n",
               jpath_text(r->deadband_field), d->value, d->band, d->last);
        return;
    case MAPPER_DEADBAND_NOT_NUMERIC:
        printf("deadband:  forwarded unchecked: %s is absent or not a number\n",
               jpath_text(r->deadband_field));
        return;
    }
}

static int
cmd_map(const char *path, const char *topic, const char *payload_file)
{
    struct record_header fixed[RECORD_FIXED_HEADERS], h;
    char scratch[RECORD_SCRATCH];
    struct mapper_msg msg = { 0 };
    struct mapper *mp = NULL;
    struct config *cfg;
    struct err why = { 0 };
    struct record rec;
    struct buf payload;
    size_t n, off = 0;
    int rc, exit_code;

    buf_init(&payload);
    if ((rc = load_config(path, &cfg)) != 0)
        return rc;
    if (payload_file != NULL && (rc = read_file(payload_file, &payload)) < 0) {
        fprintf(stderr, "sluice: map: %s: %s\n", payload_file, strerror(-rc));
        config_destroy(cfg);
        return EXIT_USAGE;
    }
    if ((rc = mapper_create(&mp)) < 0) {
        config_destroy(cfg);
        buf_fini(&payload);
        return EXIT_FAILURE;
    }
    mapper_set_read_only(mp);   /* a dry run reads Sparkplug aliases, writes nothing */
    msg.topic = topic;
    msg.topic_len = strlen(topic);
    msg.payload = payload.data != NULL ? payload.data : "";
    msg.payload_len = payload.len;
    msg.qos = 1;
    msg.arrival_ms = clock_wall_ms();

    rc = mapper_map(mp, cfg, &msg, &rec, &why);
    if (rc == MAPPER_NO_ROUTE) {
        printf("no route: no route matches topic \"%s\" (the message would be counted "
               "and dropped)\n", topic);
        exit_code = 1;
    } else if (rc == MAPPER_FILTERED) {
        /* Not an error: the route matched and decided to drop it, as ingest would
         * (counted in sluice_filtered_total and acknowledged). */
        printf("filtered: where %s is false (route %s; the message would be counted "
               "and dropped)\n", filter_text(cfg->routes[rec.route].where),
               cfg->routes[rec.route].name);
        exit_code = 0;
    } else if (rc < 0) {
        fprintf(stderr, "sluice: map: %s\n", strerror(-rc));
        exit_code = EXIT_FAILURE;
    } else {
        if (rc == MAPPER_DEAD_LETTER)
            printf("dead letter: %s\n", why.msg);
        print_deadband(mp, &cfg->routes[rec.route]);
        if (mapper_aggregate(mp)->aggregate) {
            const struct mapper_aggregate_info *ag = mapper_aggregate(mp);
            printf("aggregate: window ");
            print_time(stdout, ag->window_start);
            printf(" .. ");
            print_time(stdout, ag->window_end);
            printf(" [%lld, %lld) ms: the message is counted into this window of its key; "
                   "the route sends one record per key and window when it closes\n",
                   (long long)ag->window_start, (long long)ag->window_end);
        }
        printf("route:     %s\n", cfg->routes[rec.route].name);
        printf("lane:      %s\n", rec.lane);
        printf("topic:     %.*s\n", (int)rec.topic_len, rec.topic);
        printf("key:       ");
        if (rec.key != NULL)
            print_bytes(stdout, rec.key, rec.key_len);
        else
            printf("(none)");
        printf("\ntimestamp: ");
        print_time(stdout, rec.event_ms);
        printf((cfg->routes[rec.route].timestamp == NULL && rec.event_ms == msg.arrival_ms) ||
                       rec.dead_letter ||
                       record_hdrs_find(rec.hdrs, rec.hdrs_len, "event.time.source", &h)
                   ? " from arrival\n"
                   : " from payload\n");
        printf("headers:\n");
        n = record_fixed_headers(&rec, cfg->instance, scratch, fixed);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(fixed[i].name, "sluice.seq") == 0)
                continue;     /* assigned by the spool; a dry run has none */
            printf("  %s: ", fixed[i].name);
            print_bytes(stdout, fixed[i].value, fixed[i].value_len);
            printf("\n");
        }
        while (record_hdrs_next(rec.hdrs, rec.hdrs_len, &off, &h)) {
            printf("  %.*s: ", (int)h.name_len, h.name);
            print_bytes(stdout, h.value, h.value_len);
            printf("\n");
        }
        printf("value:     ");
        print_bytes(stdout, rec.value, rec.value_len);
        printf("\n");
        exit_code = rc == MAPPER_DEAD_LETTER ? EXIT_DATAERR : 0;
    }
    mapper_destroy(mp);
    config_destroy(cfg);
    buf_fini(&payload);
    return exit_code;
}

/* ---- spool stats ---------------------------------------------------------- */

static int
cmd_spool_stats(const char *path)
{
    struct spool_conf sc = { 0 };
    struct spool_stats st = { 0 };
    struct spool *sp;
    struct config *cfg;
    struct err err = { 0 };
    int64_t now = clock_wall_ms();
    int rc;

    if ((rc = load_config(path, &cfg)) != 0)
        return rc;
    sc.path = cfg->spool.path;
    sc.durability = cfg->spool.durability;
    sc.readonly = true;
    if (spool_open(&sp, &sc, &err) < 0 || spool_stats(sp, &st, &err) < 0) {
        fprintf(stderr, "sluice: %s\n", err.msg);
        spool_close(sp);
        config_destroy(cfg);
        return EXIT_IOERR;
    }
    printf("%-16s %12s %14s %18s\n", "lane", "records", "bytes", "oldest_age_seconds");
    for (size_t i = 0; i < st.nlanes; i++) {
        const struct spool_lane_stats *l = &st.lanes[i];
        double age = l->records > 0 && l->oldest_ms > 0 && now > l->oldest_ms
                         ? (double)(now - l->oldest_ms) / 1000.0
                         : 0.0;
        printf("%-16s %12" PRIu64 " %14" PRIu64 " %18.1f\n", l->name, l->records, l->bytes,
               age);
    }
    printf("%-16s %12" PRIu64 " %14" PRIu64 "\n", "total", st.records, st.bytes);
    printf("file bytes: %" PRIu64 "\n", st.file_bytes);
    spool_stats_fini(&st);
    spool_close(sp);
    config_destroy(cfg);
    return 0;
}

/* One line per dead letter: UTC time, stage, error, MQTT topic, bytes, Kafka topic. */
static int
print_dead_letter(const struct spool_dead *d, void *arg)
{
    time_t t = (time_t)(d->at_ms / 1000);
    struct tm tm;
    char when[32];

    (void)arg;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    printf("%s.%03dZ %-7s %-32s %-40s %10" PRIu64 " %s\n", when, (int)(d->at_ms % 1000),
           d->stage, d->error, d->mqtt_topic, d->size, d->kafka_topic[0] ? d->kafka_topic
                                                                         : "-");
    return 0;
}

static int
cmd_spool_dead_letters(const char *path)
{
    struct spool_conf sc = { 0 };
    struct spool *sp;
    struct config *cfg;
    struct err err = { 0 };
    int rc;

    if ((rc = load_config(path, &cfg)) != 0)
        return rc;
    sc.path = cfg->spool.path;
    sc.durability = cfg->spool.durability;
    sc.readonly = true;
    if (spool_open(&sp, &sc, &err) < 0) {
        fprintf(stderr, "sluice: %s\n", err.msg);
        config_destroy(cfg);
        return EXIT_IOERR;
    }
    printf("%-24s %-7s %-32s %-40s %10s %s\n", "time", "stage", "error", "mqtt_topic",
           "bytes", "kafka_topic");
    rc = spool_dead_letters(sp, print_dead_letter, NULL, &err);
    if (rc < 0)
        fprintf(stderr, "sluice: %s\n", err.msg);
    spool_close(sp);
    config_destroy(cfg);
    return rc < 0 ? EXIT_IOERR : 0;
}

/* ---- health --------------------------------------------------------------- */

/* For container HEALTHCHECKs without curl: one GET, the body on stdout. */
static int
cmd_health(const char *path, const char *url)
{
    struct config *cfg;
    struct err err = { 0 };
    struct buf body;
    char local[320];
    int rc, status = 0;

    if (url == NULL) {
        if ((rc = load_config(path, &cfg)) != 0)
            return rc;
        rc = http_local_url(cfg->http_listen, "/readyz", local, sizeof(local));
        config_destroy(cfg);
        if (rc < 0) {
            fprintf(stderr, "sluice: health: %s: http.listen is off or port 0; use --url\n",
                    path);
            return EXIT_FAILURE;
        }
        url = local;
    }
    buf_init(&body);
    if ((rc = http_get(url, 5000, &status, &body, &err)) < 0) {
        fprintf(stderr, "sluice: health: %s\n", err.msg);
    } else {
        fwrite(body.data != NULL ? body.data : "", 1, body.len, stdout);
        if (body.len == 0 || body.data[body.len - 1] != '\n')
            printf("(HTTP %d)\n", status);
    }
    buf_fini(&body);
    return rc == 0 && status == 200 ? 0 : EXIT_FAILURE;
}

/* ---- run ------------------------------------------------------------------ */

static int
open_spool(const struct config *cfg, struct live *live, bool journal, struct spool **out)
{
    /* Page cache: 1 MiB for the ingest handle (journal), 4 MiB for the forwarder's.
     * The ingest handle appends at the right edge of the tree and holds nothing of a
     * big backlog's interior in 2 MiB anyway (with http.c's 256 KiB for the gauges'
     * scan, a 1M-record drain peaked at 25.3 MiB RSS instead of 29.9 with SQLite's
     * 2 MiB each). The forwarder deletes rows up to 8,000 behind its claims (the
     * window, plus acknowledgements held for whole runs: forward.c), 2-4 MiB of pages:
     * with 1 MiB it re-read every one of them to delete its rows, 15% of its CPU (1 KiB
     * pages then). 4 MiB: 1M drains at 165-212k/s against 142-170k/s, alternating runs,
     * peak RSS 28.3 MiB instead of 24.7. */
    struct spool_conf sc = { .path = cfg->spool.path, .durability = cfg->spool.durability,
                             .policy = cfg, .journal = journal, .live = live,
                             .cache_kib = journal ? 1024 : 4096 };
    struct err err = { 0 };
    struct spool_damage dmg;
    int rc;

    rc = spool_open(out, &sc, &err);
    /* spool.on_corrupt: quarantine trades the damaged file's rows for availability:
     * move it aside (never delete it: someone may salvage it) and start empty. Only
     * -EBADMSG qualifies; a full disk or a permission problem is not cured by it. */
    if (rc == -EBADMSG && cfg->spool.on_corrupt == ON_CORRUPT_QUARANTINE) {
        log_error("spool", "%s", err.msg);
        if (spool_quarantine(cfg->spool.path, &dmg, &err) < 0) {
            log_error("spool", "%s", err.msg);
            return -1;
        }
        if (dmg.rows >= 0)
            log_error("spool", "quarantined %s as %s (spool.on_corrupt: quarantine): lost "
                      "%" PRId64 " record(s) in %" PRId64 " bytes plus a %" PRId64 "-byte "
                      "WAL; starting with an empty spool", cfg->spool.path, dmg.aside,
                      dmg.rows, dmg.bytes, dmg.wal_bytes);
        else
            log_error("spool", "quarantined %s as %s (spool.on_corrupt: quarantine): lost "
                      "%" PRId64 " bytes plus a %" PRId64 "-byte WAL (records unreadable, "
                      "count unknown); starting with an empty spool", cfg->spool.path,
                      dmg.aside, dmg.bytes, dmg.wal_bytes);
        rc = spool_open(out, &sc, &err);
    }
    if (rc < 0) {
        log_error("spool", "%s", err.msg);
        return -1;
    }
    return 0;
}

/* SIGHUP: build a fresh config; swap it in only when valid. */
static void
reload(struct config **cfgp, struct ingest *in, struct forward *fw)
{
    struct config_diags d = { 0 };
    struct config *next, *old = *cfgp;

    log_info("main", "SIGHUP: reloading %s", old->path);
    if (config_load(&next, old->path, &d) < 0) {
        for (size_t i = 0; i < d.n; i++)
            log_error("config", "%s", d.lines[i]);
        log_error("main", "reload failed with %zu error(s); still running the previous config",
                  d.n);
        metrics_add(&metrics.config_reload_failures, 1);
        config_diags_fini(&d);
        return;
    }
    config_diags_fini(&d);
    if (strcmp(next->mqtt.url, old->mqtt.url) != 0 ||
        strcmp(next->spool.path, old->spool.path) != 0 ||
        strcmp(next->kafka.bootstrap, old->kafka.bootstrap) != 0 ||
        strcmp(next->mqtt.client_id, old->mqtt.client_id) != 0)
        log_warn("main", "reload: changes to mqtt.url, mqtt.client_id, kafka.bootstrap or "
                         "spool.path take effect only after a restart");
    log_set_level(next->log_level);
    log_set_format(next->log_format);
    ingest_set_config(in, next);
    forward_set_config(fw, next);
    *cfgp = next;
    config_destroy(old);
    log_info("main", "reload done: %zu route(s)", next->nroutes);
}

static uint64_t
delivered_total(void)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < METRICS_MAX_ROUTES; i++)
        sum += metrics_get(&metrics.delivered[i]);
    return sum;
}

/* systemd watchdog (WatchdogSec=): WATCHDOG=1 only while the forwarder thread makes
 * progress. Its loop never sleeps more than 50 ms, so a heartbeat that has not moved
 * since the last ping means that thread is in a slow pass (a SQLite busy wait, a
 * reachability probe: seconds at most) or wedged. A slow pass only delays the next
 * ping; a wedge withholds pings until systemd restarts us after WatchdogSec. A stuck
 * main thread (e.g. a reload waiting on a wedged thread) pings nothing either. */
struct watchdog {
    int64_t  ms;          /* WatchdogSec in ms; 0 = no watchdog */
    int64_t  ping_at;     /* monotonic ms of the last ping */
    uint64_t beat;        /* forward_heartbeat at the last ping */
    bool     warned;
};

static void
watchdog_tick(struct watchdog *wd, const struct forward *fw)
{
    int64_t now = clock_mono_ms();
    uint64_t beat;

    if (wd->ms <= 0 || now - wd->ping_at < wd->ms / 4)
        return;
    beat = forward_heartbeat(fw);
    if (beat != wd->beat) {
        notify_watchdog();
        wd->beat = beat;
        wd->ping_at = now;
        wd->warned = false;
    } else if (!wd->warned && now - wd->ping_at >= wd->ms / 2) {
        log_warn("main", "the forwarder thread has made no progress for %" PRId64 " ms; "
                 "withholding the systemd watchdog ping (restart after %" PRId64 " ms)",
                 now - wd->ping_at, wd->ms);
        wd->warned = true;
    }
}

static int
cmd_run(const char *path)
{
    struct spool *in_sp = NULL, *fw_sp = NULL;
    struct live *live = NULL;
    struct ingest *in = NULL;
    struct forward *fw = NULL;
    struct http *http = NULL;
    struct config *cfg;
    struct err err = { 0 };
    struct timespec tick;
    struct watchdog wd = { .ms = notify_watchdog_ms() };
    sigset_t set;
    int rc, sig, exit_code = 0;
    bool stop = false;

    /* Before any library starts a thread: every thread inherits this mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* No fastbins. A drain frees seven librdkafka headers and a message per record
     * on the forwarder thread, and SQLite then asks for 1.3 KiB page buffers, a
     * request that makes glibc consolidate every fastbin first: malloc_consolidate
     * and its chunk unlinking were a tenth of the forwarder's samples (perf, 400,000
     * record drain). Without fastbins, small frees go to the per-thread cache and the
     * unsorted bin. Nine alternating pairs of 400,000-record drains
     * (bench/pipeline.py --phases backlog) measured the forwarder at 3.26 CPU s
     * against 3.53 on average, the same peak RSS; the drain rates were within this
     * machine's noise. Called before any thread exists. */
    mallopt(M_MXFAST, 0);

    if ((rc = load_config(path, &cfg)) != 0)
        return rc;
    log_set_level(cfg->log_level);
    log_set_format(cfg->log_format);
    log_info("main", "sluice %s starting: instance %s, %zu route(s), spool %s", SLUICE_VERSION,
             cfg->instance, cfg->nroutes, cfg->spool.path);

    /* Fail fast: a bridge nobody can observe or health-check should not run. */
    if (http_start(&http, cfg, &err) < 0) {
        log_error("main", "%s", err.msg);
        config_destroy(cfg);
        return EXIT_FAILURE;
    }
    /* The live path (live.c: records Kafka acknowledges before the journal is merged
     * never reach SQLite). SLUICE_LIVE=0 in the environment switches it off, and the
     * spool and the forwarder claim everything from SQLite: a way to tell, should a
     * delivery problem ever appear, whether the path has a part in it. (It was off by
     * default for a while after one CI run of test_clock_step lost 922 records with
     * it on; those were published before sluice had subscribed, a race in the test
     * harness that test_subscribe_ready now pins down.) */
    const char *live_env = getenv("SLUICE_LIVE");
    if ((live_env == NULL || strcmp(live_env, "0") != 0) &&
        live_create(&live, LIVE_MAX_RECORDS, LIVE_MAX_BYTES) < 0) {
        log_error("main", "out of memory");
        http_stop(http);
        config_destroy(cfg);
        return EXIT_FAILURE;
    }
    if (open_spool(cfg, live, true, &in_sp) < 0 || open_spool(cfg, NULL, false, &fw_sp) < 0) {
        http_stop(http);
        spool_close(in_sp);
        spool_close(fw_sp);
        live_destroy(live);
        config_destroy(cfg);
        return EXIT_IOERR;
    }
    if (forward_create(&fw, cfg, fw_sp, live, &err) < 0) {
        log_error("main", "%s", err.msg);
        spool_close(fw_sp);
        exit_code = EXIT_FAILURE;
        goto out;
    }
    fw_sp = NULL;   /* the forwarder owns it now */
    if (forward_start(fw, &err) < 0) {
        log_error("main", "%s", err.msg);
        exit_code = EXIT_FAILURE;
        goto out;
    }
    if (ingest_create(&in, cfg, in_sp, forward_notify, fw, &err) < 0) {
        log_error("main", "%s", err.msg);
        exit_code = EXIT_FAILURE;
        goto out;
    }
    /* in_sp stays borrowed here for the WAL sync tick: spool_sync_wal uses its own
     * descriptor and is safe beside the receive thread's appends. */
    if (ingest_start(in, &err) < 0) {
        log_error("main", "%s", err.msg);
        exit_code = EXIT_FAILURE;
        goto out;
    }
    notify_ready();
    wd.ping_at = clock_mono_ms();
    wd.beat = forward_heartbeat(fw);

    /* With durability: process, SQLite does not fsync the WAL on commit; this tick
     * does, so a power cut loses at most sync_interval of acknowledged messages. */
    while (!stop) {
        int64_t ms = cfg->spool.sync_interval_ms > 0 ? cfg->spool.sync_interval_ms : 1000;
        if (wd.ms > 0 && wd.ms / 4 < ms)
            ms = wd.ms / 4 > 0 ? wd.ms / 4 : 1;
        tick.tv_sec = ms / 1000;
        tick.tv_nsec = (ms % 1000) * 1000000;
        sig = sigtimedwait(&set, NULL, &tick);
        if (sig < 0) {
            if (cfg->spool.durability == DURABILITY_PROCESS && spool_sync_wal(in_sp) < 0)
                log_warn("spool", "fsync of the WAL failed: %s", strerror(errno));
            watchdog_tick(&wd, fw);
            continue;
        }
        switch (sig) {
        case SIGHUP:
            notify_reloading();
            reload(&cfg, in, fw);
            http_set_config(http, cfg);
            notify_ready();   /* also after a failed reload: the old config still runs */
            break;
        case SIGTERM:
        case SIGINT:
            log_info("main", "%s: stopping (taking no new messages, flushing up to %d ms)",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT", STOP_FLUSH_MS);
            notify_stopping();
            stop = true;
            break;
        }
    }

out:
    http_stop(http);
    ingest_stop(in);
    if (in == NULL)
        spool_close(in_sp);   /* never handed over */
    forward_stop(fw, STOP_FLUSH_MS);
    ingest_destroy(in);
    forward_destroy(fw);
    live_destroy(live);
    log_info("main", "stopped: delivered %" PRIu64 ", retries %" PRIu64
                     ", kafka errors transient %" PRIu64 " permanent %" PRIu64 " fatal %" PRIu64,
             delivered_total(), metrics_get(&metrics.kafka_retries),
             metrics_get(&metrics.kafka_errors[KERR_TRANSIENT]),
             metrics_get(&metrics.kafka_errors[KERR_PERMANENT]),
             metrics_get(&metrics.kafka_errors[KERR_FATAL]));
    config_destroy(cfg);
    return exit_code;
}

/* ---- argument parsing ----------------------------------------------------- */

static int
cmd_check_summary(const char *path)
{
    return cmd_check(path, false);
}

static const struct {
    const char *name;
    int (*run)(const char *path);
} path_cmds[] = {
    { "run", cmd_run },
    { "check", cmd_check_summary },     /* check --print is dispatched at the call */
    { "spool stats", cmd_spool_stats },
    { "spool dead-letters", cmd_spool_dead_letters },
};

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "print", no_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "url", required_argument, NULL, 'u' },
        { NULL, 0, NULL, 0 },
    };
    const char *cmd = "run", *path = NULL, *url = NULL;
    bool print = false;
    int c, first = 1;

    if (argc > 1 && argv[1][0] != '-') {
        cmd = argv[1];
        first = 2;
    }
    if (strcmp(cmd, "spool") == 0) {
        if (argc < 3 || (strcmp(argv[2], "stats") != 0 &&
                         strcmp(argv[2], "dead-letters") != 0))
            return usage_error("spool: unknown subcommand %s", argc < 3 ? "(none)" : argv[2]);
        cmd = strcmp(argv[2], "stats") == 0 ? "spool stats" : "spool dead-letters";
        first = 3;
    }
    optind = first;
    while ((c = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'p': print = true; break;
        case 'u': url = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': printf("sluice %s\n", SLUICE_VERSION); return 0;
        default: fputs(usage_text, stderr); return EXIT_USAGE;
        }
    }
    if (strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0) {
        printf("sluice %s\n", SLUICE_VERSION);
        return 0;
    }
    if (url != NULL && strcmp(cmd, "health") != 0)
        return usage_error("--url only goes with health (got %s)", cmd);
    if (strcmp(cmd, "health") == 0) {
        if (optind != argc)
            return usage_error("health: unexpected argument %s", argv[optind]);
        if ((path == NULL) == (url == NULL))
            return usage_error("%s", "health: give either -c FILE or --url URL");
        return cmd_health(path, url);
    }
    if (path == NULL)
        return usage_error("%s: -c FILE is required", cmd);
    if (print && strcmp(cmd, "check") != 0)
        return usage_error("--print only goes with check (got %s)", cmd);

    if (strcmp(cmd, "map") == 0) {
        if (optind >= argc || argc - optind > 2)
            return usage_error("%s", "map: expected TOPIC [PAYLOAD_FILE]");
        return cmd_map(path, argv[optind], optind + 1 < argc ? argv[optind + 1] : NULL);
    }
    /* The rest take the config file and nothing else. */
    for (size_t i = 0; i < sizeof(path_cmds) / sizeof(path_cmds[0]); i++) {
        if (strcmp(cmd, path_cmds[i].name) != 0)
            continue;
        if (optind != argc)
            return usage_error("%s: unexpected argument %s", cmd, argv[optind]);
        return print ? cmd_check(path, true) : path_cmds[i].run(path);
    }
    return usage_error("unknown command %s", cmd);
}
