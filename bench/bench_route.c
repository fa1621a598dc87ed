/* bench_route.c - routing throughput: the level trie against a linear scan.
 *
 * For 10, 100 and 1,000 routes of realistic shapes (Sparkplug namespaces, per-plant
 * sensor trees, per-site telemetry and alarms, a few '#' log routes, led by the
 * "factory/{site}/{line}/{device}/..." routes of the example config), it builds one
 * router and times router_match over a fixed topic mix (about 90% matching topics
 * spread over all routes, 10% matching nothing). In the same run it times the
 * baseline the router replaces: pattern_match over the patterns in file order until
 * the first hit. Both must agree on every topic before anything is timed.
 *
 * Prints one row per size: lookups per second for each, and trie/linear. Run it
 * through bench/run-route.sh; `meson test` never runs it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/err.h"
#include "sluice/route.h"

#define NTOPICS   4096
#define MIN_SECS  0.3

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static unsigned
rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Route i of a config with n routes, as pattern text. */
static void
route_text(char *out, size_t cap, size_t i, size_t n)
{
    if (i == 0) {
        snprintf(out, cap, "factory/{site}/{line}/{device}/telemetry");
        return;
    }
    if (i == 1) {
        snprintf(out, cap, "factory/{site}/{line}/{device}/alarm");
        return;
    }
    if (i == n - 1) {
        snprintf(out, cap, "spBv1.0/#");   /* a Sparkplug catch-all last */
        return;
    }
    switch (i % 6) {
    case 0: snprintf(out, cap, "plant%zu/+/sensor/{id}", i); break;
    case 1: snprintf(out, cap, "site%zu/{line}/{device}/telemetry", i); break;
    case 2: snprintf(out, cap, "site%zu/{line}/{device}/alarm", i); break;
    case 3: snprintf(out, cap, "fleet/v%zu/{vehicle}/gps", i); break;
    case 4: snprintf(out, cap, "spBv1.0/group%zu/{type}/{edge}/{device}", i); break;
    default: snprintf(out, cap, "logs/app%zu/#", i); break;
    }
}

/* A topic that the pattern text matches: wildcards become words, '#' 0-2 levels. */
static void
instantiate(char *out, size_t cap, const char *pattern)
{
    static const char *words[] = { "berlin", "l1", "dev-0042", "x", "NDATA", "edge7" };
    size_t n = 0;
    const char *p = pattern;

    while (*p != '\0' && n + 16 < cap) {
        if (*p == '{') {
            n += (size_t)snprintf(out + n, cap - n, "%s", words[rnd(6)]);
            p = strchr(p, '}') + 1;
        } else if (*p == '+') {
            n += (size_t)snprintf(out + n, cap - n, "%s", words[rnd(6)]);
            p++;
        } else if (*p == '#') {
            unsigned k, depth = rnd(3);

            if (depth == 0 && n > 0)
                n--;   /* "a/#" matches "a": drop the '/' */
            for (k = 0; k < depth; k++)
                n += (size_t)snprintf(out + n, cap - n, "%s%s", k ? "/" : "",
                                      words[rnd(6)]);
            p++;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
}

static void
nomatch_topic(char *out, size_t cap, size_t n)
{
    switch (rnd(4)) {
    case 0: snprintf(out, cap, "unknown/%u/state", rnd(1000)); break;
    case 1: snprintf(out, cap, "plant%u/l1/actuator/v%u", rnd((unsigned)n), rnd(100)); break;
    case 2: snprintf(out, cap, "site%u/l1/d1/status", rnd((unsigned)n)); break;
    default: snprintf(out, cap, "factory/berlin/l1/d1/config"); break;
    }
}

static size_t
linear_match(struct pattern *const *ps, size_t n, const char *t, size_t len,
             struct match *m)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (pattern_match(ps[i], t, len, m))
            return i;
    return SIZE_MAX;
}

static int
bench_size(size_t n)
{
    struct pattern **ps = calloc(n, sizeof(*ps));
    struct router *r = NULL;
    char (*topics)[128] = calloc(NTOPICS, sizeof(*topics));
    size_t *lens = calloc(NTOPICS, sizeof(*lens));
    struct err err = { 0 };
    struct match m;
    size_t i, sink = 0, hits = 0;
    double t0, t_trie, t_lin;
    unsigned long long rounds_trie = 0, rounds_lin = 0;
    int rc = -1;

    if (ps == NULL || topics == NULL || lens == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        char text[128];

        route_text(text, sizeof(text), i, n);
        if (pattern_compile(&ps[i], text, &err) < 0) {
            fprintf(stderr, "bench_route: %s\n", err.msg);
            goto out;
        }
    }
    if (router_create(&r, ps, n, &err) < 0) {
        fprintf(stderr, "bench_route: %s\n", err.msg);
        goto out;
    }
    for (i = 0; i < NTOPICS; i++) {
        if (rnd(10) == 0)
            nomatch_topic(topics[i], sizeof(topics[i]), n);
        else
            instantiate(topics[i], sizeof(topics[i]), pattern_text(ps[rnd((unsigned)n)]));
        lens[i] = strlen(topics[i]);
    }
    /* Both must agree before either is timed. */
    for (i = 0; i < NTOPICS; i++) {
        size_t lin = linear_match(ps, n, topics[i], lens[i], &m);
        bool ok = router_match(r, topics[i], lens[i], &m);

        if ((ok ? m.route : SIZE_MAX) != lin) {
            fprintf(stderr, "bench_route: trie and linear disagree on %s\n", topics[i]);
            goto out;
        }
        hits += ok;
    }

    t0 = now();
    do {
        for (i = 0; i < NTOPICS; i++)
            if (router_match(r, topics[i], lens[i], &m))
                sink += m.route;
        rounds_trie++;
    } while ((t_trie = now() - t0) < MIN_SECS);

    t0 = now();
    do {
        for (i = 0; i < NTOPICS; i++)
            sink += linear_match(ps, n, topics[i], lens[i], &m);
        rounds_lin++;
    } while ((t_lin = now() - t0) < MIN_SECS);

    {
        double trie = (double)(rounds_trie * NTOPICS) / t_trie;
        double lin = (double)(rounds_lin * NTOPICS) / t_lin;

        printf("| %6zu | %5.1f%% | %14.0f | %16.0f | %10.1fx |\n", n,
               100.0 * (double)hits / NTOPICS, trie, lin, trie / lin);
    }
    if (sink == 42)
        fputc(' ', stderr);   /* keeps the loops from being optimized away */
    rc = 0;
out:
    router_destroy(r);
    for (i = 0; ps != NULL && i < n; i++)
        pattern_destroy(ps[i]);
    free(ps);
    free(topics);
    free(lens);
    return rc;
}

int
main(void)
{
    static const size_t sizes[] = { 10, 100, 1000 };
    size_t i;

    printf("route lookups per second, %d topics per round, >= %.1f s per cell\n",
           NTOPICS, MIN_SECS);
    printf("| routes | match  | trie lookups/s | linear lookups/s | trie/linear |\n");
    printf("|-------:|-------:|---------------:|-----------------:|------------:|\n");
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        if (bench_size(sizes[i]) < 0)
            return 1;
    return 0;
}
