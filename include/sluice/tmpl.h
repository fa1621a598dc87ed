/* tmpl.h - templates for the Kafka topic, key and header values.
 *
 * Syntax: literal text with "{name}" (a capture) and "{$.a.b}" (a JSON field of the
 * payload, see jpath.h) substitutions; "{{" and "}}" are literal braces. A template
 * that starts with "$." is one JSON path as a whole ("$.device.id" == "{$.device.id}").
 * Compiled once at config load against the capture names a route offers; rendering
 * allocates nothing and writes into a caller buffer. */
#ifndef SLUICE_TMPL_H
#define SLUICE_TMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

struct err;
struct capture;
struct tmpl;

/* names[0..nnames) are the captures available to this template (the route pattern's
 * captures, plus a codec's own such as Sparkplug's group/edge_node/device). A "{x}"
 * naming anything else is -EINVAL with a sentence naming x and the names available.
 * Returns owned *out, free with tmpl_destroy. */
int  tmpl_compile(struct tmpl **out, const char *text, const char *const *names,
                  size_t nnames, struct err *err);
void tmpl_destroy(struct tmpl *t);

const char *tmpl_text(const struct tmpl *t);   /* borrowed */
bool tmpl_uses_json(const struct tmpl *t);     /* any {$.path} part */
bool tmpl_is_literal(const struct tmpl *t);    /* no substitutions at all */

/* Renders into buf (NUL-terminated). caps[i] corresponds to names[i] of compile.
 * doc may be NULL (non-JSON payload): then any {$.path} part fails.
 * Returns the length, -ENOENT when a JSON field is missing (err names it),
 * -ENOSPC when the result needs more than cap-1 bytes. */
int tmpl_render(const struct tmpl *t, const struct capture *caps, const json_t *doc,
                char *buf, size_t cap, struct err *err);

#endif
