/* aggregate.h - tumbling event-time windows per (route, Kafka key): the arithmetic.
 *
 * A route with `aggregate: { window: 1m, lateness: 5s, fields: {...} }` sends one
 * record per key and window instead of every message. This module is the part
 * without I/O: which window an event time falls into, when a window is closed, the
 * accumulator of one (key, window) and its encoding in the spool's route_state table
 * (state route "aggregate/<route name>", key = the Kafka key), and the JSON value of
 * the record a closed window becomes.
 *
 * Windows are [start, start + window) in epoch ms, aligned to the epoch (start is a
 * multiple of window; negative times floor). A window is closed once the route's
 * watermark (the highest event time seen on the route) reaches end + lateness: from
 * then on an event time inside it is late.
 *
 * Threads: none kept; an accumulator belongs to its caller. */
#ifndef SLUICE_AGGREGATE_H
#define SLUICE_AGGREGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

struct buf;

#define AGGREGATE_STATE_PREFIX "aggregate/"
#define AGGREGATE_MAX_FIELDS   32

enum aggregate_fn {
    AGGREGATE_COUNT = 0,   /* records in the window (with field: numeric values) */
    AGGREGATE_SUM,
    AGGREGATE_AVG,
    AGGREGATE_MIN,
    AGGREGATE_MAX,
    AGGREGATE_FIRST,       /* the value with the lowest event time (ties: first seen) */
    AGGREGATE_LAST,        /* the value with the highest event time (ties: last seen) */
};

/* "count", "sum", ... -> *fn. false for an unknown name. */
bool        aggregate_fn_parse(const char *name, enum aggregate_fn *fn);
const char *aggregate_fn_name(enum aggregate_fn fn);   /* static string */

/* The start of the window of event time ts (ms); window_ms > 0. */
int64_t aggregate_window_start(int64_t ts, int64_t window_ms);
/* True when the window starting at start is closed under watermark. */
bool    aggregate_window_closed(int64_t start, int64_t window_ms, int64_t lateness_ms,
                                int64_t watermark);

/* One output field's running values. */
struct aggregate_cell {
    uint64_t n;                  /* numeric values seen */
    double   sum, min, max, first, last;
    int64_t  first_ts, last_ts;
};

/* One (key, window). Caller-embedded: aggregate_acc_init / fini. */
struct aggregate_acc {
    int64_t  start;              /* window start, epoch ms */
    uint64_t records;            /* messages accepted into the window */
    int64_t  touched_ms;         /* wall clock of the last accepted message */
    char    *topic;              /* owned: the rendered Kafka topic (from the first) */
    void    *key;  size_t key_len;  /* owned: the Kafka key */
    size_t   ncells;
    struct aggregate_cell cell[AGGREGATE_MAX_FIELDS];
};

/* ncells <= AGGREGATE_MAX_FIELDS. Copies topic and key. 0 or -ENOMEM/-EINVAL. */
int  aggregate_acc_init(struct aggregate_acc *a, int64_t start, size_t ncells,
                        const char *topic, const void *key, size_t key_len);
void aggregate_acc_fini(struct aggregate_acc *a);
/* Counts one record (call once per message, then aggregate_acc_add per numeric field). */
void aggregate_acc_record(struct aggregate_acc *a, int64_t wall_ms);
void aggregate_acc_add(struct aggregate_acc *a, size_t cell, double v, int64_t ts);

/* The value of fn over a cell (records: a->records, for count without a field).
 * false when there is no value (no numeric value seen): rendered as null. */
bool aggregate_cell_value(const struct aggregate_acc *a, size_t cell, enum aggregate_fn fn,
                          bool has_field, double *out);

/* route_state encoding: a version byte, then fixed-width little-endian fields, the
 * topic and the cells. The key is the row's key, not repeated. encode appends to b
 * (0 or -ENOMEM); decode fills an initialised-by-it acc (fini it after), false when
 * the bytes are not an accumulator of ncells cells. */
int  aggregate_acc_encode(const struct aggregate_acc *a, struct buf *b);
bool aggregate_acc_decode(struct aggregate_acc *a, const void *p, size_t len,
                          const void *key, size_t key_len, size_t ncells);

/* The closed window's record value: {"window_start":ms,"window_end":ms,<name>:v...}
 * in field order, numbers in shortest round-trip form, null for no value. names and
 * fns/has_field have ncells entries (borrowed). Appends to b: 0 or -ENOMEM. */
int  aggregate_render(const struct aggregate_acc *a, int64_t window_ms,
                      const char *const *names, const enum aggregate_fn *fns,
                      const bool *has_field, struct buf *b);

/* ---- the store: every open window of every aggregate route, for one mapper ----
 *
 * Memory follows the spool: a step changes memory at once and returns the rows that
 * must reach the spool (spool_append_all: closed windows' records, accumulator puts
 * and deletes) in one transaction; when that fails the caller calls
 * aggregate_store_clear and the next step reloads what the spool committed. Rows:
 *   "aggregate/<route>"  key = window start (8 bytes) + Kafka key -> accumulator
 *   "aggwm/<route>"      key = ""                                 -> watermark (8 bytes)
 *   "aggclosed/<route>"  key = Kafka key -> the latest window start closed for it
 * The last keeps a window that wall time closed (the key went quiet) closed: a record
 * for it that comes later is late, not a second partial result. */
struct aggregate_store;
struct config;
struct config_route;
struct record;
struct spool_state_put;


/* What one step produced; borrowed from the store until its next step or clear. */
struct aggregate_step {
    bool     late;            /* the message's window is closed: nothing else changed */
    int64_t  window_start;    /* the message's window */
    int64_t  window_end;
    struct record          *recs;   size_t nrecs;    /* closed windows */
    struct spool_state_put *puts;   size_t nputs;
};

int  aggregate_store_create(struct aggregate_store **out);
void aggregate_store_destroy(struct aggregate_store *st);   /* NULL is fine */
/* Forgets everything; the next step loads from the spool file again. */
void aggregate_store_clear(struct aggregate_store *st);

/* One message of route r (index ridx in cfg, both borrowed) whose record rec (topic,
 * key, event time) was mapped from doc, at wall clock now_ms. Loads the store from
 * cfg->spool.path first if needed. 0 (see *out) or -ENOMEM. */
int  aggregate_store_accept(struct aggregate_store *st, const struct config *cfg,
                            size_t ridx, const struct record *rec, const json_t *doc,
                            int64_t now_ms, struct aggregate_step *out);
/* Closes every window whose key has been quiet for a window length of wall time. */
int  aggregate_store_expire(struct aggregate_store *st, const struct config *cfg,
                            int64_t now_ms, struct aggregate_step *out);
/* Open windows held in memory. */
size_t aggregate_store_size(const struct aggregate_store *st);

#endif
