/* tmpl.c - Kafka topic, key and header templates: compiled once, rendered often.
 *
 * Design: compilation (config load) turns the text into a short array of parts:
 * literal runs (with "{{" and "}}" already unescaped, stored in one block), capture
 * references resolved to an index into the names the route offers, and compiled
 * JSON paths. Every name and path error is therefore found at config load, with a
 * column, and rendering is a loop of bounded copies into the caller's buffer: no
 * allocation, no parsing, no name lookups on the message path.
 *
 * Inside "{$...}" the closing brace is searched for outside of quoted path steps,
 * so "{$['a}b']}" names the key "a}b".
 *
 * Threads: a compiled template is immutable; render it from any number of threads. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/jpath.h"
#include "sluice/route.h"
#include "sluice/tmpl.h"

enum part_kind { PART_LITERAL, PART_CAPTURE, PART_JSON };

struct part {
    enum part_kind kind;
    size_t         off;   /* PART_LITERAL: offset into t->lits */
    size_t         len;   /* PART_LITERAL: length */
    size_t         cap;   /* PART_CAPTURE: index into the compile-time names */
    struct jpath  *jp;    /* PART_JSON: owned */
};

struct tmpl {
    char        *text;     /* owned copy of the source */
    char        *lits;     /* owned, the unescaped literal bytes of all parts */
    struct part *parts;    /* owned */
    size_t       nparts;
    bool         uses_json;
};

void
tmpl_destroy(struct tmpl *t)
{
    size_t i;

    if (t == NULL)
        return;
    for (i = 0; i < t->nparts; i++)
        jpath_destroy(t->parts[i].jp);
    free(t->parts);
    free(t->lits);
    free(t->text);
    free(t);
}

/* Compiles path[0..len) (not NUL-terminated in the template) as a JSON part. */
static int
tmpl_add_json(struct tmpl *t, const char *path, size_t len, size_t col, struct err *err)
{
    struct part *pt = &t->parts[t->nparts];
    char *tmp;
    int rc;

    if ((tmp = malloc(len + 1)) == NULL)
        return err_set(err, -ENOMEM, "template: out of memory");
    memcpy(tmp, path, len);
    tmp[len] = '\0';
    rc = jpath_compile(&pt->jp, tmp, err);
    free(tmp);
    if (rc < 0) {
        if (rc == -EINVAL)
            err_wrap(err, "template \"%s\": column %zu", t->text, col + 1);
        return rc;
    }
    pt->kind = PART_JSON;
    t->nparts++;
    t->uses_json = true;
    return 0;
}

static int
tmpl_unknown_capture(const struct tmpl *t, size_t col, const char *name, size_t len,
                     const char *const *names, size_t nnames, struct err *err)
{
    char avail[256] = "";
    size_t i, used = 0;

    for (i = 0; i < nnames && used + 1 < sizeof(avail); i++) {
        size_t n = strlen(names[i]), room = sizeof(avail) - used - 1;
        const char *sep = i > 0 ? ", " : "";

        if (strlen(sep) + n > room)
            break;
        memcpy(avail + used, sep, strlen(sep));
        used += strlen(sep);
        memcpy(avail + used, names[i], n);
        used += n;
        avail[used] = '\0';
    }
    if (nnames == 0)
        return err_set(err, -EINVAL, "template \"%s\": column %zu: unknown capture {%.*s};"
                       " this route captures nothing", t->text, col + 1, (int)len, name);
    return err_set(err, -EINVAL, "template \"%s\": column %zu: unknown capture {%.*s};"
                   " available: %s", t->text, col + 1, (int)len, name, avail);
}

/* Where the '}' closing the substitution opened at text[open] is, or NULL. */
static const char *
tmpl_find_close(const char *open)
{
    const char *p = open + 1;
    bool quoted = false;

    for (; *p != '\0'; p++) {
        if (quoted) {
            if (*p == '\\' && p[1] != '\0')
                p++;
            else if (*p == '\'')
                quoted = false;
        } else if (*p == '\'' && open[1] == '$') {
            quoted = true;
        } else if (*p == '}') {
            return p;
        }
    }
    return NULL;
}

static int
tmpl_parse(struct tmpl *t, const char *const *names, size_t nnames, struct err *err)
{
    const char *text = t->text, *p = text;
    size_t nlits = 0, lit_start = 0;
    int rc;

#define BAD(at, ...)                                                                  \
    err_set(err, -EINVAL, "template \"%s\": column %zu: " __VA_ARGS__, text,          \
            (size_t)((at) - text) + 1)
#define FLUSH()                                                                       \
    do {                                                                              \
        if (nlits > lit_start) {                                                      \
            t->parts[t->nparts++] = (struct part){ PART_LITERAL, lit_start,           \
                                                   nlits - lit_start, 0, NULL };      \
            lit_start = nlits;                                                        \
        }                                                                             \
    } while (0)

    if (strncmp(text, "$.", 2) == 0)
        return tmpl_add_json(t, text, strlen(text), 0, err);
    while (*p != '\0') {
        const char *close, *name;
        size_t len, i;

        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            t->lits[nlits++] = *p;
            p += 2;
            continue;
        }
        if (*p == '}')
            return BAD(p, "'}' without '{' (write '}}' for a literal brace)");
        if (*p != '{') {
            t->lits[nlits++] = *p++;
            continue;
        }
        if ((close = tmpl_find_close(p)) == NULL)
            return BAD(p, "'{' without '}' (write '{{' for a literal brace)");
        FLUSH();
        name = p + 1;
        len = (size_t)(close - name);
        if (len == 0)
            return BAD(p, "empty substitution {}");
        if (*name == '$') {
            if ((rc = tmpl_add_json(t, name, len, (size_t)(name - text), err)) < 0)
                return rc;
        } else {
            for (i = 0; i < nnames; i++)
                if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
                    break;
            if (i == nnames)
                return tmpl_unknown_capture(t, (size_t)(p - text), name, len, names,
                                            nnames, err);
            t->parts[t->nparts++] = (struct part){ PART_CAPTURE, 0, 0, i, NULL };
        }
        p = close + 1;
    }
    FLUSH();
    return 0;
#undef FLUSH
#undef BAD
}

int
tmpl_compile(struct tmpl **out, const char *text, const char *const *names,
             size_t nnames, struct err *err)
{
    struct tmpl *t;
    size_t tlen = strlen(text);
    int rc;

    *out = NULL;
    if ((t = calloc(1, sizeof(*t))) == NULL)
        return err_set(err, -ENOMEM, "template: out of memory");
    t->text = strdup(text);
    t->lits = malloc(tlen + 1);
    /* Every part but the last consumes at least one byte of text. */
    t->parts = calloc(tlen + 1, sizeof(*t->parts));
    if (t->text == NULL || t->lits == NULL || t->parts == NULL) {
        rc = err_set(err, -ENOMEM, "template: out of memory");
        goto fail;
    }
    if ((rc = tmpl_parse(t, names, nnames, err)) < 0)
        goto fail;
    *out = t;
    return 0;
fail:
    tmpl_destroy(t);
    return rc;
}

const char *
tmpl_text(const struct tmpl *t)
{
    return t->text;
}

bool
tmpl_uses_json(const struct tmpl *t)
{
    return t->uses_json;
}

bool
tmpl_is_literal(const struct tmpl *t)
{
    size_t i;

    for (i = 0; i < t->nparts; i++)
        if (t->parts[i].kind != PART_LITERAL)
            return false;
    return true;
}

static int
tmpl_missing(const struct tmpl *t, const struct part *pt, const json_t *doc,
             struct err *err)
{
    if (doc == NULL)
        return err_set(err, -ENOENT, "template \"%s\": %s needs a JSON payload", t->text,
                       jpath_text(pt->jp));
    return err_set(err, -ENOENT, "template \"%s\": no field %s in the payload", t->text,
                   jpath_text(pt->jp));
}

int
tmpl_render(const struct tmpl *t, const struct capture *caps, const json_t *doc,
            char *buf, size_t cap, struct err *err)
{
    size_t pos = 0, i;

    if (cap == 0)
        goto nospace;
    buf[0] = '\0';
    for (i = 0; i < t->nparts; i++) {
        const struct part *pt = &t->parts[i];
        const char *src = NULL;
        size_t len = 0;
        int n;

        switch (pt->kind) {
        case PART_LITERAL:
            src = t->lits + pt->off;
            len = pt->len;
            break;
        case PART_CAPTURE:
            src = caps[pt->cap].ptr;
            len = caps[pt->cap].len;
            break;
        case PART_JSON: {
            const json_t *v;

            if (doc == NULL || (v = jpath_get(pt->jp, doc)) == NULL) {
                buf[0] = '\0';
                return tmpl_missing(t, pt, doc, err);
            }
            n = jpath_render_value(v, buf + pos, cap - pos);
            if (n == -ENOSPC)
                goto nospace;
            if (n < 0) {
                buf[0] = '\0';
                return err_set(err, n, "template \"%s\": %s: value nested too deeply",
                               t->text, jpath_text(pt->jp));
            }
            pos += (size_t)n;
            continue;
        }
        }
        if (len >= cap - pos)
            goto nospace;
        if (len > 0)
            memcpy(buf + pos, src, len);
        pos += len;
    }
    if (pos > INT_MAX)
        goto nospace;
    buf[pos] = '\0';
    return (int)pos;
nospace:
    if (cap > 0)
        buf[0] = '\0';
    /* A missing field is a fact about the message, a short buffer one about the
     * caller: report the former first, so the answer never depends on cap. */
    for (i = 0; i < t->nparts; i++) {
        const struct part *pt = &t->parts[i];

        if (pt->kind == PART_JSON && (doc == NULL || jpath_get(pt->jp, doc) == NULL))
            return tmpl_missing(t, pt, doc, err);
    }
    if (cap == 0)
        return err_set(err, -ENOSPC, "template \"%s\": no room for the result", t->text);
    return err_set(err, -ENOSPC, "template \"%s\": result longer than %zu bytes", t->text,
                   cap - 1);
}
