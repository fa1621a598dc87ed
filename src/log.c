/* log.c - leveled log lines on stderr.
 *
 * Each line is formatted into a stack buffer and emitted with a single write(2), so
 * lines from different threads never interleave. Level and format are atomics: SIGHUP
 * may change them while other threads log. JSON lines carry ts, level, component and
 * msg; text lines are "2024-05-01T12:00:00.123Z level component: message". */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sluice/clock.h"
#include "sluice/log.h"

#define LOG_LINE_MAX 2048

static atomic_int log_level_cur = LOG_INFO;
static atomic_int log_format_cur = LOG_FORMAT_TEXT;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int
log_level_parse(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *
log_level_name(enum log_level lvl)
{
    return (unsigned)lvl < 4 ? level_names[lvl] : "?";
}

void
log_set_level(enum log_level lvl)
{
    atomic_store(&log_level_cur, (int)lvl);
}

void
log_set_format(enum log_format fmt)
{
    atomic_store(&log_format_cur, (int)fmt);
}

bool
log_enabled(enum log_level lvl)
{
    return (int)lvl <= atomic_load_explicit(&log_level_cur, memory_order_relaxed);
}

/* Appends s to line as a JSON string body (without quotes), escaping as needed. */
static size_t
json_escape_into(char *line, size_t off, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    for (; *s != '\0' && off + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            line[off++] = '\\';
            line[off++] = (char)c;
        } else if (c == '\n') {
            line[off++] = '\\';
            line[off++] = 'n';
        } else if (c < 0x20) {
            memcpy(line + off, "\\u00", 4);
            off += 4;
            line[off++] = hex[c >> 4];
            line[off++] = hex[c & 15];
        } else {
            line[off++] = (char)c;
        }
    }
    return off;
}

static void log_vemit(enum log_level lvl, const char *component, const char *suffix,
                      const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void
log_vemit(enum log_level lvl, const char *component, const char *suffix,
          const char *fmt, va_list ap)
{
    char msg[LOG_LINE_MAX], line[LOG_LINE_MAX * 2], ts[40];
    int64_t now = clock_wall_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    size_t off;
    int n;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (suffix != NULL)
        strncat(msg, suffix, sizeof(msg) - strlen(msg) - 1);
    gmtime_r(&secs, &tm);
    n = (int)strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - (size_t)n, ".%03dZ", (int)(now % 1000));

    if (atomic_load_explicit(&log_format_cur, memory_order_relaxed) == LOG_FORMAT_JSON) {
        off = (size_t)snprintf(line, sizeof(line),
                               "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"", ts,
                               log_level_name(lvl));
        off = json_escape_into(line, off, sizeof(line) - 16, component);
        off += (size_t)snprintf(line + off, sizeof(line) - off, "\",\"msg\":\"");
        off = json_escape_into(line, off, sizeof(line) - 8, msg);
        off += (size_t)snprintf(line + off, sizeof(line) - off, "\"}\n");
    } else {
        n = snprintf(line, sizeof(line), "%s %s %s: %s\n", ts, log_level_name(lvl),
                     component, msg);
        off = n < 0 ? 0 : (size_t)n >= sizeof(line) ? sizeof(line) - 1 : (size_t)n;
        if (off == sizeof(line) - 1)
            line[off - 1] = '\n';
    }
    /* One write per line; a short write on stderr is not worth a retry loop. */
    if (write(STDERR_FILENO, line, off) < 0)
        return;
}

void
log_msg(enum log_level lvl, const char *component, const char *fmt, ...)
{
    va_list ap;

    if (!log_enabled(lvl))
        return;
    va_start(ap, fmt);
    log_vemit(lvl, component, NULL, fmt, ap);
    va_end(ap);
}

void
log_limited(struct log_limiter *state, int64_t interval_ms, enum log_level lvl,
            const char *component, const char *fmt, ...)
{
    char suffix[64] = "";
    int64_t now = clock_mono_ms();
    va_list ap;

    if (!log_enabled(lvl))
        return;
    /* Callers serialise on their own thread; a lost increment under a race only
     * miscounts a summary, so plain fields are fine here. */
    if (state->last_ms != 0 && now - state->last_ms < interval_ms) {
        state->suppressed++;
        return;
    }
    if (state->suppressed > 0)
        snprintf(suffix, sizeof(suffix), " (repeated %llu times)",
                 (unsigned long long)state->suppressed);
    state->last_ms = now;
    state->suppressed = 0;
    va_start(ap, fmt);
    log_vemit(lvl, component, suffix, fmt, ap);
    va_end(ap);
}
