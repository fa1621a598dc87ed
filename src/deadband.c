/* deadband.c - the last forwarded value per (route, Kafka key), bounded, with LRU.
 *
 * Design: entries live in one array that grows up to max_keys; a chained hash (bucket
 * heads and next links are array indices) finds them, and a doubly linked list of
 * indices keeps them in use order. At the bound, the least recently used entry is
 * unlinked and its slot reused, so memory is max_keys entries plus their key bytes,
 * whatever the device count. A lookup hashes route and key without copying them.
 *
 * Why LRU and not refusing new keys: a site that replaces devices must not end up
 * with a map full of dead keys that forwards nothing new through the band. Evicting
 * costs one extra forward of the evicted key's next value, which is the safe error.
 *
 * Threads: one map per mapper; see deadband.h. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/deadband.h"
#include "sluice/err.h"
#include "sluice/spool.h"

#define NIL SIZE_MAX

struct entry {
    char   *id;         /* owned: route '\0' key bytes */
    size_t  route_len;  /* bytes of route (without its NUL) */
    size_t  id_len;     /* route_len + 1 + key_len */
    double  value;
    size_t  hnext;      /* next in the bucket chain, or NIL */
    size_t  prev, next; /* use order: head = most recent */
};

struct deadband {
    struct entry *e;
    size_t        n, cap, max;
    size_t       *buckets;     /* nbuckets heads, NIL = empty */
    size_t        nbuckets;    /* a power of two */
    size_t        head, tail;  /* most and least recently used, or NIL */
    uint64_t      evictions;
};

static uint64_t
hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {   /* FNV-1a */
        h ^= b[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static size_t
slot_of(const struct deadband *db, const char *route, size_t rlen, const void *key,
        size_t klen)
{
    uint64_t h = hash_bytes(UINT64_C(14695981039346656037), route, rlen + 1);

    return (size_t)(hash_bytes(h, key, klen) & (db->nbuckets - 1));
}

int
deadband_create(struct deadband **out, size_t max_keys)
{
    struct deadband *db;

    *out = NULL;
    if ((db = calloc(1, sizeof(*db))) == NULL)
        return -ENOMEM;
    db->max = max_keys ? max_keys : DEADBAND_MAX_KEYS;
    db->nbuckets = 64;
    while (db->nbuckets < db->max && db->nbuckets < (SIZE_MAX >> 2))
        db->nbuckets <<= 1;
    if ((db->buckets = malloc(db->nbuckets * sizeof(*db->buckets))) == NULL) {
        free(db);
        return -ENOMEM;
    }
    for (size_t i = 0; i < db->nbuckets; i++)
        db->buckets[i] = NIL;
    db->head = db->tail = NIL;
    *out = db;
    return 0;
}

void
deadband_clear(struct deadband *db)
{
    for (size_t i = 0; i < db->n; i++)
        free(db->e[i].id);
    db->n = 0;
    for (size_t i = 0; i < db->nbuckets; i++)
        db->buckets[i] = NIL;
    db->head = db->tail = NIL;
}

void
deadband_destroy(struct deadband *db)
{
    if (db == NULL)
        return;
    deadband_clear(db);
    free(db->e);
    free(db->buckets);
    free(db);
}

static size_t
find(const struct deadband *db, const char *route, const void *key, size_t klen)
{
    size_t rlen = strlen(route);

    for (size_t i = db->buckets[slot_of(db, route, rlen, key, klen)]; i != NIL;
         i = db->e[i].hnext) {
        const struct entry *en = &db->e[i];
        if (en->id_len == rlen + 1 + klen && en->route_len == rlen &&
            memcmp(en->id, route, rlen + 1) == 0 &&
            (klen == 0 || memcmp(en->id + rlen + 1, key, klen) == 0))
            return i;
    }
    return NIL;
}

static void
lru_unlink(struct deadband *db, size_t i)
{
    struct entry *en = &db->e[i];

    if (en->prev != NIL)
        db->e[en->prev].next = en->next;
    else
        db->head = en->next;
    if (en->next != NIL)
        db->e[en->next].prev = en->prev;
    else
        db->tail = en->prev;
}

static void
lru_push(struct deadband *db, size_t i)
{
    db->e[i].prev = NIL;
    db->e[i].next = db->head;
    if (db->head != NIL)
        db->e[db->head].prev = i;
    db->head = i;
    if (db->tail == NIL)
        db->tail = i;
}

static void
hash_unlink(struct deadband *db, size_t i)
{
    const struct entry *en = &db->e[i];
    size_t *p = &db->buckets[slot_of(db, en->id, en->route_len, en->id + en->route_len + 1,
                                     en->id_len - en->route_len - 1)];

    while (*p != i)
        p = &db->e[*p].hnext;
    *p = en->hnext;
}

enum deadband_verdict
deadband_check(struct deadband *db, const char *route, const void *key, size_t key_len,
               double v, double abs, double pct, double *last)
{
    size_t i = find(db, route, key, key_len);
    double band, prev;

    if (i == NIL)
        return DEADBAND_FIRST;
    prev = db->e[i].value;
    if (last != NULL)
        *last = prev;
    lru_unlink(db, i);     /* a check is a use: a key that keeps reporting stays */
    lru_push(db, i);
    band = fabs(prev) * pct / 100.0;
    if (abs > band)
        band = abs;
    return fabs(v - prev) > band ? DEADBAND_PAST : DEADBAND_INSIDE;
}

int
deadband_remember(struct deadband *db, const char *route, const void *key, size_t key_len,
                  double v)
{
    size_t i = find(db, route, key, key_len), rlen = strlen(route), h;
    struct entry *en;
    char *id;

    if (i != NIL) {
        db->e[i].value = v;
        lru_unlink(db, i);
        lru_push(db, i);
        return 0;
    }
    if ((id = malloc(rlen + 1 + key_len + 1)) == NULL)
        return -ENOMEM;
    memcpy(id, route, rlen + 1);
    if (key_len > 0)
        memcpy(id + rlen + 1, key, key_len);
    if (db->n == db->max) {
        i = db->tail;      /* the least recently used slot is reused */
        lru_unlink(db, i);
        hash_unlink(db, i);
        free(db->e[i].id);
        db->evictions++;
    } else {
        if (db->n == db->cap) {
            size_t cap = db->cap ? db->cap * 2 : 64;
            struct entry *ne;
            if (cap > db->max)
                cap = db->max;
            if ((ne = realloc(db->e, cap * sizeof(*ne))) == NULL) {
                free(id);
                return -ENOMEM;
            }
            db->e = ne;
            db->cap = cap;
        }
        i = db->n++;
    }
    en = &db->e[i];
    en->id = id;
    en->route_len = rlen;
    en->id_len = rlen + 1 + key_len;
    en->value = v;
    h = slot_of(db, route, rlen, key, key_len);
    en->hnext = db->buckets[h];
    db->buckets[h] = i;
    lru_push(db, i);
    return 0;
}

size_t
deadband_size(const struct deadband *db)
{
    return db->n;
}

uint64_t
deadband_evictions(const struct deadband *db)
{
    return db->evictions;
}

void
deadband_encode(double v, unsigned char out[DEADBAND_VALUE_LEN])
{
    uint64_t u;

    memcpy(&u, &v, sizeof(u));
    for (int i = 0; i < DEADBAND_VALUE_LEN; i++)
        out[i] = (unsigned char)(u >> (8 * i));
}

bool
deadband_decode(const void *p, size_t len, double *v)
{
    const unsigned char *b = p;
    uint64_t u = 0;

    if (len != DEADBAND_VALUE_LEN)
        return false;
    for (int i = 0; i < DEADBAND_VALUE_LEN; i++)
        u |= (uint64_t)b[i] << (8 * i);
    memcpy(v, &u, sizeof(*v));
    return isfinite(*v);
}

static int
load_row(const char *route, const void *key, size_t key_len, const void *value,
         size_t value_len, void *arg)
{
    struct deadband *db = arg;
    double v;

    if (!deadband_decode(value, value_len, &v))
        return 0;          /* not ours to judge: skip what we cannot read */
    return deadband_remember(db, route, key, key_len, v) < 0 ? -ENOMEM : 0;
}

int
deadband_load(struct deadband *db, const char *path, struct err *err)
{
    int rc;

    deadband_clear(db);
    if ((rc = spool_state_read(path, DEADBAND_STATE_PREFIX, load_row, db, err)) < 0) {
        deadband_clear(db);
        return rc;
    }
    return 0;
}
