/* route.c - topic patterns, the level-trie router, and the MQTT subscription set.
 *
 * Patterns. A pattern is compiled once into an array of levels (literal, '+',
 * {capture}, '#'), with the literal bytes pointing into the pattern's own copy of
 * its text. pattern_match walks topic and levels side by side; it never splits the
 * topic up front, so a topic may have any number of levels and need not be
 * NUL-terminated.
 *
 * The router. All patterns go into one trie keyed by level. Each node has
 *   - its literal children, in an array sorted by (length, bytes): binary search;
 *   - one wildcard child, shared by '+' and every {capture} at that depth (which
 *     route captured what is recovered afterwards, see below);
 *   - end_route: the lowest route whose pattern ends at this node;
 *   - hash_route: the lowest route whose pattern is "<this node's path>/#";
 *   - min_route: the lowest route anywhere in the subtree, for pruning.
 * router_match walks the trie depth first and keeps the lowest route index over all
 * matches. A subtree whose min_route cannot beat the best so far is skipped, so the
 * common case (route 3 matched, only routes > 3 elsewhere) stops early. Each node is
 * visited at most once per match, because the depth of a node fixes which topic
 * level it is compared against: the cost is bounded by the trie, never by the number
 * of routes times the topic length. Once the winner is known, pattern_match on that
 * one pattern fills in the captures: O(levels), no allocation, and it keeps the
 * trie free of per-route capture bookkeeping.
 *
 * "First in file order wins" is therefore exact: the answer is the lowest index i
 * such that pattern_match(patterns[i], topic) is true (the unit tests and the fuzz
 * target check this against a linear scan).
 *
 * MQTT rules kept here: a topic starting with '$' is not matched by a pattern whose
 * first level is '+', '#' or a capture (MQTT 5, 4.7.2); "a/#" matches "a" itself;
 * empty levels are ordinary levels; bytes are compared as bytes (UTF-8 needs no
 * special casing, as MQTT compares topics byte by byte too).
 *
 * Threads: a router and its patterns are immutable after creation; router_match
 * and pattern_match may run in any number of threads at once. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/route.h"

#define NO_ROUTE SIZE_MAX
/* The MQTT limit on the length of a topic filter (a two-byte length prefix). */
#define PATTERN_MAX_LEN 65535

enum level_kind { LVL_LITERAL, LVL_PLUS, LVL_CAPTURE, LVL_HASH };

struct level {
    enum level_kind kind;
    const char     *ptr;   /* LVL_LITERAL: the bytes, inside pattern->text */
    size_t          len;   /* LVL_LITERAL: their length */
    size_t          cap;   /* LVL_CAPTURE: index into names[] */
};

struct pattern {
    char        *text;                        /* owned copy of the source */
    char        *filter;                      /* owned, captures replaced by '+' */
    char        *namestore;                   /* owned, NUL-separated capture names */
    size_t       nlevels;
    struct level levels[ROUTE_MAX_LEVELS];
    size_t       ncaptures;
    const char  *names[ROUTE_MAX_CAPTURES];   /* into namestore */
};

struct node;

struct edge {
    const char  *key;      /* borrowed from a pattern's text */
    size_t       len;
    struct node *child;    /* owned */
};

struct node {
    struct edge *lits;     /* owned, sorted by (len, bytes) */
    size_t       nlits;
    size_t       caplits;
    struct node *wild;     /* owned; '+' and {capture} */
    size_t       end_route;
    size_t       hash_route;
    size_t       min_route;
};

struct router {
    struct node          *root;
    size_t                npatterns;
    const struct pattern **patterns;   /* owned array of borrowed patterns */
    size_t                nsubs;
    const char          **subs;        /* owned array of borrowed filters */
};

/* ---- patterns ---------------------------------------------------------------- */

static int
is_name_start(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int
is_name_char(unsigned char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* Returns the offset of the first byte that breaks UTF-8 well-formedness, or len.
 * MQTT requires filters to be well-formed UTF-8; a broker would drop the whole
 * connection over a bad one, so it is better caught at config load. */
static size_t
utf8_bad_offset(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t n, k;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (len - i <= n)
            return i;
        for (k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n + 1;
    }
    return len;
}

void
pattern_destroy(struct pattern *p)
{
    if (p == NULL)
        return;
    free(p->text);
    free(p->filter);
    free(p->namestore);
    free(p);
}

/* Sets err to "pattern "TEXT": column N: WHAT" for the byte at, returns -EINVAL. */
static int pattern_bad(struct err *err, const char *text, const char *at, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

static int
pattern_bad(struct err *err, const char *text, const char *at, const char *fmt, ...)
{
    char what[ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return err_set(err, -EINVAL, "pattern \"%s\": column %zu: %s", text,
                   (size_t)(at - text) + 1, what);
}

/* Fills p->levels from p->text; checks everything but the whole-text rules. */
static int
pattern_parse_levels(struct pattern *p, struct err *err)
{
    const char *text = p->text, *s = text;
    char *names = p->namestore;
    size_t tlen = strlen(text);

#define BAD(...) pattern_bad(err, text, __VA_ARGS__)

    for (;;) {
        const char *e = memchr(s, '/', tlen - (size_t)(s - text));
        const char *ob, *cb, *pl, *hs;
        struct level *l;
        size_t len;

        if (e == NULL)
            e = text + tlen;
        len = (size_t)(e - s);
        if (p->nlevels == ROUTE_MAX_LEVELS)
            return BAD(s, "more than %d levels", ROUTE_MAX_LEVELS);
        l = &p->levels[p->nlevels++];
        hs = memchr(s, '#', len);
        pl = memchr(s, '+', len);
        ob = memchr(s, '{', len);
        cb = memchr(s, '}', len);
        if (hs != NULL) {
            if (len != 1)
                return BAD(hs, "'#' must be alone in its level");
            if (*e != '\0')
                return BAD(hs, "'#' must be the last level");
            l->kind = LVL_HASH;
        } else if (pl != NULL) {
            if (len != 1)
                return BAD(pl, "'+' must be alone in its level");
            l->kind = LVL_PLUS;
        } else if (ob != NULL || cb != NULL) {
            const char *c;
            size_t i;

            if (ob == NULL)
                return BAD(cb, "'}' without '{'");
            if (cb == NULL)
                return BAD(ob, "'{' without '}'");
            if (ob != s || cb != e - 1 || memchr(ob + 1, '{', len - 1) != NULL)
                return BAD(ob, "a capture must be a whole level, like {name}");
            if (len == 2)
                return BAD(ob, "empty capture name {}");
            if (!is_name_start((unsigned char)s[1]))
                return BAD(s + 1, "capture name {%.*s} must start with a letter or '_'",
                           (int)(len - 2), s + 1);
            for (c = s + 2; c < cb; c++)
                if (!is_name_char((unsigned char)*c))
                    return BAD(c, "capture name {%.*s} may only have letters, digits"
                                  " and '_'", (int)(len - 2), s + 1);
            for (i = 0; i < p->ncaptures; i++)
                if (strlen(p->names[i]) == len - 2 && memcmp(p->names[i], s + 1, len - 2) == 0)
                    return BAD(s, "duplicate capture {%s}", p->names[i]);
            if (p->ncaptures == ROUTE_MAX_CAPTURES)
                return BAD(s, "more than %d captures", ROUTE_MAX_CAPTURES);
            memcpy(names, s + 1, len - 2);
            names[len - 2] = '\0';
            p->names[p->ncaptures] = names;
            names += len - 1;
            l->kind = LVL_CAPTURE;
            l->cap = p->ncaptures++;
        } else {
            l->kind = LVL_LITERAL;
            l->ptr = s;
            l->len = len;
        }
        if (*e == '\0')
            break;
        s = e + 1;
    }
    return 0;
#undef BAD
}

static void
pattern_build_filter(struct pattern *p)
{
    char *f = p->filter;
    size_t i;

    for (i = 0; i < p->nlevels; i++) {
        const struct level *l = &p->levels[i];

        if (i > 0)
            *f++ = '/';
        switch (l->kind) {
        case LVL_LITERAL:
            memcpy(f, l->ptr, l->len);
            f += l->len;
            break;
        case LVL_PLUS:
        case LVL_CAPTURE:
            *f++ = '+';
            break;
        case LVL_HASH:
            *f++ = '#';
            break;
        }
    }
    *f = '\0';
}

int
pattern_compile(struct pattern **out, const char *text, struct err *err)
{
    struct pattern *p;
    size_t tlen = strlen(text), bad;
    int rc;

    *out = NULL;
    if (tlen == 0)
        return err_set(err, -EINVAL, "pattern \"\": column 1: empty pattern");
    if (tlen > PATTERN_MAX_LEN)
        return err_set(err, -EINVAL, "pattern \"%.40s...\": column %d: longer than the"
                       " MQTT limit of %d bytes", text, PATTERN_MAX_LEN + 1,
                       PATTERN_MAX_LEN);
    if (strncmp(text, "$share/", 7) == 0)
        return err_set(err, -EINVAL, "pattern \"%s\": column 1: shared subscriptions"
                       " are set with mqtt.share_group, not in a route", text);
    if ((bad = utf8_bad_offset((const unsigned char *)text, tlen)) != tlen)
        return err_set(err, -EINVAL, "pattern \"%s\": column %zu: not valid UTF-8",
                       text, bad + 1);
    if ((p = calloc(1, sizeof(*p))) == NULL)
        return err_set(err, -ENOMEM, "pattern: out of memory");
    p->text = strdup(text);
    p->filter = malloc(tlen + 1);          /* a filter is never longer than its text */
    p->namestore = malloc(tlen + 1);
    if (p->text == NULL || p->filter == NULL || p->namestore == NULL) {
        rc = err_set(err, -ENOMEM, "pattern: out of memory");
        goto fail;
    }
    if ((rc = pattern_parse_levels(p, err)) < 0)
        goto fail;
    pattern_build_filter(p);
    *out = p;
    return 0;
fail:
    pattern_destroy(p);
    return rc;
}

const char *
pattern_text(const struct pattern *p)
{
    return p->text;
}

const char *
pattern_filter(const struct pattern *p)
{
    return p->filter;
}

size_t
pattern_ncaptures(const struct pattern *p)
{
    return p->ncaptures;
}

const char *
pattern_capture_name(const struct pattern *p, size_t i)
{
    return i < p->ncaptures ? p->names[i] : NULL;
}

int
pattern_capture_index(const struct pattern *p, const char *name)
{
    size_t i;

    for (i = 0; i < p->ncaptures; i++)
        if (strcmp(p->names[i], name) == 0)
            return (int)i;
    return -1;
}

bool
pattern_match(const struct pattern *p, const char *topic, size_t len, struct match *m)
{
    size_t pos = 0, i;   /* pos: start of the next topic level; > len when none is left */

    m->route = 0;
    m->ncaptures = 0;
    if (p->levels[0].kind != LVL_LITERAL && len > 0 && topic[0] == '$')
        return false;
    for (i = 0; i < p->nlevels; i++) {
        const struct level *l = &p->levels[i];
        const char *s, *e;

        if (l->kind == LVL_HASH)
            break;                       /* the rest, or nothing: "a/#" matches "a" */
        if (pos > len)
            return false;
        s = topic + pos;
        e = memchr(s, '/', len - pos);
        if (e == NULL)
            e = topic + len;
        if (l->kind == LVL_LITERAL) {
            if ((size_t)(e - s) != l->len || memcmp(s, l->ptr, l->len) != 0)
                return false;
        } else if (l->kind == LVL_CAPTURE) {
            m->cap[l->cap].ptr = s;
            m->cap[l->cap].len = (size_t)(e - s);
        }
        pos = (size_t)(e - topic) + 1;
    }
    if (i == p->nlevels && pos <= len)
        return false;                    /* the topic has levels left over */
    m->ncaptures = p->ncaptures;
    return true;
}

/* ---- the router -------------------------------------------------------------- */

static struct node *
node_create(void)
{
    struct node *nd = calloc(1, sizeof(*nd));

    if (nd != NULL)
        nd->end_route = nd->hash_route = nd->min_route = NO_ROUTE;
    return nd;
}

static void
node_destroy(struct node *nd)
{
    size_t i;

    if (nd == NULL)
        return;
    for (i = 0; i < nd->nlits; i++)
        node_destroy(nd->lits[i].child);
    node_destroy(nd->wild);
    free(nd->lits);
    free(nd);
}

static int
key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return alen < blen ? -1 : 1;
    return alen == 0 ? 0 : memcmp(a, b, alen);
}

/* Binary search; returns the index of key, or where it would be inserted. */
static size_t
node_find(const struct node *nd, const char *key, size_t len, bool *found)
{
    size_t lo = 0, hi = nd->nlits;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(key, len, nd->lits[mid].key, nd->lits[mid].len);

        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = false;
    return lo;
}

static struct node *
node_literal_child(struct node *nd, const char *key, size_t len)
{
    bool found;
    size_t at = node_find(nd, key, len, &found);
    struct node *child;

    if (found)
        return nd->lits[at].child;
    if (nd->nlits == nd->caplits) {
        size_t ncap = nd->caplits ? nd->caplits * 2 : 4;
        struct edge *lits = realloc(nd->lits, ncap * sizeof(*lits));

        if (lits == NULL)
            return NULL;
        nd->lits = lits;
        nd->caplits = ncap;
    }
    if ((child = node_create()) == NULL)
        return NULL;
    memmove(&nd->lits[at + 1], &nd->lits[at], (nd->nlits - at) * sizeof(*nd->lits));
    nd->lits[at] = (struct edge){ key, len, child };
    nd->nlits++;
    return child;
}

static size_t
min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static int
router_insert(struct router *r, const struct pattern *p, size_t route)
{
    struct node *nd = r->root;
    size_t i;

    for (i = 0; i < p->nlevels; i++) {
        const struct level *l = &p->levels[i];

        nd->min_route = min_size(nd->min_route, route);
        if (l->kind == LVL_HASH) {
            nd->hash_route = min_size(nd->hash_route, route);
            return 0;
        }
        if (l->kind == LVL_LITERAL) {
            nd = node_literal_child(nd, l->ptr, l->len);
        } else {
            if (nd->wild == NULL)
                nd->wild = node_create();
            nd = nd->wild;
        }
        if (nd == NULL)
            return -ENOMEM;
    }
    nd->min_route = min_size(nd->min_route, route);
    nd->end_route = min_size(nd->end_route, route);
    return 0;
}

/* pos: start of this node's topic level, > len when the topic is used up. */
static void
router_walk(const struct node *nd, const char *topic, size_t len, size_t pos, bool root,
            size_t *best)
{
    const char *s, *e;
    size_t next;
    bool dollar, found;

    if (nd->min_route >= *best)
        return;
    if (pos > len) {
        *best = min_size(*best, min_size(nd->end_route, nd->hash_route));
        return;
    }
    s = topic + pos;
    e = memchr(s, '/', len - pos);
    if (e == NULL)
        e = topic + len;
    next = (size_t)(e - topic) + 1;
    /* MQTT 4.7.2: wildcards in the first level never match a '$' topic. */
    dollar = root && len > 0 && topic[0] == '$';
    if (nd->nlits > 0) {
        size_t at = node_find(nd, s, (size_t)(e - s), &found);

        if (found)
            router_walk(nd->lits[at].child, topic, len, next, false, best);
    }
    if (dollar)
        return;
    if (nd->wild != NULL)
        router_walk(nd->wild, topic, len, next, false, best);
    *best = min_size(*best, nd->hash_route);
}

bool
router_match(const struct router *r, const char *topic, size_t len, struct match *m)
{
    size_t best = NO_ROUTE;
    bool ok;

    m->route = 0;
    m->ncaptures = 0;
    router_walk(r->root, topic, len, 0, true, &best);
    if (best == NO_ROUTE)
        return false;
    /* Captures come from the winner alone; without any there is nothing to redo. */
    if (r->patterns[best]->ncaptures > 0) {
        ok = pattern_match(r->patterns[best], topic, len, m);
        assert(ok);   /* the trie and pattern_match agree by construction */
        (void)ok;
    }
    m->route = best;
    return true;
}

/* The level of filter f that starts at pos ends at *end; false when pos > len,
 * that is, when the filter has no level left. */
static bool
filter_level(const char *f, size_t len, size_t pos, size_t *end)
{
    const char *e;

    if (pos > len)
        return false;
    e = memchr(f + pos, '/', len - pos);
    *end = e == NULL ? len : (size_t)(e - f);
    return true;
}

static bool
level_is(const char *f, size_t s, size_t e, char c)
{
    return e - s == 1 && f[s] == c;
}

bool
route_filter_covers(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), ia = 0, ib = 0, ea, eb, k;

    for (k = 0;; k++) {
        bool b_literal;

        if (!filter_level(a, la, ia, &ea))
            return ib > lb;                        /* a used up: b must be too */
        if (level_is(a, ia, ea, '#')) {
            /* A leading '#' does not match '$' topics, which a literal b may name. */
            return !(k == 0 && ib <= lb && b[ib] == '$');
        }
        if (!filter_level(b, lb, ib, &eb))
            return false;                          /* b ended, a wants another level */
        b_literal = !level_is(b, ib, eb, '+') && !level_is(b, ib, eb, '#');
        if (level_is(a, ia, ea, '+')) {
            if (level_is(b, ib, eb, '#')) {
                /* b's '#' matches any number of levels (k == 0: at least one);
                 * only "+/#" at the very start matches all of those too. */
                return k == 0 && la - ea == 2 && a[ea + 1] == '#';
            }
            if (k == 0 && b_literal && b[ib] == '$')
                return false;
        } else if (!b_literal || key_cmp(a + ia, ea - ia, b + ib, eb - ib) != 0) {
            return false;
        }
        ia = ea + 1;
        ib = eb + 1;
    }
}

static int
router_build_subscriptions(struct router *r)
{
    size_t n = r->npatterns, nuniq = 0, i, j;
    const char **uniq;

    if (n == 0)
        return 0;
    if ((uniq = calloc(n, sizeof(*uniq))) == NULL)
        return -ENOMEM;
    if ((r->subs = calloc(n, sizeof(*r->subs))) == NULL) {
        free(uniq);
        return -ENOMEM;
    }
    for (i = 0; i < n; i++) {
        const char *f = r->patterns[i]->filter;

        for (j = 0; j < nuniq && strcmp(uniq[j], f) != 0; j++)
            ;
        if (j == nuniq)
            uniq[nuniq++] = f;
    }
    /* Drop a filter another one covers. Two different filters can cover each other
     * ("#" and "+/#"); then the one that appeared first stays. */
    for (i = 0; i < nuniq; i++) {
        bool drop = false;

        for (j = 0; j < nuniq && !drop; j++) {
            if (j == i || !route_filter_covers(uniq[j], uniq[i]))
                continue;
            drop = j < i || !route_filter_covers(uniq[i], uniq[j]);
        }
        if (!drop)
            r->subs[r->nsubs++] = uniq[i];
    }
    free(uniq);
    return 0;
}

void
router_destroy(struct router *r)
{
    if (r == NULL)
        return;
    node_destroy(r->root);
    free(r->patterns);
    free(r->subs);
    free(r);
}

int
router_create(struct router **out, struct pattern *const *patterns, size_t n,
              struct err *err)
{
    struct router *r;
    size_t i;

    *out = NULL;
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return err_set(err, -ENOMEM, "router: out of memory");
    r->npatterns = n;
    if ((r->root = node_create()) == NULL)
        goto nomem;
    if (n > 0 && (r->patterns = calloc(n, sizeof(*r->patterns))) == NULL)
        goto nomem;
    for (i = 0; i < n; i++) {
        r->patterns[i] = patterns[i];
        if (router_insert(r, patterns[i], i) < 0)
            goto nomem;
    }
    if (router_build_subscriptions(r) < 0)
        goto nomem;
    *out = r;
    return 0;
nomem:
    router_destroy(r);
    return err_set(err, -ENOMEM, "router: out of memory");
}

size_t
router_nsubscriptions(const struct router *r)
{
    return r->nsubs;
}

const char *
router_subscription(const struct router *r, size_t i)
{
    return i < r->nsubs ? r->subs[i] : NULL;
}
