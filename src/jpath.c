/* jpath.c - compiled JSON paths ("$.a.b[2].c") and template rendering of values.
 *
 * Design: a path is compiled once, at config load, into an array of steps (object
 * key or array index) that live in the same allocation as the struct, so a lookup is
 * a loop of json_object_getn/json_array_get calls and allocates nothing. The message
 * path (ingest thread) only ever calls jpath_get and jpath_render_value.
 *
 * Quoted steps ['any text'] take any bytes except that a quote or a backslash inside
 * must be escaped as \' or \\; this is what lets a route name a key containing dots,
 * brackets or spaces ("$['device.id']").
 *
 * jpath_render_value has its own compact JSON encoder for objects and arrays instead
 * of json_dumpb: Jansson's dumper allocates a hash table for loop detection, and the
 * template contract is "rendering allocates nothing". Reals print in the shortest
 * decimal form that reads back to the same double (so 21.5 stays "21.5", not
 * "21.500000000000000"), with ".0" appended when that form looks like an integer, so
 * a real stays a real when the text is parsed again as JSON.
 *
 * Threads: a compiled path is immutable; any number of threads may use it at once. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/jpath.h"

/* Nesting limit of the encoder. Parsed documents cannot be deeper than Jansson's
 * parser limit; programmatic ones could contain a cycle, which this turns into an
 * error instead of a stack overflow. */
#define JPATH_RENDER_MAX_DEPTH JSON_PARSER_MAX_DEPTH

enum step_kind { STEP_KEY, STEP_INDEX };

struct step {
    enum step_kind kind;
    const char    *key;     /* STEP_KEY: unescaped bytes, in jp->store */
    size_t         len;     /* STEP_KEY: length of key */
    size_t         index;   /* STEP_INDEX */
};

struct jpath {
    char        *text;      /* the source text, in the same allocation */
    size_t       nsteps;
    struct step *steps;     /* in the same allocation */
    char        *store;     /* unescaped key bytes, in the same allocation */
};

static int
is_name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

/* One pass over text: counts the steps (steps == NULL) or fills them. Both passes
 * see the same text, so the second one cannot fail where the first succeeded. */
static int
parse_steps(const char *text, struct step *steps, char *store, size_t *nsteps,
            struct err *err)
{
    const char *p = text;
    size_t n = 0;

#define BAD(col, ...)                                                                 \
    err_set(err, -EINVAL, "json path \"%s\": column %zu: " __VA_ARGS__, text,         \
            (size_t)(col) + 1)

    if (*p != '$')
        return BAD(0, "a path starts with '$'");
    p++;
    while (*p != '\0') {
        const char *start = p;

        if (*p == '.') {
            const char *name = ++p;

            while (is_name_char((unsigned char)*p))
                p++;
            if (p == name)
                return BAD(start - text, "expected a field name after '.'"
                                         " (use ['...'] for other characters)");
            if (steps != NULL) {
                memcpy(store, name, (size_t)(p - name));
                steps[n] = (struct step){ STEP_KEY, store, (size_t)(p - name), 0 };
                store += p - name;
            }
            n++;
        } else if (*p == '[' && p[1] == '\'') {
            size_t len = 0;

            p += 2;
            for (;;) {
                if (*p == '\0')
                    return BAD(start - text, "a quoted step needs its closing quote");
                if (*p == '\'')
                    break;
                if (*p == '\\') {
                    if (p[1] != '\\' && p[1] != '\'')
                        return BAD(p - text, "only \\' and \\\\ are escapes"
                                             " in a quoted step");
                    p++;
                }
                if (steps != NULL)
                    store[len] = *p;
                len++;
                p++;
            }
            if (p[1] != ']')
                return BAD(p + 1 - text, "expected ']' after the closing quote");
            p += 2;
            if (steps != NULL) {
                steps[n] = (struct step){ STEP_KEY, store, len, 0 };
                store += len;
            }
            n++;
        } else if (*p == '[') {
            size_t idx = 0;
            const char *digits = ++p;

            while (*p >= '0' && *p <= '9') {
                if (idx > (SIZE_MAX - 9) / 10)
                    return BAD(digits - text, "array index too large");
                idx = idx * 10 + (size_t)(*p - '0');
                p++;
            }
            if (p == digits)
                return BAD(digits - text, "expected an array index or a quoted name"
                                          " after '['");
            if (*p != ']')
                return BAD(p - text, "expected ']' after the array index");
            p++;
            if (steps != NULL)
                steps[n] = (struct step){ STEP_INDEX, NULL, 0, idx };
            n++;
        } else {
            return BAD(p - text, "expected '.name', '[index]' or ['name']");
        }
    }
    *nsteps = n;
    return 0;
#undef BAD
}

int
jpath_compile(struct jpath **out, const char *text, struct err *err)
{
    struct jpath *jp;
    size_t n = 0, tlen;
    int rc;

    *out = NULL;
    if ((rc = parse_steps(text, NULL, NULL, &n, err)) < 0)
        return rc;
    tlen = strlen(text);
    /* One block: struct, steps, text, key store (never longer than the text). */
    jp = calloc(1, sizeof(*jp) + n * sizeof(struct step) + 2 * (tlen + 1));
    if (jp == NULL)
        return err_set(err, -ENOMEM, "json path: out of memory");
    jp->steps = (struct step *)(jp + 1);
    jp->text = (char *)(jp->steps + n);
    jp->store = jp->text + tlen + 1;
    memcpy(jp->text, text, tlen + 1);
    rc = parse_steps(jp->text, jp->steps, jp->store, &jp->nsteps, err);
    if (rc < 0) {
        free(jp);
        return rc;
    }
    *out = jp;
    return 0;
}

void
jpath_destroy(struct jpath *jp)
{
    free(jp);
}

const char *
jpath_text(const struct jpath *jp)
{
    return jp->text;
}

json_t *
jpath_get(const struct jpath *jp, const json_t *doc)
{
    /* Jansson's getters take const and return non-const; the document stays the
     * caller's, we only hand back a borrowed pointer into it. */
    json_t *v = (json_t *)(uintptr_t)doc;
    size_t i;

    for (i = 0; i < jp->nsteps && v != NULL; i++) {
        const struct step *s = &jp->steps[i];

        if (s->kind == STEP_KEY)
            v = json_is_object(v) ? json_object_getn(v, s->key, s->len) : NULL;
        else
            v = json_is_array(v) ? json_array_get(v, s->index) : NULL;
    }
    return v;
}

/* A bounded writer: keeps counting past cap so the caller learns it did not fit. */
struct out {
    char  *buf;
    size_t cap;     /* usable bytes, the NUL excluded */
    size_t len;
};

static void
out_put(struct out *o, const char *p, size_t n)
{
    if (o->len < o->cap) {
        size_t room = o->cap - o->len;

        memcpy(o->buf + o->len, p, n < room ? n : room);
    }
    o->len += n;
}

static void
put_real(struct out *o, double d)
{
    char tmp[40];
    int prec, n = 0;

    /* The shortest of %.15g..%.17g that reads back exactly: 15 digits are always
     * enough when a short form exists, 17 always suffice for a double. */
    for (prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof(tmp) - 2, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    if (strpbrk(tmp, ".eEn") == NULL) {   /* "21" -> "21.0"; "inf"/"nan" cannot occur */
        tmp[n++] = '.';
        tmp[n++] = '0';
    }
    out_put(o, tmp, (size_t)n);
}

static void
put_json_string(struct out *o, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, run = 0;

    out_put(o, "\"", 1);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t elen = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        out_put(o, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"':  esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        out_put(o, esc, elen);
    }
    out_put(o, s + run, len - run);
    out_put(o, "\"", 1);
}

static int
put_value(struct out *o, const json_t *v, int depth, int top)
{
    char tmp[32];
    int n, rc;

    if (depth > JPATH_RENDER_MAX_DEPTH)
        return -ELOOP;
    switch (json_typeof(v)) {
    case JSON_STRING:
        if (top)
            out_put(o, json_string_value(v), json_string_length(v));
        else
            put_json_string(o, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER:
        n = snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        out_put(o, tmp, (size_t)n);
        return 0;
    case JSON_REAL:
        put_real(o, json_real_value(v));
        return 0;
    case JSON_TRUE:
        out_put(o, "true", 4);
        return 0;
    case JSON_FALSE:
        out_put(o, "false", 5);
        return 0;
    case JSON_NULL:
        out_put(o, "null", 4);
        return 0;
    case JSON_ARRAY: {
        size_t i, len = json_array_size(v);

        out_put(o, "[", 1);
        for (i = 0; i < len; i++) {
            if (i > 0)
                out_put(o, ",", 1);
            if ((rc = put_value(o, json_array_get(v, i), depth + 1, 0)) < 0)
                return rc;
        }
        out_put(o, "]", 1);
        return 0;
    }
    case JSON_OBJECT: {
        /* The iterator follows insertion order, as json_dumps does. */
        void *it;
        int first = 1;

        out_put(o, "{", 1);
        for (it = json_object_iter((json_t *)(uintptr_t)v); it != NULL;
             it = json_object_iter_next((json_t *)(uintptr_t)v, it)) {
            if (!first)
                out_put(o, ",", 1);
            first = 0;
            put_json_string(o, json_object_iter_key(it), json_object_iter_key_len(it));
            out_put(o, ":", 1);
            if ((rc = put_value(o, json_object_iter_value(it), depth + 1, 0)) < 0)
                return rc;
        }
        out_put(o, "}", 1);
        return 0;
    }
    }
    return -EINVAL;
}

int
jpath_render_value(const json_t *v, char *buf, size_t cap)
{
    struct out o = { buf, cap > 0 ? cap - 1 : 0, 0 };
    int rc;

    if (cap == 0)
        return -ENOSPC;
    if ((rc = put_value(&o, v, 0, 1)) < 0) {
        buf[0] = '\0';
        return rc;
    }
    if (o.len > o.cap || o.len > INT_MAX) {
        buf[0] = '\0';
        return -ENOSPC;
    }
    buf[o.len] = '\0';
    return (int)o.len;
}
