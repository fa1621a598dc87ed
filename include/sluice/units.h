/* units.h - the value syntaxes users type: durations, sizes, event times.
 *
 * Durations: an integer followed by ms, s, m, h or d ("200ms", "7d"); "0" alone is 0.
 * Sizes: an integer optionally followed by B, KiB, MiB or GiB ("2GiB"); also KB/MB/GB
 * as decimal multiples. Whitespace between number and unit is not allowed. Overflow,
 * negative numbers, fractions and unknown units are -EINVAL. */
#ifndef SLUICE_UNITS_H
#define SLUICE_UNITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int units_parse_duration(const char *s, int64_t *out_ms);
int units_parse_size(const char *s, uint64_t *out_bytes);

/* Renders a duration / size back in the largest exact unit ("1d", "2GiB"). */
void units_render_duration(int64_t ms, char *buf, size_t cap);
void units_render_size(uint64_t bytes, char *buf, size_t cap);

enum units_epoch { UNITS_EPOCH_AUTO = 0, UNITS_EPOCH_S, UNITS_EPOCH_MS, UNITS_EPOCH_US, UNITS_EPOCH_NS };

/* A numeric event time to epoch milliseconds. AUTO decides by magnitude:
 * < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds, else nanoseconds.
 * Returns -ERANGE for negative, non-finite or out-of-range values. */
int units_epoch_to_ms(double v, enum units_epoch unit, int64_t *out_ms);

/* RFC 3339 ("2024-05-01T12:00:00.123Z", "+02:00" offsets, fractional seconds of any
 * length) to epoch milliseconds; -EINVAL when s is not one. len bytes of s are read. */
int units_parse_rfc3339(const char *s, size_t len, int64_t *out_ms);

#endif
