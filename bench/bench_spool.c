/* bench_spool.c - spool throughput and write amplification (an experiment, not a
 * test). Usage: bench_spool DIR [rows]. Prints single-row commits/s (NORMAL and
 * FULL), batched appends/s, claim+delete rows/s, and disk bytes written per payload
 * byte for 200-byte payloads (from /proc/self/io write_bytes, which counts each page
 * dirtied, so re-dirtying after an fsync counts again, as the device would see). */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/clock.h"
#include "sluice/err.h"
#include "sluice/spool.h"

static uint64_t
io_write_bytes(void)
{
    char line[128];
    uint64_t v = 0;
    FILE *f = fopen("/proc/self/io", "r");

    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "write_bytes: %" SCNu64, &v) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return v;
}

/* CPU seconds (user + system) of this process (all threads): the machine is
 * shared, and wall time swings with the neighbours' load; rates are per CPU s. */
static double
now_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double
wall_s(void)
{
    return (double)clock_mono_ms() / 1e3;
}

static double
wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The sync_interval tick, on its own thread as in the bridge. */
static atomic_bool ticking;

static void *
ticker(void *arg)
{
    struct spool *sp = arg;

    while (atomic_load(&ticking)) {
        struct timespec ts = { 0, 200 * 1000000L };
        nanosleep(&ts, NULL);
        spool_sync_wal(sp);
    }
    return NULL;
}

static char value[200];
static char mtopic[64];

static void
fill(struct record *r, int i)
{
    memset(r, 0, sizeof(*r));
    snprintf(mtopic, sizeof(mtopic), "factory/berlin/line%d/dev-%04d/telemetry", i % 4,
             i % 500);
    r->topic = "telemetry.berlin";
    r->topic_len = 16;
    r->key = mtopic + 22;
    r->key_len = 8;
    r->value = value;
    r->value_len = sizeof(value);
    r->mqtt_topic = mtopic;
    r->mqtt_topic_len = strlen(mtopic);
    r->lane = i % 10 == 0 ? "urgent" : "bulk";
    r->event_ms = r->ingest_ms = 1700000000000 + i;
    r->qos = 1;
}

static struct spool *
open_spool(const char *path, enum config_durability d)
{
    struct spool_conf conf = { .path = path, .durability = d };
    struct spool *sp;
    struct err err = {0};

    if (spool_open(&sp, &conf, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    return sp;
}

static void
append_or_die(struct spool *sp, int i, bool commit)
{
    struct record r;
    struct err err = {0};

    fill(&r, i);
    if (spool_append(sp, &r, commit, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

int
main(int argc, char **argv)
{
    char path[512];
    int rows = argc > 2 ? atoi(argv[2]) : 200000;
    struct spool *sp, *fw;
    struct spool_batch b;
    struct spool_stats st;
    struct err err = {0};
    double t0, t;
    uint64_t w0, w, *seqs;

    if (argc < 2) {
        fprintf(stderr, "usage: bench_spool DIR [rows]\n");
        return 64;
    }
    memset(value, 'x', sizeof(value));

    /* 1. QoS 1 path: one commit per row, WAL fsynced every 200 ms. */
    snprintf(path, sizeof(path), "%s/normal.db", argv[1]);
    sp = open_spool(path, DURABILITY_PROCESS);
    sync();
    pthread_t tick;
    atomic_store(&ticking, true);
    pthread_create(&tick, NULL, ticker, sp);
    w0 = io_write_bytes();
    t0 = now_s();
    double wt0 = wall_s();
    double worst = 0;
    int slow = 0;
    for (int i = 0; i < rows; i++) {
        double a0 = wall_us();
        append_or_die(sp, i, true);
        double dt = wall_us() - a0;
        worst = dt > worst ? dt : worst;
        slow += dt > 1000;
    }
    atomic_store(&ticking, false);
    pthread_join(tick, NULL);
    spool_sync_wal(sp);
    t = now_s() - t0;
    w = io_write_bytes() - w0;
    spool_stats(sp, &st, &err);
    printf("single-row commits (NORMAL, sync 200ms): %d rows in %.2f CPU s = %.0f/s"
           " (wall %.0f/s)\n", rows, t, rows / t, rows / (wall_s() - wt0));
    printf("  write_bytes %.1f MiB = %.2f bytes per payload byte; file %.1f MiB "
           "(%.0f B/row, %" PRIu64 " B/row in stats)\n",
           (double)w / 1048576.0, (double)w / ((double)rows * sizeof(value)),
           (double)st.file_bytes / 1048576.0, (double)st.file_bytes / rows,
           st.bytes / st.records);
    printf("  append latency: worst %.1f ms, %d appends over 1 ms (the sync tick"
           " thread checkpoints)\n", worst / 1e3, slow);
    spool_stats_fini(&st);

    /* 2. Drain: claim 1000, delete 1000, on a second handle. */
    fw = open_spool(path, DURABILITY_PROCESS);
    spool_batch_init(&b);
    seqs = malloc(1000 * sizeof(*seqs));
    t0 = now_s();
    size_t claimed = 0;
    for (int l = 0; l < 2; l++) {
        const char *ln = l ? "bulk" : "urgent";
        uint64_t after = 0;
        do {
            spool_batch_reset(&b);
            spool_claim(fw, ln, after, 1000, &b, &err);
            if (b.n)
                after = b.recs[b.n - 1].seq;
            claimed += b.n;
        } while (b.n);
    }
    t = now_s() - t0;
    printf("claim only (1000/batch): %.0f rows/s\n", claimed / t);
    t0 = now_s();
    w0 = io_write_bytes();
    size_t drained = 0;
    const char *lanes[] = { "urgent", "bulk" };
    for (int l = 0; l < 2; l++) {
        for (;;) {
            spool_batch_reset(&b);
            if (spool_claim(fw, lanes[l], 0, 1000, &b, &err) < 0) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            if (b.n == 0)
                break;
            for (size_t i = 0; i < b.n; i++)
                seqs[i] = b.recs[i].seq;
            if (spool_delete(fw, seqs, b.n, &err) < 0) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            drained += b.n;
        }
    }
    t = now_s() - t0;
    printf("claim+delete (1000/batch): %zu rows in %.2fs = %.0f/s (write_bytes %.1f MiB)\n",
           drained, t, drained / t, (double)(io_write_bytes() - w0) / 1048576.0);
    spool_batch_fini(&b);
    spool_close(fw);

    /* 3. QoS 0 path: batches of 1000 rows. */
    t0 = now_s();
    for (int i = 0; i < rows; i++)
        append_or_die(sp, i, i % 1000 == 999);
    spool_commit(sp, &err);
    t = now_s() - t0;
    printf("batched appends (1000/commit): %.0f rows/s\n", rows / t);
    spool_close(sp);

    /* 4. durability: power. */
    snprintf(path, sizeof(path), "%s/full.db", argv[1]);
    sp = open_spool(path, DURABILITY_POWER);
    int n = rows / 20;
    w0 = io_write_bytes();
    wt0 = wall_s();
    for (int i = 0; i < n; i++)
        append_or_die(sp, i, true);
    t = wall_s() - wt0;
    w = io_write_bytes() - w0;
    printf("single-row commits (FULL, wall clock): %.0f/s, %.2f bytes written per payload"
           " byte\n", n / t, (double)w / ((double)n * sizeof(value)));
    spool_close(sp);

    /* 5. quick_check cost on open, for the file left by step 3. */
    snprintf(path, sizeof(path), "%s/normal.db", argv[1]);
    struct stat sb;
    stat(path, &sb);
    t0 = now_s();
    sp = open_spool(path, DURABILITY_PROCESS);
    printf("open with quick_check of %.1f MiB: %.3fs\n", (double)sb.st_size / 1048576.0,
           now_s() - t0);
    spool_close(sp);
    free(seqs);
    return 0;
}
