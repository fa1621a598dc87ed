/* sparkplug_state.c - Sparkplug alias maps in memory, durable in the spool's file.
 *
 * Memory: one open-addressing hash table of scopes keyed "group/edge_node/device"
 * ('/' cannot occur inside an MQTT topic level, so the key is unambiguous). A scope
 * holds its BIRTH's metrics twice, sorted by alias and by name, so a DATA message
 * resolves each metric with a binary search and no allocation.
 *
 * Disk: table sparkplug_alias in the spool file, created IF NOT EXISTS, one row per
 * BIRTH metric; a BIRTH replaces its scope's rows in one transaction. This
 * connection never touches user_version (the spool's schema version) nor the
 * journal mode of an existing file (the spool sets WAL; a file we create ourselves,
 * in tests, gets WAL too). Writes use BEGIN IMMEDIATE, waiting for the lock only
 * at BIRTHs and only as long as host.birth_busy_ms (see the header for why): a busy
 * database leaves the scope pending, retried on the next call. Lookups never touch
 * SQLite. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "sluice/err.h"
#include "sluice/sparkplug_state.h"

#define SPB_CLOSE_BUSY_MS 1000

struct sparkplug_scope {
    char                        *key;       /* "group/edge_node/device", owned */
    size_t                       glen, elen; /* lengths of group and edge_node in key */
    bool                         born;      /* a BIRTH is known */
    bool                         pending;   /* BIRTH not yet written to disk */
    bool                         has_seq;   /* edge node scopes: last_seq is valid */
    uint8_t                      last_seq;
    bool                         has_rebirth; /* edge node scopes: rebirth_ms is valid */
    int64_t                      rebirth_ms;  /* monotonic time of the last request */
    struct sparkplug_metric_def *defs;      /* sorted by name; names owned */
    struct sparkplug_metric_def **by_alias; /* the aliased ones, sorted by alias */
    size_t                       ndefs, naliased;
};

struct sparkplug_state {
    sqlite3                 *db;        /* NULL: memory only */
    bool                     read_only;
    struct sparkplug_scope **slots;     /* hash table, power of two */
    size_t                   nslots, nscopes;
    size_t                   npending;
    struct sparkplug_host    host;
};

static const char SQL_CREATE[] =
    "CREATE TABLE IF NOT EXISTS sparkplug_alias ("
    " grp TEXT NOT NULL, edge_node TEXT NOT NULL, device TEXT NOT NULL,"
    " name TEXT NOT NULL, alias INTEGER, datatype INTEGER NOT NULL,"
    " PRIMARY KEY (grp, edge_node, device, name)) WITHOUT ROWID";

static uint64_t
spb_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void
spb_scope_clear(struct sparkplug_scope *sc)
{
    for (size_t i = 0; i < sc->ndefs; i++)
        free((char *)sc->defs[i].name);
    free(sc->defs);
    free(sc->by_alias);
    sc->defs = NULL;
    sc->by_alias = NULL;
    sc->ndefs = sc->naliased = 0;
}

static void
spb_scope_free(struct sparkplug_scope *sc)
{
    if (sc == NULL)
        return;
    spb_scope_clear(sc);
    free(sc->key);
    free(sc);
}

static char *
spb_key(const char *group, const char *edge, const char *device)
{
    size_t g = strlen(group), e = strlen(edge), d = strlen(device);
    char *k = malloc(g + e + d + 3);

    if (k == NULL)
        return NULL;
    memcpy(k, group, g);
    k[g] = '/';
    memcpy(k + g + 1, edge, e);
    k[g + 1 + e] = '/';
    memcpy(k + g + e + 2, device, d);
    k[g + e + d + 2] = '\0';
    return k;
}

/* Slot of key: the scope holding it, or the empty slot where it would go. */
static size_t
spb_slot(const struct sparkplug_state *st, const char *key)
{
    size_t mask = st->nslots - 1, i = (size_t)spb_hash(key) & mask;

    while (st->slots[i] != NULL && strcmp(st->slots[i]->key, key) != 0)
        i = (i + 1) & mask;
    return i;
}

static int
spb_grow(struct sparkplug_state *st)
{
    struct sparkplug_scope **old = st->slots;
    size_t nold = st->nslots, n = nold ? nold * 2 : 64;

    if ((st->slots = calloc(n, sizeof(*st->slots))) == NULL) {
        st->slots = old;
        return -ENOMEM;
    }
    st->nslots = n;
    for (size_t i = 0; i < nold; i++) {
        if (old[i] != NULL)
            st->slots[spb_slot(st, old[i]->key)] = old[i];
    }
    free(old);
    return 0;
}

static struct sparkplug_scope *
spb_lookup(const struct sparkplug_state *st, const char *group, const char *edge,
           const char *device)
{
    char stack[512], *key = stack;
    size_t g = strlen(group), e = strlen(edge), d = strlen(device);
    struct sparkplug_scope *sc;

    if (st == NULL || st->nslots == 0)
        return NULL;
    if (g + e + d + 3 > sizeof(stack)) {
        if ((key = spb_key(group, edge, device)) == NULL)
            return NULL;
    } else {
        snprintf(stack, sizeof(stack), "%s/%s/%s", group, edge, device);
    }
    sc = st->slots[spb_slot(st, key)];
    if (key != stack)
        free(key);
    return sc;
}

/* Finds or adds the scope. NULL on -ENOMEM or past SPARKPLUG_STATE_MAX_SCOPES. */
static struct sparkplug_scope *
spb_scope_get(struct sparkplug_state *st, const char *group, const char *edge,
              const char *device, int *rc)
{
    struct sparkplug_scope *sc;
    char *key;
    size_t i;

    *rc = 0;
    if ((sc = spb_lookup(st, group, edge, device)) != NULL)
        return sc;
    if (st->nscopes >= SPARKPLUG_STATE_MAX_SCOPES) {
        *rc = -ENOSPC;
        return NULL;
    }
    if ((st->nscopes + 1) * 10 >= st->nslots * 7 && (*rc = spb_grow(st)) < 0)
        return NULL;
    if ((key = spb_key(group, edge, device)) == NULL || (sc = calloc(1, sizeof(*sc))) == NULL) {
        free(key);
        *rc = -ENOMEM;
        return NULL;
    }
    sc->key = key;
    sc->glen = strlen(group);
    sc->elen = strlen(edge);
    i = spb_slot(st, key);
    st->slots[i] = sc;
    st->nscopes++;
    return sc;
}

static int
spb_cmp_name(const void *a, const void *b)
{
    const struct sparkplug_metric_def *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static int
spb_cmp_alias(const void *a, const void *b)
{
    const struct sparkplug_metric_def *x = *(const struct sparkplug_metric_def *const *)a;
    const struct sparkplug_metric_def *y = *(const struct sparkplug_metric_def *const *)b;
    return x->alias < y->alias ? -1 : x->alias > y->alias;
}

/* Sets sc's metrics to a copy of defs[0..n). A name given twice (a broken BIRTH)
 * keeps one of its definitions. */
static int
spb_scope_set(struct sparkplug_scope *sc, const struct sparkplug_metric_def *defs, size_t n)
{
    struct sparkplug_metric_def *d = NULL;
    struct sparkplug_metric_def **a = NULL;
    size_t nd = 0, na = 0;

    if (n > 0 && ((d = calloc(n, sizeof(*d))) == NULL || (a = calloc(n, sizeof(*a))) == NULL))
        goto oom;
    for (size_t i = 0; i < n; i++) {
        d[nd] = defs[i];
        if ((d[nd].name = strdup(defs[i].name)) == NULL)
            goto oom;
        nd++;
    }
    if (nd > 1) {
        size_t w = 0;
        qsort(d, nd, sizeof(*d), spb_cmp_name);
        for (size_t i = 0; i < nd; i++) {
            if (w > 0 && strcmp(d[w - 1].name, d[i].name) == 0) {
                free((char *)d[i].name);
            } else {
                d[w++] = d[i];
            }
        }
        nd = w;
    }
    for (size_t i = 0; i < nd; i++) {
        if (d[i].has_alias)
            a[na++] = &d[i];
    }
    if (na > 1)
        qsort(a, na, sizeof(*a), spb_cmp_alias);
    spb_scope_clear(sc);
    sc->defs = d;
    sc->ndefs = nd;
    sc->by_alias = a;
    sc->naliased = na;
    sc->born = true;
    return 0;
oom:
    for (size_t i = 0; i < nd; i++)
        free((char *)d[i].name);
    free(d);
    free(a);
    return -ENOMEM;
}

const struct sparkplug_metric_def *
sparkplug_scope_by_alias(const struct sparkplug_scope *sc, uint64_t alias)
{
    size_t lo = 0, hi;

    if (sc == NULL)
        return NULL;
    hi = sc->naliased;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t v = sc->by_alias[mid]->alias;
        if (v == alias)
            return sc->by_alias[mid];
        if (v < alias)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const struct sparkplug_metric_def *
sparkplug_scope_by_name(const struct sparkplug_scope *sc, const char *name)
{
    struct sparkplug_metric_def k = { .name = name };

    if (sc == NULL || sc->ndefs == 0)
        return NULL;
    return bsearch(&k, sc->defs, sc->ndefs, sizeof(k), spb_cmp_name);
}

const struct sparkplug_scope *
sparkplug_state_find(const struct sparkplug_state *st, const char *group,
                     const char *edge_node, const char *device)
{
    const struct sparkplug_scope *sc = spb_lookup(st, group, edge_node, device);

    return sc != NULL && sc->born ? sc : NULL;
}

bool
sparkplug_state_seq(struct sparkplug_state *st, const char *group, const char *edge_node,
                    uint64_t seq, bool reset)
{
    struct sparkplug_scope *sc;
    bool ok = true;
    int rc;

    if (st == NULL || (sc = spb_scope_get(st, group, edge_node, "", &rc)) == NULL)
        return true;
    if (!reset && sc->has_seq)
        ok = (uint8_t)(sc->last_seq + 1) == (seq & 0xff) && seq <= 255;
    sc->last_seq = (uint8_t)seq;
    sc->has_seq = true;
    return ok;
}

bool
sparkplug_state_rebirth_due(struct sparkplug_state *st, const char *group,
                            const char *edge_node, int64_t now_ms, int64_t interval_ms)
{
    struct sparkplug_scope *sc;
    int rc;

    if (st == NULL || (sc = spb_scope_get(st, group, edge_node, "", &rc)) == NULL)
        return false;
    if (sc->has_rebirth && now_ms - sc->rebirth_ms < interval_ms)
        return false;
    sc->has_rebirth = true;
    sc->rebirth_ms = now_ms;
    return true;
}

void
sparkplug_state_set_host(struct sparkplug_state *st, const struct sparkplug_host *host)
{
    if (st != NULL)
        st->host = *host;
}

const struct sparkplug_host *
sparkplug_state_host(const struct sparkplug_state *st)
{
    static const struct sparkplug_host none;

    return st != NULL ? &st->host : &none;
}

/* ---- disk ------------------------------------------------------------------ */

/* Writes sc's rows in one transaction. busy_ms: how long to wait for the lock. */
static int
spb_write(struct sparkplug_state *st, struct sparkplug_scope *sc, int busy_ms)
{
    sqlite3_stmt *del = NULL, *ins = NULL;
    const char *dev = sc->key + sc->glen + sc->elen + 2;
    int rc;

    sqlite3_busy_timeout(st->db, busy_ms);
    if ((rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK)
        return rc;
    rc = sqlite3_prepare_v2(st->db, "DELETE FROM sparkplug_alias WHERE grp = ?1 AND "
                            "edge_node = ?2 AND device = ?3", -1, &del, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO sparkplug_alias (grp, "
                                "edge_node, device, name, alias, datatype) VALUES "
                                "(?1, ?2, ?3, ?4, ?5, ?6)", -1, &ins, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(del, 1, sc->key, (int)sc->glen, SQLITE_STATIC);
        sqlite3_bind_text(del, 2, sc->key + sc->glen + 1, (int)sc->elen, SQLITE_STATIC);
        sqlite3_bind_text(del, 3, dev, -1, SQLITE_STATIC);
        rc = sqlite3_step(del) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(st->db);
    }
    for (size_t i = 0; rc == SQLITE_OK && i < sc->ndefs; i++) {
        const struct sparkplug_metric_def *d = &sc->defs[i];
        sqlite3_reset(ins);
        sqlite3_bind_text(ins, 1, sc->key, (int)sc->glen, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, sc->key + sc->glen + 1, (int)sc->elen, SQLITE_STATIC);
        sqlite3_bind_text(ins, 3, dev, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 4, d->name, -1, SQLITE_STATIC);
        if (d->has_alias)
            sqlite3_bind_int64(ins, 5, (sqlite3_int64)d->alias);
        else
            sqlite3_bind_null(ins, 5);
        sqlite3_bind_int64(ins, 6, d->datatype);
        rc = sqlite3_step(ins) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(st->db);
    }
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Tries to write every pending scope; stops at the first busy database. */
static void
spb_flush(struct sparkplug_state *st, int busy_ms)
{
    if (st->db == NULL || st->read_only || st->npending == 0)
        return;
    for (size_t i = 0; i < st->nslots && st->npending > 0; i++) {
        struct sparkplug_scope *sc = st->slots[i];
        if (sc == NULL || !sc->pending)
            continue;
        if (spb_write(st, sc, busy_ms) != SQLITE_OK)
            return;
        sc->pending = false;
        st->npending--;
    }
}

void
sparkplug_state_flush(struct sparkplug_state *st)
{
    if (st != NULL)
        spb_flush(st, 0);
}

size_t
sparkplug_state_pending(const struct sparkplug_state *st)
{
    return st != NULL ? st->npending : 0;
}

int
sparkplug_state_birth(struct sparkplug_state *st, const char *group, const char *edge_node,
                      const char *device, const struct sparkplug_metric_def *defs, size_t n)
{
    struct sparkplug_scope *sc;
    int rc;

    if ((sc = spb_scope_get(st, group, edge_node, device, &rc)) == NULL)
        return rc;
    if ((rc = spb_scope_set(sc, defs, n)) < 0)
        return rc;
    if (st->db != NULL && !st->read_only) {
        if (!sc->pending) {
            sc->pending = true;
            st->npending++;
        }
        spb_flush(st, st->host.birth_busy_ms);
    }
    return 0;
}

/* Loads every row into memory. Rows are grouped per scope by the ORDER BY. */
static int
spb_load(struct sparkplug_state *st, struct err *err)
{
    sqlite3_stmt *q = NULL;
    struct sparkplug_metric_def *defs = NULL;
    size_t n = 0, cap = 0;
    char *cur[3] = { NULL, NULL, NULL };
    int rc, step;

    rc = sqlite3_prepare_v2(st->db, "SELECT grp, edge_node, device, name, alias, datatype "
                            "FROM sparkplug_alias ORDER BY grp, edge_node, device", -1, &q, NULL);
    if (rc != SQLITE_OK)
        return err_set(err, -EIO, "sparkplug state: %s", sqlite3_errmsg(st->db));
    rc = 0;
    for (;;) {
        const char *col[3];
        step = sqlite3_step(q);
        if (step == SQLITE_ROW) {
            for (int i = 0; i < 3; i++)
                col[i] = (const char *)sqlite3_column_text(q, i);
            if (col[0] == NULL || col[1] == NULL || col[2] == NULL ||
                sqlite3_column_text(q, 3) == NULL)
                continue;
        }
        /* Scope changes (or the end): store what was collected. */
        if (cur[0] != NULL && (step != SQLITE_ROW || strcmp(cur[0], col[0]) != 0 ||
                               strcmp(cur[1], col[1]) != 0 || strcmp(cur[2], col[2]) != 0)) {
            struct sparkplug_scope *sc = spb_scope_get(st, cur[0], cur[1], cur[2], &rc);
            if (sc != NULL)
                rc = spb_scope_set(sc, defs, n);
            for (size_t i = 0; i < n; i++)
                free((char *)defs[i].name);
            n = 0;
            for (int i = 0; i < 3; i++) {
                free(cur[i]);
                cur[i] = NULL;
            }
            if (rc == -ENOMEM)
                break;
            rc = 0;   /* past the scope limit: the rest stays unknown */
        }
        if (step != SQLITE_ROW)
            break;
        if (cur[0] == NULL) {
            for (int i = 0; i < 3; i++) {
                if ((cur[i] = strdup(col[i])) == NULL)
                    rc = -ENOMEM;
            }
            if (rc < 0)
                break;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            void *p = realloc(defs, ncap * sizeof(*defs));
            if (p == NULL) {
                rc = -ENOMEM;
                break;
            }
            defs = p;
            cap = ncap;
        }
        defs[n].name = strdup((const char *)sqlite3_column_text(q, 3));
        if (defs[n].name == NULL) {
            rc = -ENOMEM;
            break;
        }
        defs[n].has_alias = sqlite3_column_type(q, 4) != SQLITE_NULL;
        defs[n].alias = (uint64_t)sqlite3_column_int64(q, 4);
        defs[n].datatype = (uint32_t)sqlite3_column_int64(q, 5);
        n++;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = err_set(err, -EIO, "sparkplug state: reading aliases: %s", sqlite3_errmsg(st->db));
    else if (rc == -ENOMEM)
        err_set(err, rc, "sparkplug state: out of memory");
    for (size_t i = 0; i < n; i++)
        free((char *)defs[i].name);
    free(defs);
    for (int i = 0; i < 3; i++)
        free(cur[i]);
    sqlite3_finalize(q);
    return rc;
}

static bool
spb_has_table(sqlite3 *db)
{
    sqlite3_stmt *q = NULL;
    bool found = false;

    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                           "name = 'sparkplug_alias'", -1, &q, NULL) == SQLITE_OK)
        found = sqlite3_step(q) == SQLITE_ROW;
    sqlite3_finalize(q);
    return found;
}

int
sparkplug_state_open(struct sparkplug_state **out, const char *path, bool read_only,
                     struct err *err)
{
    struct sparkplug_state *st;
    struct stat sb;
    int rc;

    *out = NULL;
    if ((st = calloc(1, sizeof(*st))) == NULL)
        return err_set(err, -ENOMEM, "sparkplug state: out of memory");
    st->read_only = read_only;
    if (path == NULL || (read_only && stat(path, &sb) != 0)) {
        *out = st;
        return 0;
    }
    rc = sqlite3_open_v2(path, &st->db, (read_only ? SQLITE_OPEN_READONLY :
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        rc = err_set(err, -EIO, "sparkplug state %s: cannot open: %s", path,
                     st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(st->db, SPB_CLOSE_BUSY_MS);
    if (!read_only) {
        /* A file the spool made is in WAL mode already (persistent); ours, in tests,
         * becomes so, so that both kinds of connection can coexist. */
        if (sqlite3_exec(st->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(st->db, SQL_CREATE, NULL, NULL, NULL) != SQLITE_OK) {
            rc = err_set(err, -EIO, "sparkplug state %s: %s", path, sqlite3_errmsg(st->db));
            goto fail;
        }
    } else if (!spb_has_table(st->db)) {
        *out = st;
        return 0;
    }
    if ((rc = spb_load(st, err)) < 0)
        goto fail;
    *out = st;
    return 0;
fail:
    sparkplug_state_close(st);
    return rc;
}

void
sparkplug_state_close(struct sparkplug_state *st)
{
    if (st == NULL)
        return;
    spb_flush(st, SPB_CLOSE_BUSY_MS);
    for (size_t i = 0; i < st->nslots; i++)
        spb_scope_free(st->slots[i]);
    free(st->slots);
    if (st->db != NULL)
        sqlite3_close(st->db);
    free(st);
}
