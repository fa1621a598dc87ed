/* filter.c - the `where:` condition of a route: parse and type-check once, evaluate
 * per message without allocating.
 *
 * Design: a recursive-descent parser (config load, any thread) turns the text into a
 * small array of nodes: or/and/not over children by index, constants, and
 * comparisons that hold their two operands inline (a literal, a capture index, or a
 * compiled JSON path). Unescaped string literals live in one block allocated with
 * the filter. Evaluation is a short-circuiting walk over that array: no parsing, no
 * name lookups, no allocation on the message path (jpath_get allocates nothing).
 *
 * Why type-check at load: a filter that compares a capture (always text) with a
 * number can never be true, and finding that out from a silent drop rate in
 * production is much worse than a located error from `sluice check`. JSON fields
 * have no type until a message arrives, so those comparisons are checked per message
 * and a mismatch reads as "false", like a missing field (see filter.h).
 *
 * Why "missing is false" for != too: a filter is there to keep what matches. A
 * message that lacks the field does not match `$.quality != "bad"` any more than
 * `$.quality == "good"`; users who want the opposite write `not ($.quality == "bad")`.
 *
 * Threads: a compiled filter is immutable; evaluate it from any number of threads. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/filter.h"
#include "sluice/jpath.h"
#include "sluice/route.h"

/* Nesting limit of parentheses and `not`s: keeps the parser and evaluator off deep
 * stacks whatever a config says. */
#define FILTER_MAX_DEPTH 32

enum op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };
enum vtype { V_ANY, V_TEXT, V_NUMBER, V_BOOL };
enum okind { O_TEXT, O_NUMBER, O_BOOL, O_CAPTURE, O_JSON };
enum nkind { N_OR, N_AND, N_NOT, N_CONST, N_CMP };

struct operand {
    enum okind    kind;
    double        num;     /* O_NUMBER */
    bool          b;       /* O_BOOL */
    size_t        off;     /* O_TEXT: into f->store */
    size_t        len;     /* O_TEXT */
    size_t        cap;     /* O_CAPTURE: index into the compile-time names */
    struct jpath *jp;      /* O_JSON: owned */
};

struct fnode {
    enum nkind     kind;
    size_t         a, b;   /* N_OR/N_AND: children; N_NOT: a */
    bool           value;  /* N_CONST */
    enum op        op;     /* N_CMP */
    struct operand l, r;   /* N_CMP */
};

struct filter {
    char        *text;     /* owned copy of the source */
    char        *store;    /* owned: unescaped string literals */
    size_t       nstore;
    struct fnode nodes[FILTER_MAX_NODES];
    size_t       nnodes;
    size_t       root;
};

/* ---- lexer -------------------------------------------------------------------- */

enum tkind {
    T_END, T_LPAREN, T_RPAREN, T_OP, T_AND, T_OR, T_NOT, T_TRUE, T_FALSE,
    T_TEXT, T_NUMBER, T_CAPTURE, T_PATH,
};

struct token {
    enum tkind kind;
    size_t     pos;        /* 0-based offset of its first byte in the text */
    size_t     len;
    enum op    op;         /* T_OP */
    double     num;        /* T_NUMBER */
    size_t     off;        /* T_TEXT: offset of the unescaped text in the store */
};

struct parser {
    const char         *text;
    size_t              pos;     /* next byte to lex */
    struct token        tok;     /* the current token */
    struct filter      *f;
    const char *const  *names;
    size_t              nnames;
    bool                json;
    int                 depth;
    struct err         *err;
    size_t              errpos;  /* 0-based */
};

static int
fail(struct parser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
fail(struct parser *p, size_t pos, const char *fmt, ...)
{
    char msg[ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    p->errpos = pos;
    return err_set(p->err, -EINVAL, "column %zu: %s", pos + 1, msg);
}

static bool
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool
is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

/* Where a bare token ($.path, number, word) ends. Quoted path steps may hold any
 * byte, so ['a b'] is skipped whole. */
static size_t
bare_end(const char *t, size_t i)
{
    while (t[i] != '\0' && !is_space(t[i]) && strchr("()=!<>", t[i]) == NULL) {
        if (t[i] == '[' && t[i + 1] == '\'') {
            i += 2;
            while (t[i] != '\0' && t[i] != '\'') {
                if (t[i] == '\\' && t[i + 1] != '\0')
                    i++;
                i++;
            }
            if (t[i] == '\0')
                return i;
        }
        i++;
    }
    return i;
}

/* Reads a quoted string at t[start] into the store; fills tok. */
static int
lex_string(struct parser *p, size_t start)
{
    const char *t = p->text;
    char q = t[start];
    size_t i = start + 1, off = p->f->nstore;

    for (;;) {
        if (t[i] == '\0')
            return fail(p, start, "a string needs its closing %c", q);
        if (t[i] == q)
            break;
        if (t[i] == '\\') {
            if (t[i + 1] != '"' && t[i + 1] != '\'' && t[i + 1] != '\\')
                return fail(p, i, "only \\\" \\' and \\\\ are escapes in a string");
            i++;
        }
        p->f->store[p->f->nstore++] = t[i++];
    }
    p->tok = (struct token){ .kind = T_TEXT, .pos = start, .len = p->f->nstore - off,
                             .off = off };
    p->pos = i + 1;
    return 0;
}

static int
lex(struct parser *p)
{
    const char *t = p->text;
    size_t i = p->pos, end;
    char *num_end;

    while (is_space(t[i]))
        i++;
    p->tok = (struct token){ .kind = T_END, .pos = i, .len = 0 };
    switch (t[i]) {
    case '\0':
        p->pos = i;
        return 0;
    case '(': case ')':
        p->tok.kind = t[i] == '(' ? T_LPAREN : T_RPAREN;
        p->tok.len = 1;
        p->pos = i + 1;
        return 0;
    case '"': case '\'':
        return lex_string(p, i);
    case '=': case '!': case '<': case '>':
        p->tok.kind = T_OP;
        p->tok.len = t[i + 1] == '=' ? 2 : 1;
        if (t[i] == '=' && t[i + 1] == '=')
            p->tok.op = OP_EQ;
        else if (t[i] == '!' && t[i + 1] == '=')
            p->tok.op = OP_NE;
        else if (t[i] == '<')
            p->tok.op = t[i + 1] == '=' ? OP_LE : OP_LT;
        else if (t[i] == '>')
            p->tok.op = t[i + 1] == '=' ? OP_GE : OP_GT;
        else if (t[i] == '=')
            return fail(p, i, "'=' is not an operator: use == to compare");
        else
            return fail(p, i, "'!' is not an operator: use != or not");
        p->pos = i + p->tok.len;
        return 0;
    case '{':
        end = i + 1;
        while (t[end] != '\0' && t[end] != '}')
            end++;
        if (t[end] != '}')
            return fail(p, i, "'{' without '}' (a capture is {name})");
        p->tok.kind = T_CAPTURE;
        p->tok.len = end + 1 - i;
        p->pos = end + 1;
        return 0;
    case '$':
        end = bare_end(t, i);
        p->tok.kind = T_PATH;
        p->tok.len = end - i;
        p->pos = end;
        return 0;
    default:
        break;
    }
    if ((t[i] >= '0' && t[i] <= '9') || t[i] == '-' || t[i] == '+' || t[i] == '.') {
        end = bare_end(t, i);
        p->tok.num = strtod(t + i, &num_end);
        if (num_end != t + end || num_end == t + i || !isfinite(p->tok.num))
            return fail(p, i, "'%.*s' is not a number", (int)(end - i), t + i);
        p->tok.kind = T_NUMBER;
        p->tok.len = end - i;
        p->pos = end;
        return 0;
    }
    if (is_word_char(t[i])) {
        static const struct { const char *w; enum tkind k; } words[] = {
            { "and", T_AND }, { "or", T_OR }, { "not", T_NOT },
            { "true", T_TRUE }, { "false", T_FALSE },
        };
        end = i;
        while (is_word_char(t[end]))
            end++;
        for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
            if (strlen(words[w].w) == end - i && memcmp(words[w].w, t + i, end - i) == 0) {
                p->tok.kind = words[w].k;
                p->tok.len = end - i;
                p->pos = end;
                return 0;
            }
        }
        return fail(p, i, "unknown word '%.*s' (a JSON field is $.name, a capture {name}, "
                          "text is quoted)", (int)(end - i), t + i);
    }
    return fail(p, i, "unexpected '%c'", t[i]);
}

/* ---- parser ------------------------------------------------------------------- */

static int parse_or(struct parser *p, size_t *out);

static int
new_node(struct parser *p, size_t pos, size_t *out)
{
    if (p->f->nnodes == FILTER_MAX_NODES)
        return fail(p, pos, "the condition has more than %d parts", FILTER_MAX_NODES);
    memset(&p->f->nodes[p->f->nnodes], 0, sizeof(p->f->nodes[0]));
    *out = p->f->nnodes++;
    return 0;
}

static const char *
vtype_name(enum vtype t)
{
    switch (t) {
    case V_TEXT:   return "text";
    case V_NUMBER: return "a number";
    case V_BOOL:   return "a boolean";
    case V_ANY:    break;
    }
    return "a JSON field";
}

static enum vtype
operand_type(const struct operand *o)
{
    switch (o->kind) {
    case O_TEXT: case O_CAPTURE: return V_TEXT;
    case O_NUMBER:               return V_NUMBER;
    case O_BOOL:                 return V_BOOL;
    case O_JSON:                 break;
    }
    return V_ANY;
}

static bool
is_operand(enum tkind k)
{
    return k == T_TEXT || k == T_NUMBER || k == T_TRUE || k == T_FALSE || k == T_CAPTURE ||
           k == T_PATH;
}

/* The current token as an operand; advances. */
static int
parse_operand(struct parser *p, struct operand *o)
{
    const struct token *tk = &p->tok;
    struct err e;
    char path[FILTER_MAX_TEXT + 1];
    int rc;

    memset(o, 0, sizeof(*o));
    switch (tk->kind) {
    case T_TEXT:
        o->kind = O_TEXT;
        o->off = tk->off;
        o->len = tk->len;
        break;
    case T_NUMBER:
        o->kind = O_NUMBER;
        o->num = tk->num;
        break;
    case T_TRUE: case T_FALSE:
        o->kind = O_BOOL;
        o->b = tk->kind == T_TRUE;
        break;
    case T_CAPTURE: {
        const char *name = p->text + tk->pos + 1;
        size_t len = tk->len - 2, i, off = 0;
        char list[256];

        for (i = 0; i < p->nnames; i++)
            if (strlen(p->names[i]) == len && memcmp(p->names[i], name, len) == 0)
                break;
        if (i == p->nnames) {
            list[0] = '\0';
            for (size_t j = 0; j < p->nnames && off < sizeof(list); j++)
                off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
                                        j ? ", " : "", p->names[j]);
            return fail(p, tk->pos, "unknown capture {%.*s} (captures: %s)", (int)len, name,
                        p->nnames ? list : "none");
        }
        o->kind = O_CAPTURE;
        o->cap = i;
        break;
    }
    case T_PATH:
        if (!p->json)
            return fail(p, tk->pos, "format raw has no JSON document to read '%.*s' from "
                                    "(use format: json)", (int)tk->len, p->text + tk->pos);
        memcpy(path, p->text + tk->pos, tk->len);
        path[tk->len] = '\0';
        err_clear(&e);
        if ((rc = jpath_compile(&o->jp, path, &e)) < 0) {
            if (rc == -ENOMEM)
                return err_set(p->err, rc, "out of memory");
            return fail(p, tk->pos, "%s", e.msg);
        }
        o->kind = O_JSON;
        break;
    default:
        if (tk->kind == T_END)
            return fail(p, tk->pos, "the condition ends where a value was expected");
        return fail(p, tk->pos, "expected a value ($.field, {capture}, \"text\", a number, "
                                "true or false), got '%.*s'", (int)tk->len, p->text + tk->pos);
    }
    if ((rc = lex(p)) < 0) {
        jpath_destroy(o->jp);
        o->jp = NULL;
    }
    return rc;
}

static int
parse_compare(struct parser *p, size_t *out)
{
    struct operand l, r;
    struct fnode *n;
    size_t start = p->tok.pos, oppos;
    enum vtype lt, rt;
    enum op op;
    int rc;

    if ((rc = parse_operand(p, &l)) < 0)
        return rc;
    if (p->tok.kind != T_OP) {
        jpath_destroy(l.jp);
        if (l.kind == O_BOOL)   /* a bare true/false */
            goto constant;
        if (p->tok.kind == T_END)
            return fail(p, p->tok.pos, "expected a comparison (== != < <= > >=) after '%.*s'",
                        (int)(p->tok.pos - start), p->text + start);
        return fail(p, p->tok.pos, "expected a comparison (== != < <= > >=), got '%.*s'",
                    (int)p->tok.len, p->text + p->tok.pos);
    }
    op = p->tok.op;
    oppos = p->tok.pos;
    if ((rc = lex(p)) < 0 || (rc = parse_operand(p, &r)) < 0) {
        jpath_destroy(l.jp);
        return rc;
    }
    lt = operand_type(&l);
    rt = operand_type(&r);
    rc = 0;
    if (lt != V_ANY && rt != V_ANY && lt != rt)
        rc = fail(p, oppos, "cannot compare %s with %s%s", vtype_name(lt), vtype_name(rt),
                  l.kind == O_CAPTURE || r.kind == O_CAPTURE
                      ? " (a capture is text: quote the value)" : "");
    else if (op != OP_EQ && op != OP_NE && (lt == V_BOOL || rt == V_BOOL))
        rc = fail(p, oppos, "booleans have no order: use == or !=");
    if (rc == 0)
        rc = new_node(p, start, out);
    if (rc < 0) {
        jpath_destroy(l.jp);
        jpath_destroy(r.jp);
        return rc;
    }
    n = &p->f->nodes[*out];
    n->kind = N_CMP;
    n->op = op;
    n->l = l;
    n->r = r;
    return 0;

constant:
    if ((rc = new_node(p, start, out)) < 0)
        return rc;
    p->f->nodes[*out].kind = N_CONST;
    p->f->nodes[*out].value = l.b;
    return 0;
}

static int
parse_unary(struct parser *p, size_t *out)
{
    size_t start = p->tok.pos, child = 0;
    int rc;

    if (p->tok.kind == T_NOT || p->tok.kind == T_LPAREN) {
        if (++p->depth > FILTER_MAX_DEPTH)
            return fail(p, start, "nested deeper than %d levels", FILTER_MAX_DEPTH);
        if (p->tok.kind == T_NOT) {
            if ((rc = lex(p)) < 0 || (rc = parse_unary(p, &child)) < 0 ||
                (rc = new_node(p, start, out)) < 0)
                return rc;
            p->f->nodes[*out].kind = N_NOT;
            p->f->nodes[*out].a = child;
        } else {
            if ((rc = lex(p)) < 0 || (rc = parse_or(p, out)) < 0)
                return rc;
            if (p->tok.kind != T_RPAREN)
                return fail(p, start, "'(' without ')'");
            if ((rc = lex(p)) < 0)
                return rc;
        }
        p->depth--;
        return 0;
    }
    if (!is_operand(p->tok.kind)) {
        if (p->tok.kind == T_END)
            return fail(p, p->tok.pos, "the condition ends where a comparison was expected");
        return fail(p, p->tok.pos, "expected a comparison, got '%.*s'", (int)p->tok.len,
                    p->text + p->tok.pos);
    }
    return parse_compare(p, out);
}

static int
parse_binary(struct parser *p, size_t *out, enum tkind kind)
{
    size_t left = 0, right = 0, n = 0;
    int rc;

    if ((rc = kind == T_OR ? parse_binary(p, &left, T_AND) : parse_unary(p, &left)) < 0)
        return rc;
    while (p->tok.kind == kind) {
        size_t pos = p->tok.pos;
        if ((rc = lex(p)) < 0)
            return rc;
        if ((rc = kind == T_OR ? parse_binary(p, &right, T_AND) : parse_unary(p, &right)) < 0)
            return rc;
        if ((rc = new_node(p, pos, &n)) < 0)
            return rc;
        p->f->nodes[n].kind = kind == T_OR ? N_OR : N_AND;
        p->f->nodes[n].a = left;
        p->f->nodes[n].b = right;
        left = n;
    }
    *out = left;
    return 0;
}

static int
parse_or(struct parser *p, size_t *out)
{
    return parse_binary(p, out, T_OR);
}

void
filter_destroy(struct filter *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->nnodes; i++) {
        if (f->nodes[i].kind == N_CMP) {
            jpath_destroy(f->nodes[i].l.jp);
            jpath_destroy(f->nodes[i].r.jp);
        }
    }
    free(f->store);
    free(f->text);
    free(f);
}

int
filter_compile(struct filter **out, const char *text, const char *const *names,
               size_t nnames, bool json, struct err *err, size_t *col)
{
    struct parser p = { .text = text, .names = names, .nnames = nnames, .json = json,
                        .err = err };
    struct filter *f;
    size_t len = strlen(text);
    int rc;

    *out = NULL;
    if (col != NULL)
        *col = 1;
    if (len > FILTER_MAX_TEXT)
        return err_set(err, -EINVAL, "column 1: a condition is at most %d bytes",
                       FILTER_MAX_TEXT);
    if ((f = calloc(1, sizeof(*f))) == NULL || (f->text = strdup(text)) == NULL ||
        (f->store = malloc(len + 1)) == NULL) {
        filter_destroy(f);
        return err_set(err, -ENOMEM, "out of memory");
    }
    p.f = f;
    p.text = f->text;
    if ((rc = lex(&p)) == 0 && (rc = parse_or(&p, &f->root)) == 0 && p.tok.kind != T_END)
        rc = fail(&p, p.tok.pos, "expected and, or or the end, got '%.*s'", (int)p.tok.len,
                  p.text + p.tok.pos);
    if (rc == 0 && f->nnodes == 0)
        rc = fail(&p, 0, "the condition is empty");
    if (rc < 0) {
        if (col != NULL)
            *col = p.errpos + 1;
        filter_destroy(f);
        return rc;
    }
    *out = f;
    return 0;
}

const char *
filter_text(const struct filter *f)
{
    return f->text;
}

/* ---- evaluation --------------------------------------------------------------- */

struct value {
    enum vtype  type;      /* V_ANY = missing */
    double      num;
    const char *s;
    size_t      len;
    bool        b;
};

static struct value
operand_value(const struct filter *f, const struct operand *o, const struct capture *caps,
              const json_t *doc)
{
    struct value v = { .type = V_ANY };
    const json_t *j;

    switch (o->kind) {
    case O_TEXT:
        v.type = V_TEXT;
        v.s = f->store + o->off;
        v.len = o->len;
        break;
    case O_NUMBER:
        v.type = V_NUMBER;
        v.num = o->num;
        break;
    case O_BOOL:
        v.type = V_BOOL;
        v.b = o->b;
        break;
    case O_CAPTURE:
        v.type = V_TEXT;
        v.s = caps[o->cap].ptr;
        v.len = caps[o->cap].len;
        break;
    case O_JSON:
        if (doc == NULL || (j = jpath_get(o->jp, doc)) == NULL)
            break;
        if (json_is_string(j)) {
            v.type = V_TEXT;
            v.s = json_string_value(j);
            v.len = json_string_length(j);
        } else if (json_is_number(j)) {
            v.type = V_NUMBER;
            v.num = json_number_value(j);
        } else if (json_is_boolean(j)) {
            v.type = V_BOOL;
            v.b = json_is_true(j);
        }
        break;
    }
    return v;
}

static bool
compare(const struct filter *f, const struct fnode *n, const struct capture *caps,
        const json_t *doc)
{
    struct value l = operand_value(f, &n->l, caps, doc);
    struct value r = operand_value(f, &n->r, caps, doc);
    int c;

    if (l.type == V_ANY || l.type != r.type)
        return false;       /* missing, or a type the other side is not: see filter.h */
    if (l.type == V_BOOL) {
        if (n->op == OP_EQ)
            return l.b == r.b;
        return n->op == OP_NE && l.b != r.b;
    }
    if (l.type == V_NUMBER) {
        c = l.num < r.num ? -1 : l.num > r.num ? 1 : 0;
    } else {
        c = memcmp(l.s, r.s, l.len < r.len ? l.len : r.len);
        if (c == 0)
            c = l.len < r.len ? -1 : l.len > r.len ? 1 : 0;
    }
    switch (n->op) {
    case OP_EQ: return c == 0;
    case OP_NE: return c != 0;
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    case OP_GT: return c > 0;
    case OP_GE: return c >= 0;
    }
    return false;
}

static bool
eval_node(const struct filter *f, size_t i, const struct capture *caps, const json_t *doc)
{
    const struct fnode *n = &f->nodes[i];

    switch (n->kind) {
    case N_OR:    return eval_node(f, n->a, caps, doc) || eval_node(f, n->b, caps, doc);
    case N_AND:   return eval_node(f, n->a, caps, doc) && eval_node(f, n->b, caps, doc);
    case N_NOT:   return !eval_node(f, n->a, caps, doc);
    case N_CONST: return n->value;
    case N_CMP:   return compare(f, n, caps, doc);
    }
    return false;
}

bool
filter_eval(const struct filter *f, const struct capture *caps, const json_t *doc)
{
    return eval_node(f, f->root, caps, doc);
}
