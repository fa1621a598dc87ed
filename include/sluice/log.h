/* log.h - leveled log lines on stderr, text or JSON.
 *
 * A line reads "level component: what happened (why / what next)". Thread-safe:
 * each line is formatted into a local buffer and written with one write(2).
 * Repeated errors go through log_limited(), which prints the first occurrence and
 * then at most one summary line per interval carrying the count. Never pass secrets. */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

/* Parses "error|warn|info|debug"; returns 0 or -EINVAL. */
int  log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level lvl);

/* Both may be called at any time from any thread (SIGHUP changes the level). */
void log_set_level(enum log_level lvl);
void log_set_format(enum log_format fmt);
bool log_enabled(enum log_level lvl);

void log_msg(enum log_level lvl, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Rate-limited variant: `state` is a caller-owned (usually static) limiter keyed by
 * call site. Prints at most one line per interval_ms; a suppressed count is appended
 * to the next printed line as "(repeated N times)". */
struct log_limiter {
    int64_t  last_ms;       /* monotonic ms of the last printed line */
    uint64_t suppressed;    /* lines swallowed since then */
};
void log_limited(struct log_limiter *state, int64_t interval_ms, enum log_level lvl,
                 const char *component, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#define log_error(comp, ...) log_msg(LOG_ERROR, comp, __VA_ARGS__)
#define log_warn(comp, ...)  log_msg(LOG_WARN, comp, __VA_ARGS__)
#define log_info(comp, ...)  log_msg(LOG_INFO, comp, __VA_ARGS__)
#define log_debug(comp, ...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, comp, __VA_ARGS__); } while (0)

#endif
