/* aggregate.c - window arithmetic, accumulators, their route_state encoding, and the
 * value of a closed window.
 *
 * Why min/max/first/last are kept for every cell whatever its function: the cell is
 * fixed width, so the encoding needs no per-function layout and a reload that changes
 * a field's function reads the old rows without a migration (the window in flight
 * then reports the new function over the values it already saw).
 *
 * Threads: none; see aggregate.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/aggregate.h"
#include "sluice/buf.h"
#include "sluice/config.h"
#include "sluice/err.h"
#include "sluice/jpath.h"
#include "sluice/log.h"
#include "sluice/record.h"
#include "sluice/spool.h"

#define ACC_VERSION 1

static const char *const fn_names[] = {
    [AGGREGATE_COUNT] = "count", [AGGREGATE_SUM] = "sum",     [AGGREGATE_AVG] = "avg",
    [AGGREGATE_MIN] = "min",     [AGGREGATE_MAX] = "max",     [AGGREGATE_FIRST] = "first",
    [AGGREGATE_LAST] = "last",
};

bool
aggregate_fn_parse(const char *name, enum aggregate_fn *fn)
{
    for (size_t i = 0; i < sizeof(fn_names) / sizeof(fn_names[0]); i++)
        if (strcmp(name, fn_names[i]) == 0) {
            *fn = (enum aggregate_fn)i;
            return true;
        }
    return false;
}

const char *
aggregate_fn_name(enum aggregate_fn fn)
{
    return (size_t)fn < sizeof(fn_names) / sizeof(fn_names[0]) ? fn_names[fn] : "?";
}

int64_t
aggregate_window_start(int64_t ts, int64_t window_ms)
{
    int64_t r = ts % window_ms;

    return r < 0 ? ts - r - window_ms : ts - r;   /* floor, also before the epoch */
}

bool
aggregate_window_closed(int64_t start, int64_t window_ms, int64_t lateness_ms,
                        int64_t watermark)
{
    return watermark >= start + window_ms + lateness_ms;
}

int
aggregate_acc_init(struct aggregate_acc *a, int64_t start, size_t ncells, const char *topic,
                   const void *key, size_t key_len)
{
    memset(a, 0, sizeof(*a));
    if (ncells > AGGREGATE_MAX_FIELDS)
        return -EINVAL;
    a->start = start;
    a->ncells = ncells;
    if ((a->topic = strdup(topic != NULL ? topic : "")) == NULL ||
        (a->key = malloc(key_len + 1)) == NULL) {
        aggregate_acc_fini(a);
        return -ENOMEM;
    }
    if (key_len > 0)
        memcpy(a->key, key, key_len);
    a->key_len = key_len;
    return 0;
}

void
aggregate_acc_fini(struct aggregate_acc *a)
{
    free(a->topic);
    free(a->key);
    a->topic = NULL;
    a->key = NULL;
}

void
aggregate_acc_record(struct aggregate_acc *a, int64_t wall_ms)
{
    a->records++;
    a->touched_ms = wall_ms;
}

void
aggregate_acc_add(struct aggregate_acc *a, size_t cell, double v, int64_t ts)
{
    struct aggregate_cell *c = &a->cell[cell];

    if (cell >= a->ncells || !isfinite(v))
        return;
    if (c->n == 0) {
        c->min = c->max = c->first = c->last = v;
        c->first_ts = c->last_ts = ts;
    } else {
        if (v < c->min)
            c->min = v;
        if (v > c->max)
            c->max = v;
        if (ts < c->first_ts) {
            c->first = v;
            c->first_ts = ts;
        }
        if (ts >= c->last_ts) {
            c->last = v;
            c->last_ts = ts;
        }
    }
    c->sum += v;
    c->n++;
}

bool
aggregate_cell_value(const struct aggregate_acc *a, size_t cell, enum aggregate_fn fn,
                     bool has_field, double *out)
{
    const struct aggregate_cell *c = &a->cell[cell];

    if (fn == AGGREGATE_COUNT) {
        *out = (double)(has_field ? c->n : a->records);
        return true;
    }
    if (c->n == 0)
        return false;
    switch (fn) {
    case AGGREGATE_SUM:   *out = c->sum; break;
    case AGGREGATE_AVG:   *out = c->sum / (double)c->n; break;
    case AGGREGATE_MIN:   *out = c->min; break;
    case AGGREGATE_MAX:   *out = c->max; break;
    case AGGREGATE_FIRST: *out = c->first; break;
    case AGGREGATE_LAST:  *out = c->last; break;
    default:              return false;
    }
    return true;
}

/* ---- encoding ---------------------------------------------------------------- */

static int
put_u64(struct buf *b, uint64_t u)
{
    unsigned char x[8];

    for (int i = 0; i < 8; i++)
        x[i] = (unsigned char)(u >> (8 * i));
    return buf_append(b, x, 8);
}

static int
put_f64(struct buf *b, double v)
{
    uint64_t u;

    memcpy(&u, &v, sizeof(u));
    return put_u64(b, u);
}

static bool
get_u64(const unsigned char **p, const unsigned char *end, uint64_t *u)
{
    if (end - *p < 8)
        return false;
    *u = 0;
    for (int i = 0; i < 8; i++)
        *u |= (uint64_t)(*p)[i] << (8 * i);
    *p += 8;
    return true;
}

static bool
get_f64(const unsigned char **p, const unsigned char *end, double *v)
{
    uint64_t u;

    if (!get_u64(p, end, &u))
        return false;
    memcpy(v, &u, sizeof(*v));
    return true;
}

int
aggregate_acc_encode(const struct aggregate_acc *a, struct buf *b)
{
    unsigned char ver = ACC_VERSION;
    size_t tlen = strlen(a->topic);
    int rc = 0;

    rc |= buf_append(b, &ver, 1);
    rc |= put_u64(b, (uint64_t)a->start);
    rc |= put_u64(b, a->records);
    rc |= put_u64(b, (uint64_t)a->touched_ms);
    rc |= put_u64(b, tlen);
    rc |= buf_append(b, a->topic, tlen);
    rc |= put_u64(b, a->ncells);
    for (size_t i = 0; i < a->ncells; i++) {
        const struct aggregate_cell *c = &a->cell[i];
        rc |= put_u64(b, c->n);
        rc |= put_f64(b, c->sum);
        rc |= put_f64(b, c->min);
        rc |= put_f64(b, c->max);
        rc |= put_f64(b, c->first);
        rc |= put_f64(b, c->last);
        rc |= put_u64(b, (uint64_t)c->first_ts);
        rc |= put_u64(b, (uint64_t)c->last_ts);
    }
    return rc != 0 ? -ENOMEM : 0;
}

bool
aggregate_acc_decode(struct aggregate_acc *a, const void *p, size_t len, const void *key,
                     size_t key_len, size_t ncells)
{
    const unsigned char *q = p, *end = q + len;
    uint64_t start, records, touched, tlen, n;
    char *topic;

    memset(a, 0, sizeof(*a));
    if (len < 1 || *q++ != ACC_VERSION || !get_u64(&q, end, &start) ||
        !get_u64(&q, end, &records) || !get_u64(&q, end, &touched) ||
        !get_u64(&q, end, &tlen) || tlen > (uint64_t)(end - q))
        return false;
    if ((topic = malloc(tlen + 1)) == NULL)
        return false;
    memcpy(topic, q, tlen);
    topic[tlen] = '\0';
    q += tlen;
    if (!get_u64(&q, end, &n) || n != ncells ||
        aggregate_acc_init(a, (int64_t)start, ncells, topic, key, key_len) < 0) {
        free(topic);
        return false;
    }
    free(topic);
    a->records = records;
    a->touched_ms = (int64_t)touched;
    for (size_t i = 0; i < ncells; i++) {
        struct aggregate_cell *c = &a->cell[i];
        uint64_t fts, lts;
        if (!get_u64(&q, end, &c->n) || !get_f64(&q, end, &c->sum) ||
            !get_f64(&q, end, &c->min) || !get_f64(&q, end, &c->max) ||
            !get_f64(&q, end, &c->first) || !get_f64(&q, end, &c->last) ||
            !get_u64(&q, end, &fts) || !get_u64(&q, end, &lts)) {
            aggregate_acc_fini(a);
            return false;
        }
        c->first_ts = (int64_t)fts;
        c->last_ts = (int64_t)lts;
    }
    if (q != end) {
        aggregate_acc_fini(a);
        return false;
    }
    return true;
}

/* ---- the closed window's value ------------------------------------------------ */

static int
render_name(struct buf *b, const char *s)
{
    int rc = buf_append(b, "\"", 1);

    for (; *s != '\0' && rc == 0; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            rc = buf_printf(b, "\\%c", ch);
        else if (ch < 0x20)
            rc = buf_printf(b, "\\u%04x", ch);
        else
            rc = buf_append(b, s, 1);
    }
    return rc == 0 ? buf_append(b, "\"", 1) : rc;
}

static int
render_number(struct buf *b, double v)
{
    char tmp[40];

    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        return buf_printf(b, "%.0f", v);
    for (int prec = 15; prec <= 17; prec++) {   /* shortest that reads back the same */
        snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    return buf_printf(b, "%s", tmp);
}

int
aggregate_render(const struct aggregate_acc *a, int64_t window_ms, const char *const *names,
                 const enum aggregate_fn *fns, const bool *has_field, struct buf *b)
{
    int rc = buf_printf(b, "{\"window_start\":%lld,\"window_end\":%lld", (long long)a->start,
                        (long long)(a->start + window_ms));

    for (size_t i = 0; i < a->ncells && rc == 0; i++) {
        double v;
        if ((rc = buf_append(b, ",", 1)) < 0 || (rc = render_name(b, names[i])) < 0 ||
            (rc = buf_append(b, ":", 1)) < 0)
            break;
        if (aggregate_cell_value(a, i, fns[i], has_field[i], &v) && isfinite(v))
            rc = render_number(b, v);
        else
            rc = buf_append(b, "null", 4);
    }
    return rc == 0 ? buf_append(b, "}", 1) : -ENOMEM;
}

/* ---- the store ------------------------------------------------------------------
 *
 * Open windows sit in one array with a chained hash over (route, window start, key);
 * the array is small (keys x windows still open), so closing walks it. */

struct open_win {
    char                *route;     /* owned: the route name */
    struct aggregate_acc acc;       /* acc.key is the Kafka key */
    size_t               hnext;     /* bucket chain, or NIL */
};

struct route_mark {
    char    *route;      /* owned */
    int64_t  wm;         /* the highest event time seen */
    bool     has_wm;
    int64_t  next_close; /* no open window closes before the watermark reaches this */
};

struct closed_mark {
    char    *route;      /* owned */
    void    *key;        /* owned */
    size_t   key_len;
    int64_t  start;      /* the latest window start closed for this key */
    size_t   hnext;      /* chain in cbuckets, or NIL */
};

/* Backing storage of one step's output. */
struct step_rec {
    struct buf  value, hdrs, rowkey;
    struct aggregate_acc acc;       /* the closed window, kept until the next step */
    bool        has_acc;
};
struct step_put {
    struct buf route, key, value;
    bool       del;          /* a delete of the row */
};

#define NIL SIZE_MAX

struct aggregate_store {
    bool                 loaded;
    struct open_win     *w;
    size_t               nw, capw;
    size_t              *buckets;
    size_t               nbuckets;
    struct route_mark   *marks;
    size_t               nmarks;
    struct closed_mark  *closed;       /* never removed one by one: only cleared */
    size_t               nclosed, capclosed;
    size_t              *cbuckets;     /* hash over (route, key) of closed */
    size_t               ncbuckets;
    /* output of the current step */
    struct record       *recs;
    struct step_rec     *srecs;
    size_t               nrecs, caprecs;
    struct spool_state_put *puts;
    struct step_put     *sputs;
    size_t               nputs, capputs;
};

static uint64_t
agg_hash(const char *route, int64_t start, const void *key, size_t klen)
{
    const unsigned char *b = (const unsigned char *)route;
    uint64_t h = UINT64_C(14695981039346656037);

    for (; *b != '\0'; b++)
        h = (h ^ *b) * UINT64_C(1099511628211);
    h = (h ^ (uint64_t)start) * UINT64_C(1099511628211);
    b = key;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ b[i]) * UINT64_C(1099511628211);
    return h;
}

int
aggregate_store_create(struct aggregate_store **out)
{
    struct aggregate_store *st;

    *out = NULL;
    if ((st = calloc(1, sizeof(*st))) == NULL)
        return -ENOMEM;
    st->nbuckets = 1024;
    if ((st->buckets = malloc(st->nbuckets * sizeof(*st->buckets))) == NULL) {
        free(st);
        return -ENOMEM;
    }
    for (size_t i = 0; i < st->nbuckets; i++)
        st->buckets[i] = NIL;
    st->ncbuckets = 1024;
    if ((st->cbuckets = malloc(st->ncbuckets * sizeof(*st->cbuckets))) == NULL) {
        free(st->buckets);
        free(st);
        return -ENOMEM;
    }
    for (size_t i = 0; i < st->ncbuckets; i++)
        st->cbuckets[i] = NIL;
    *out = st;
    return 0;
}

static void
step_reset(struct aggregate_store *st)
{
    for (size_t i = 0; i < st->nrecs; i++)
        if (st->srecs[i].has_acc) {
            aggregate_acc_fini(&st->srecs[i].acc);
            st->srecs[i].has_acc = false;
        }
    st->nrecs = 0;
    st->nputs = 0;
}

void
aggregate_store_clear(struct aggregate_store *st)
{
    step_reset(st);
    for (size_t i = 0; i < st->nw; i++) {
        free(st->w[i].route);
        aggregate_acc_fini(&st->w[i].acc);
    }
    st->nw = 0;
    for (size_t i = 0; i < st->nbuckets; i++)
        st->buckets[i] = NIL;
    for (size_t i = 0; i < st->nmarks; i++)
        free(st->marks[i].route);
    free(st->marks);
    st->marks = NULL;
    st->nmarks = 0;
    for (size_t i = 0; i < st->nclosed; i++) {
        free(st->closed[i].route);
        free(st->closed[i].key);
    }
    st->nclosed = 0;
    for (size_t i = 0; i < st->ncbuckets; i++)
        st->cbuckets[i] = NIL;
    st->loaded = false;
}

void
aggregate_store_destroy(struct aggregate_store *st)
{
    if (st == NULL)
        return;
    aggregate_store_clear(st);
    for (size_t i = 0; i < st->caprecs; i++) {
        buf_fini(&st->srecs[i].value);
        buf_fini(&st->srecs[i].hdrs);
        buf_fini(&st->srecs[i].rowkey);
    }
    for (size_t i = 0; i < st->capputs; i++) {
        buf_fini(&st->sputs[i].route);
        buf_fini(&st->sputs[i].key);
        buf_fini(&st->sputs[i].value);
    }
    free(st->recs);
    free(st->srecs);
    free(st->puts);
    free(st->sputs);
    free(st->w);
    free(st->closed);
    free(st->cbuckets);
    free(st->buckets);
    free(st);
}

size_t
aggregate_store_size(const struct aggregate_store *st)
{
    return st->nw;
}

static size_t
win_find(const struct aggregate_store *st, const char *route, int64_t start, const void *key,
         size_t klen)
{
    size_t b = (size_t)(agg_hash(route, start, key, klen) & (st->nbuckets - 1));

    for (size_t i = st->buckets[b]; i != NIL; i = st->w[i].hnext) {
        const struct open_win *w = &st->w[i];
        if (w->acc.start == start && w->acc.key_len == klen && strcmp(w->route, route) == 0 &&
            (klen == 0 || memcmp(w->acc.key, key, klen) == 0))
            return i;
    }
    return NIL;
}

static void
win_rehash(struct aggregate_store *st)
{
    for (size_t i = 0; i < st->nbuckets; i++)
        st->buckets[i] = NIL;
    for (size_t i = 0; i < st->nw; i++) {
        struct open_win *w = &st->w[i];
        size_t b = (size_t)(agg_hash(w->route, w->acc.start, w->acc.key, w->acc.key_len) &
                            (st->nbuckets - 1));
        w->hnext = st->buckets[b];
        st->buckets[b] = i;
    }
}

/* Takes acc (moved in) for route. Returns the index, or NIL when out of memory (acc
 * is then finished). */
static size_t
win_add(struct aggregate_store *st, const char *route, struct aggregate_acc *acc)
{
    struct open_win *w;
    size_t b;

    if (st->nw == st->capw) {
        size_t cap = st->capw ? st->capw * 2 : 64;
        struct open_win *nw = realloc(st->w, cap * sizeof(*nw));
        if (nw == NULL)
            goto oom;
        st->w = nw;
        st->capw = cap;
    }
    if (st->nw >= st->nbuckets) {
        size_t *nb = realloc(st->buckets, st->nbuckets * 2 * sizeof(*nb));
        if (nb == NULL)
            goto oom;
        st->buckets = nb;
        st->nbuckets *= 2;
        win_rehash(st);
    }
    w = &st->w[st->nw];
    if ((w->route = strdup(route)) == NULL)
        goto oom;
    w->acc = *acc;
    b = (size_t)(agg_hash(route, acc->start, acc->key, acc->key_len) & (st->nbuckets - 1));
    w->hnext = st->buckets[b];
    st->buckets[b] = st->nw;
    return st->nw++;
oom:
    aggregate_acc_fini(acc);
    return NIL;
}

static size_t
win_slot(const struct aggregate_store *st, const struct open_win *w)
{
    return (size_t)(agg_hash(w->route, w->acc.start, w->acc.key, w->acc.key_len) &
                    (st->nbuckets - 1));
}

static void
win_unlink(struct aggregate_store *st, size_t i)
{
    size_t *p = &st->buckets[win_slot(st, &st->w[i])];

    while (*p != i)
        p = &st->w[*p].hnext;
    *p = st->w[i].hnext;
}

/* Removes open window i, moving its accumulator to *acc; the last window takes its
 * index. */
static void
win_remove(struct aggregate_store *st, size_t i, struct aggregate_acc *acc)
{
    size_t last = st->nw - 1, b;

    *acc = st->w[i].acc;
    win_unlink(st, i);
    free(st->w[i].route);
    if (i != last) {
        win_unlink(st, last);
        st->w[i] = st->w[last];
        b = win_slot(st, &st->w[i]);
        st->w[i].hnext = st->buckets[b];
        st->buckets[b] = i;
    }
    st->nw--;
}

static struct route_mark *
mark_of(struct aggregate_store *st, const char *route)
{
    struct route_mark *m;

    for (size_t i = 0; i < st->nmarks; i++)
        if (strcmp(st->marks[i].route, route) == 0)
            return &st->marks[i];
    if ((m = realloc(st->marks, (st->nmarks + 1) * sizeof(*m))) == NULL)
        return NULL;
    st->marks = m;
    m = &st->marks[st->nmarks];
    if ((m->route = strdup(route)) == NULL)
        return NULL;
    m->wm = 0;
    m->has_wm = false;
    m->next_close = INT64_MIN;   /* unknown: the first advance walks the windows */
    st->nmarks++;
    return m;
}

static size_t
closed_slot(const struct aggregate_store *st, const char *route, const void *key, size_t klen)
{
    return (size_t)(agg_hash(route, 0, key, klen) & (st->ncbuckets - 1));
}

static struct closed_mark *
closed_find(const struct aggregate_store *st, const char *route, const void *key, size_t klen)
{
    for (size_t i = st->cbuckets[closed_slot(st, route, key, klen)]; i != NIL;
         i = st->closed[i].hnext) {
        struct closed_mark *c = &st->closed[i];
        if (c->key_len == klen && strcmp(c->route, route) == 0 &&
            (klen == 0 || memcmp(c->key, key, klen) == 0))
            return c;
    }
    return NULL;
}

static int
closed_set(struct aggregate_store *st, const char *route, const void *key, size_t klen,
           int64_t start)
{
    struct closed_mark *c = closed_find(st, route, key, klen);

    if (c != NULL) {
        if (start > c->start)
            c->start = start;
        return 0;
    }
    if (st->nclosed == st->capclosed) {
        size_t cap = st->capclosed ? st->capclosed * 2 : 64;
        struct closed_mark *nc = realloc(st->closed, cap * sizeof(*nc));
        if (nc == NULL)
            return -ENOMEM;
        st->closed = nc;
        st->capclosed = cap;
    }
    if (st->nclosed >= st->ncbuckets) {
        size_t *nb = realloc(st->cbuckets, st->ncbuckets * 2 * sizeof(*nb));
        if (nb == NULL)
            return -ENOMEM;
        st->cbuckets = nb;
        st->ncbuckets *= 2;
        for (size_t i = 0; i < st->ncbuckets; i++)
            st->cbuckets[i] = NIL;
        for (size_t i = 0; i < st->nclosed; i++) {
            size_t b = closed_slot(st, st->closed[i].route, st->closed[i].key,
                                   st->closed[i].key_len);
            st->closed[i].hnext = st->cbuckets[b];
            st->cbuckets[b] = i;
        }
    }
    c = &st->closed[st->nclosed];
    c->route = strdup(route);
    c->key = malloc(klen + 1);
    if (c->route == NULL || c->key == NULL) {
        free(c->route);
        free(c->key);
        return -ENOMEM;
    }
    if (klen > 0)
        memcpy(c->key, key, klen);
    c->key_len = klen;
    c->start = start;
    {
        size_t b = closed_slot(st, route, key, klen);
        c->hnext = st->cbuckets[b];
        st->cbuckets[b] = st->nclosed;
    }
    st->nclosed++;
    return 0;
}

static void
be64(unsigned char out[8], int64_t v)
{
    uint64_t u = (uint64_t)v ^ (UINT64_C(1) << 63);   /* sorts like the signed value */

    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(u >> (56 - 8 * i));
}

static void
le64(unsigned char out[8], int64_t v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)((uint64_t)v >> (8 * i));
}

static int64_t
from_le64(const unsigned char *p)
{
    uint64_t u = 0;

    for (int i = 0; i < 8; i++)
        u |= (uint64_t)p[i] << (8 * i);
    return (int64_t)u;
}

/* ---- output of a step ---- */

static struct step_put *
put_new(struct aggregate_store *st, const char *prefix, const char *route)
{
    struct step_put *p;

    if (st->nputs == st->capputs) {
        size_t cap = st->capputs ? st->capputs * 2 : 16;
        struct spool_state_put *np = realloc(st->puts, cap * sizeof(*np));
        struct step_put *ns;
        if (np == NULL)
            return NULL;
        st->puts = np;
        if ((ns = realloc(st->sputs, cap * sizeof(*ns))) == NULL)
            return NULL;
        st->sputs = ns;
        for (size_t i = st->capputs; i < cap; i++) {
            buf_init(&ns[i].route);
            buf_init(&ns[i].key);
            buf_init(&ns[i].value);
        }
        st->capputs = cap;
    }
    p = &st->sputs[st->nputs];
    buf_reset(&p->route);
    buf_reset(&p->key);
    buf_reset(&p->value);
    p->del = false;
    if (buf_printf(&p->route, "%s%s", prefix, route) < 0)
        return NULL;
    st->nputs++;
    return p;
}

/* Points the spool puts at their buffers (after every buffer stopped moving). */
static void
puts_fix(struct aggregate_store *st)
{
    for (size_t i = 0; i < st->nputs; i++) {
        struct step_put *p = &st->sputs[i];
        st->puts[i] = (struct spool_state_put){
            p->route.data, p->key.len ? p->key.data : "", p->key.len,
            p->del ? NULL : (p->value.len ? p->value.data : ""), p->value.len };
    }
}

static const struct config_route *
route_by_name(const struct config *cfg, const char *name, size_t *idx)
{
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (strcmp(cfg->routes[i].name, name) == 0 && cfg->routes[i].agg_window_ms > 0) {
            if (idx != NULL)
                *idx = i;
            return &cfg->routes[i];
        }
    return NULL;
}

static int
put_acc(struct aggregate_store *st, const char *route,
        const struct aggregate_acc *a)
{
    struct step_put *p;
    unsigned char s[8];

    if ((p = put_new(st, AGGREGATE_STATE_PREFIX, route)) == NULL)
        return -ENOMEM;
    be64(s, a->start);
        if (buf_append(&p->key, s, 8) < 0 || buf_append(&p->key, a->key, a->key_len) < 0 ||
        aggregate_acc_encode(a, &p->value) < 0)
        return -ENOMEM;
    return 0;
}

/* Closes open window i of route r: the record, the row's delete, the closed mark. */
static int
close_window(struct aggregate_store *st, const struct config *cfg,
             const struct config_route *r, size_t ridx, size_t i, int64_t now_ms)
{
    const char *names[AGGREGATE_MAX_FIELDS];
    enum aggregate_fn fns[AGGREGATE_MAX_FIELDS];
    bool has[AGGREGATE_MAX_FIELDS];
    char txt[24];
    struct step_rec *sr;
    struct step_put *p;
    struct record *rec;
    unsigned char s[8];
    int n;

    if (st->nrecs == st->caprecs) {
        size_t cap = st->caprecs ? st->caprecs * 2 : 16;
        struct record *nr = realloc(st->recs, cap * sizeof(*nr));
        struct step_rec *ns;
        if (nr == NULL)
            return -ENOMEM;
        st->recs = nr;
        if ((ns = realloc(st->srecs, cap * sizeof(*ns))) == NULL)
            return -ENOMEM;
        st->srecs = ns;
        for (size_t k = st->caprecs; k < cap; k++) {
            buf_init(&ns[k].value);
            buf_init(&ns[k].hdrs);
            buf_init(&ns[k].rowkey);
            ns[k].has_acc = false;
        }
        st->caprecs = cap;
    }
    sr = &st->srecs[st->nrecs];
    buf_reset(&sr->value);
    buf_reset(&sr->hdrs);
    win_remove(st, i, &sr->acc);
    sr->has_acc = true;
    st->nrecs++;
    if (sr->acc.ncells > r->nagg_fields)
        sr->acc.ncells = r->nagg_fields;   /* a reload dropped fields */
    for (size_t k = 0; k < sr->acc.ncells; k++) {
        names[k] = r->agg_fields[k].name;
        fns[k] = (enum aggregate_fn)r->agg_fields[k].fn;
        has[k] = r->agg_fields[k].field != NULL;
    }
    if (aggregate_render(&sr->acc, r->agg_window_ms, names, fns, has, &sr->value) < 0)
        return -ENOMEM;
    n = snprintf(txt, sizeof(txt), "%lld", (long long)sr->acc.start);
    if (record_hdrs_add(&sr->hdrs, "window.start", 12, txt, (size_t)n) < 0)
        return -ENOMEM;
    n = snprintf(txt, sizeof(txt), "%lld", (long long)(sr->acc.start + r->agg_window_ms));
    if (record_hdrs_add(&sr->hdrs, "window.end", 10, txt, (size_t)n) < 0)
        return -ENOMEM;
    rec = &st->recs[st->nrecs - 1];
    *rec = (struct record){ 0 };
    rec->topic = sr->acc.topic;
    rec->topic_len = strlen(sr->acc.topic);
    rec->key = sr->acc.key_len > 0 ? sr->acc.key : NULL;   /* a route without key: */
    rec->key_len = sr->acc.key_len;                         /* no key, as it came */
    rec->value = sr->value.data;
    rec->value_len = sr->value.len;
    rec->mqtt_topic = "";
    rec->lane = cfg->lanes[r->lane].name;
    rec->hdrs = sr->hdrs.data;
    rec->hdrs_len = sr->hdrs.len;
    rec->event_ms = sr->acc.start + r->agg_window_ms;
    rec->ingest_ms = now_ms;
    rec->route = (uint32_t)ridx;
    rec->qos = 1;

    /* the accumulator's row goes */
    if ((p = put_new(st, AGGREGATE_STATE_PREFIX, r->name)) == NULL)
        return -ENOMEM;
    st->sputs[st->nputs - 1].del = true;
    be64(s, sr->acc.start);
    if (buf_append(&p->key, s, 8) < 0 || buf_append(&p->key, sr->acc.key, sr->acc.key_len) < 0)
        return -ENOMEM;
    /* and the key remembers that this window is closed */
    if (closed_set(st, r->name, sr->acc.key, sr->acc.key_len, sr->acc.start) < 0 ||
        (p = put_new(st, "aggclosed/", r->name)) == NULL)
        return -ENOMEM;
    le64(s, closed_find(st, r->name, sr->acc.key, sr->acc.key_len)->start);
    if (buf_append(&p->key, sr->acc.key, sr->acc.key_len) < 0 || buf_append(&p->value, s, 8) < 0)
        return -ENOMEM;
    return 0;
}

/* ---- loading ---- */

struct load_ctx {
    struct aggregate_store *st;
    const struct config    *cfg;
};

static int
load_row(const char *route, const void *key, size_t key_len, const void *value,
         size_t value_len, void *arg)
{
    struct load_ctx *lc = arg;
    const struct config_route *r;
    struct aggregate_acc acc;

    if (strncmp(route, AGGREGATE_STATE_PREFIX, strlen(AGGREGATE_STATE_PREFIX)) == 0) {
        route += strlen(AGGREGATE_STATE_PREFIX);
        if ((r = route_by_name(lc->cfg, route, NULL)) == NULL || key_len < 8 ||
            !aggregate_acc_decode(&acc, value, value_len, (const char *)key + 8, key_len - 8,
                                  r->nagg_fields))
            return 0;   /* not a window of this config: left in the file as it is */
        return win_add(lc->st, route, &acc) == NIL ? -ENOMEM : 0;
    }
    if (strncmp(route, "aggwm/", 6) == 0 && value_len == 8) {
        struct route_mark *m = mark_of(lc->st, route + 6);
        if (m == NULL)
            return -ENOMEM;
        m->wm = from_le64(value);
        m->has_wm = true;
        return 0;
    }
    if (strncmp(route, "aggclosed/", 10) == 0 && value_len == 8)
        return closed_set(lc->st, route + 10, key, key_len, from_le64(value));
    return 0;
}

static int
store_load(struct aggregate_store *st, const struct config *cfg)
{
    struct load_ctx lc = { st, cfg };
    struct err e = { 0 };
    int rc;

    if (st->loaded)
        return 0;
    aggregate_store_clear(st);
    if (cfg->spool.path != NULL &&
        (rc = spool_state_read(cfg->spool.path, "agg", load_row, &lc, &e)) < 0) {
        aggregate_store_clear(st);
        if (rc == -ENOMEM)
            return rc;
        log_warn("aggregate", "%s (starting with no open windows)", e.msg);
    }
    st->loaded = true;
    return 0;
}

static void
step_begin(struct aggregate_store *st, struct aggregate_step *out)
{
    step_reset(st);
    memset(out, 0, sizeof(*out));
}

static void
step_end(struct aggregate_store *st, struct aggregate_step *out)
{
    puts_fix(st);
    out->recs = st->recs;
    out->nrecs = st->nrecs;
    out->puts = st->puts;
    out->nputs = st->nputs;
}

int
aggregate_store_accept(struct aggregate_store *st, const struct config *cfg, size_t ridx,
                       const struct record *rec, const json_t *doc, int64_t now_ms,
                       struct aggregate_step *out)
{
    const struct config_route *r = &cfg->routes[ridx];
    const char *key = rec->key != NULL ? rec->key : "";
    int64_t W = r->agg_window_ms, ts = rec->event_ms, start;
    const struct closed_mark *c;
    struct route_mark *m;
    struct aggregate_acc acc, *a;
    size_t i;
    int rc;

    step_begin(st, out);
    if ((rc = store_load(st, cfg)) < 0)
        return rc;
    start = aggregate_window_start(ts, W);
    out->window_start = start;
    out->window_end = start + W;
    if ((m = mark_of(st, r->name)) == NULL)
        return -ENOMEM;
    if ((m->has_wm && aggregate_window_closed(start, W, r->agg_lateness_ms, m->wm)) ||
        ((c = closed_find(st, r->name, key, rec->key_len)) != NULL && start <= c->start)) {
        out->late = true;
        return 0;
    }
    if ((i = win_find(st, r->name, start, key, rec->key_len)) == NIL) {
        char topic[256];   /* a Kafka topic is at most 249 bytes */

        if (start + W + r->agg_lateness_ms < m->next_close)
            m->next_close = start + W + r->agg_lateness_ms;
        snprintf(topic, sizeof(topic), "%.*s", (int)rec->topic_len, rec->topic);
        if ((rc = aggregate_acc_init(&acc, start, r->nagg_fields, topic, key,
                                     rec->key_len)) < 0)
            return rc;
        if ((i = win_add(st, r->name, &acc)) == NIL)
            return -ENOMEM;
    }
    a = &st->w[i].acc;
    aggregate_acc_record(a, now_ms);
    for (size_t k = 0; k < r->nagg_fields; k++) {
        const json_t *v;
        if (r->agg_fields[k].field == NULL)
            continue;
        v = doc != NULL ? jpath_get(r->agg_fields[k].field, doc) : NULL;
        if (v != NULL && json_is_number(v))
            aggregate_acc_add(a, k, json_number_value(v), ts);
    }
    if ((rc = put_acc(st, r->name, a)) < 0)
        return rc;
    if (!m->has_wm || ts > m->wm) {
        struct step_put *p;
        unsigned char s[8];

        m->wm = ts;
        m->has_wm = true;
        if ((p = put_new(st, "aggwm/", r->name)) == NULL)
            return -ENOMEM;
        le64(s, ts);
        if (buf_append(&p->value, s, 8) < 0)
            return -ENOMEM;
        /* Walk the windows only when one of them can close: the watermark moves on
         * almost every message, windows close once per window length. */
        if (m->wm >= m->next_close) {
            int64_t next = INT64_MAX;
            for (size_t j = 0; j < st->nw;) {
                struct open_win *w = &st->w[j];
                if (strcmp(w->route, r->name) != 0) {
                    j++;
                } else if (aggregate_window_closed(w->acc.start, W, r->agg_lateness_ms,
                                                   m->wm)) {
                    if ((rc = close_window(st, cfg, r, ridx, j, now_ms)) < 0)
                        return rc;   /* j now holds what was the last window */
                } else {
                    if (w->acc.start + W + r->agg_lateness_ms < next)
                        next = w->acc.start + W + r->agg_lateness_ms;
                    j++;
                }
            }
            m->next_close = next;
        }
    }
    step_end(st, out);
    return 0;
}

int
aggregate_store_expire(struct aggregate_store *st, const struct config *cfg, int64_t now_ms,
                       struct aggregate_step *out)
{
    int rc;

    step_begin(st, out);
    if ((rc = store_load(st, cfg)) < 0)
        return rc;
    for (size_t j = 0; j < st->nw;) {
        struct open_win *w = &st->w[j];
        const struct config_route *r;
        size_t ridx;
        if ((r = route_by_name(cfg, w->route, &ridx)) != NULL &&
            now_ms - w->acc.touched_ms >= r->agg_window_ms) {
            if ((rc = close_window(st, cfg, r, ridx, j, now_ms)) < 0)
                return rc;
            continue;
        }
        j++;
    }
    step_end(st, out);
    return 0;
}
