/* filter.h - a route's `where:` condition, compiled once at config load.
 *
 * Language:
 *     expr    := or
 *     or      := and { "or" and }
 *     and     := unary { "and" unary }
 *     unary   := "not" unary | "(" expr ")" | "true" | "false" | compare
 *     compare := operand ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) operand
 *     operand := $.json.path | {capture} | "string" | 'string' | number | true | false
 * Strings take \" \' and \\ escapes; numbers are decimal (sign, fraction, exponent).
 *
 * Types are checked at compile time: a capture is text; a literal is text, number or
 * boolean; a JSON field is any of them, decided per message. Comparing text with a
 * number, ordering booleans (<, >), comparing two literals of different types, a
 * {capture} the route does not offer and a $.path on a route without a JSON document
 * are errors at load, each with the column in the expression.
 *
 * Missing fields: a comparison whose JSON field is absent, null, an object or array,
 * or of another type than the other side (a string where a number is compared) is
 * false, whatever the operator (so `$.x != 1` is false when x is absent, and
 * `not ($.x == 1)` is true). Numbers compare as doubles, strings bytewise.
 *
 * Evaluation walks a small node array and allocates nothing. A compiled filter is
 * immutable: any number of threads may evaluate it at once. */
#ifndef SLUICE_FILTER_H
#define SLUICE_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

struct capture;
struct err;
struct filter;

/* Longest expression, and most operators plus operands, a filter may have. */
#define FILTER_MAX_TEXT  4096
#define FILTER_MAX_NODES 128

/* Compiles text against the capture names the route offers (names[i] is caps[i] of
 * filter_eval); json says whether the route's payload gives a JSON document. On error
 * returns -EINVAL (or -ENOMEM) with a sentence "column N: ..." (1-based, within text)
 * and, if col is not NULL, *col = N. Returns owned *out, free with filter_destroy. */
int  filter_compile(struct filter **out, const char *text, const char *const *names,
                    size_t nnames, bool json, struct err *err, size_t *col);
void filter_destroy(struct filter *f);   /* NULL is fine */

const char *filter_text(const struct filter *f);   /* borrowed, valid until destroy */

/* Evaluates f on one message. caps borrows the route's captures (as at compile), doc
 * the decoded JSON document or NULL. Allocates nothing. */
bool filter_eval(const struct filter *f, const struct capture *caps, const json_t *doc);

#endif
