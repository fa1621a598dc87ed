/* deadband.h - report-by-exception: forward a value only when it moved past a band.
 *
 * A route with `deadband: { field: $.value, abs: 0.5, pct: 2 }` forwards a message
 * only when its field moved further than the band from the last value FORWARDED for
 * the same (route, Kafka key); the band is the larger of abs and pct percent of
 * |last|. Exactly at the band is not past it. The first value of a key is always
 * forwarded; a message whose field is absent or not a number is forwarded and
 * counted, and does not change the last value.
 *
 * This module is the in-memory side: a map (route, key) -> last forwarded value,
 * bounded to DEADBAND_MAX_KEYS entries, least recently used evicted first (an evicted
 * key's next value is forwarded as a first value). The durable side is the spool's
 * route_state table (spool_append_with_state writes the new last value in the same
 * transaction as the record; deadband_load reads it back at start), under the state
 * route name "deadband/<route name>".
 *
 * Threads: one map per mapper, used by one thread; no locking inside. */
#ifndef SLUICE_DEADBAND_H
#define SLUICE_DEADBAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct deadband;
struct err;

#define DEADBAND_MAX_KEYS 100000
#define DEADBAND_STATE_PREFIX "deadband/"

enum deadband_verdict {
    DEADBAND_FIRST = 0,     /* no last value known: forward */
    DEADBAND_PAST,          /* moved past the band: forward */
    DEADBAND_INSIDE,        /* within the band (or exactly at it): suppress */
};

/* max_keys 0 means DEADBAND_MAX_KEYS. Returns 0 and owned *out, or -ENOMEM. */
int  deadband_create(struct deadband **out, size_t max_keys);
void deadband_destroy(struct deadband *db);   /* NULL is fine */

/* Loads the last values kept in the spool file at path (borrowed): a missing file or
 * table is an empty state. Existing entries are replaced. 0 or -errno + sentence. */
int  deadband_load(struct deadband *db, const char *path, struct err *err);
/* Forgets everything (after a rolled-back batch: the next use reloads). */
void deadband_clear(struct deadband *db);

/* The verdict for value v of (route, key[0..key_len)) under the band abs / pct
 * (either may be 0: not used). Does not change the map. If last is not NULL it
 * receives the last forwarded value (when not DEADBAND_FIRST). */
enum deadband_verdict deadband_check(struct deadband *db, const char *route,
                                     const void *key, size_t key_len, double v,
                                     double abs, double pct, double *last);

/* Remembers v as the last forwarded value of (route, key). 0 or -ENOMEM. May evict
 * the least recently used entry, counted in deadband_evictions. */
int  deadband_remember(struct deadband *db, const char *route, const void *key,
                       size_t key_len, double v);

size_t   deadband_size(const struct deadband *db);
uint64_t deadband_evictions(const struct deadband *db);

/* The encoding of a last value in route_state.value: 8 bytes, IEEE 754 little
 * endian. */
#define DEADBAND_VALUE_LEN 8
void deadband_encode(double v, unsigned char out[DEADBAND_VALUE_LEN]);
bool deadband_decode(const void *p, size_t len, double *v);

#endif
