/* jpath.h - "$.a.b[2].c": a field of a JSON payload, compiled once.
 *
 * Grammar: "$" then any number of ".name" or "[index]" steps; names are
 * [A-Za-z0-9_-]+ or a quoted ['any text'] step. No wildcards, no filters: a route names
 * exactly one field. Lookups borrow the document and allocate nothing. */
#ifndef SLUICE_JPATH_H
#define SLUICE_JPATH_H

#include <stddef.h>
#include <jansson.h>

struct err;
struct jpath;

/* Returns owned *out (free with jpath_destroy), or -EINVAL with a sentence naming
 * the column of the bad step. */
int  jpath_compile(struct jpath **out, const char *text, struct err *err);
void jpath_destroy(struct jpath *jp);

/* The text it was compiled from; borrowed, valid until jpath_destroy. */
const char *jpath_text(const struct jpath *jp);

/* Returns borrowed (valid while doc lives) or NULL when any step is missing or of
 * the wrong kind. */
json_t *jpath_get(const struct jpath *jp, const json_t *doc);

/* Renders a JSON scalar as template text into buf: strings as their bytes, integers
 * and reals in shortest decimal form, true/false, null as "null". Objects and arrays
 * render as compact JSON. Returns the length (excluding NUL), or -ENOSPC when it does
 * not fit in cap (NUL included). */
int jpath_render_value(const json_t *v, char *buf, size_t cap);

#endif
