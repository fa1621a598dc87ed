/* route.h - topic patterns and the router that picks the first matching route.
 *
 * A pattern is an MQTT topic filter whose levels may also be "{name}": one level,
 * captured under that name. "+" matches one level without capturing; "#" is only
 * allowed as the last level and matches the parent and any number of levels below it.
 * As in MQTT, a pattern whose first level is a wildcard or capture never matches a
 * topic starting with '$' (so "#" does not match "$SYS/..."). Empty levels are legal
 * and match empty levels.
 *
 * The router is a level trie built once from all routes' patterns. router_match walks
 * it depth first, trying literal, then single-level, then '#' children, and keeps the
 * lowest route index over every match, so "first in file order wins" holds without a
 * linear scan over routes. It allocates nothing and is safe to call from many threads
 * on the same router. */
#ifndef SLUICE_ROUTE_H
#define SLUICE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

struct err;
struct pattern;
struct router;

#define ROUTE_MAX_CAPTURES 16
#define ROUTE_MAX_LEVELS   64

/* A slice of the topic string the match was made on. */
struct capture {
    const char *ptr;
    size_t      len;
};

struct match {
    size_t         route;                      /* index into the router's patterns */
    size_t         ncaptures;                  /* == pattern_ncaptures of that route */
    struct capture cap[ROUTE_MAX_CAPTURES];    /* in pattern order of the {names} */
};

/* Validates and compiles. Errors (-EINVAL, sentence with the 1-based column):
 * empty pattern, '#' not last or not alone in its level, '+' not alone in its level,
 * '{' without '}', capture names not [A-Za-z_][A-Za-z0-9_]*, duplicate capture names,
 * more than ROUTE_MAX_CAPTURES captures or ROUTE_MAX_LEVELS levels, NUL or "$share/"
 * prefix. Returns owned *out, free with pattern_destroy. */
int  pattern_compile(struct pattern **out, const char *text, struct err *err);
void pattern_destroy(struct pattern *p);

const char *pattern_text(const struct pattern *p);          /* borrowed */
/* The MQTT subscription filter: every "{name}" level replaced by "+". Borrowed. */
const char *pattern_filter(const struct pattern *p);
size_t      pattern_ncaptures(const struct pattern *p);
const char *pattern_capture_name(const struct pattern *p, size_t i);   /* borrowed */
/* Index of a capture by name, or -1. */
int         pattern_capture_index(const struct pattern *p, const char *name);

/* Does a single pattern match topic? Fills m->ncaptures/m->cap, m->route = 0. */
bool pattern_match(const struct pattern *p, const char *topic, size_t len, struct match *m);

/* Builds the trie. Borrows patterns: they must outlive the router. n may be 0. */
int  router_create(struct router **out, struct pattern *const *patterns, size_t n,
                   struct err *err);
void router_destroy(struct router *r);

/* First match in pattern order. topic need not be NUL-terminated. */
bool router_match(const struct router *r, const char *topic, size_t len, struct match *m);

/* The minimal MQTT subscriptions the patterns imply: their filters, deduplicated,
 * with every filter dropped that another filter covers ("a/+/c" is covered by "a/#"
 * and by "a/+/+"; "#" covers everything but '$' topics). Stable: in order of first
 * appearance. Borrowed, valid until router_destroy. */
size_t      router_nsubscriptions(const struct router *r);
const char *router_subscription(const struct router *r, size_t i);

/* Does MQTT filter a cover filter b (every topic b matches, a matches)? */
bool route_filter_covers(const char *a, const char *b);

#endif
