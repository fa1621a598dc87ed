/* units.c - durations, sizes and event times as users type them.
 *
 * Design: every parser is strict and total. A value either parses exactly (digits,
 * then a unit from a fixed table, nothing else) or is -EINVAL; there is no "best
 * effort" reading of "7 days" or "1.5GiB", because a config value that means
 * something other than what the user thinks is worse than an error at load time.
 * Arithmetic is checked for overflow before it happens.
 *
 * Threads: pure functions, no state; callable from any thread. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sluice/units.h"

struct unit {
    const char *name;
    uint64_t    mult;
};

/* Longest names first where one is a prefix of another is not needed: the whole
 * suffix must match, so order only matters for rendering (largest first). */
static const struct unit duration_units[] = {
    { "d", 86400000 }, { "h", 3600000 }, { "m", 60000 }, { "s", 1000 }, { "ms", 1 },
};

static const struct unit size_units[] = {
    { "GiB", 1ull << 30 }, { "MiB", 1ull << 20 }, { "KiB", 1ull << 10 },
    { "GB", 1000000000ull }, { "MB", 1000000ull }, { "KB", 1000ull }, { "B", 1 },
};

#define NUNITS(t) (sizeof(t) / sizeof((t)[0]))

/* Reads the leading decimal digits of s into *out; returns the count of digits
 * (0 when none) or -1 on overflow. */
static int
parse_digits(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    int n = 0;

    while (*s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        s++;
        n++;
    }
    *out = v;
    *end = s;
    return n;
}

static int
parse_with_units(const char *s, const struct unit *units, size_t nunits, bool unit_optional,
                 uint64_t max, uint64_t *out)
{
    const char *rest;
    uint64_t v;
    int nd;

    if (s == NULL)
        return -EINVAL;
    nd = parse_digits(s, &v, &rest);
    if (nd <= 0)
        return -EINVAL;
    if (*rest == '\0') {
        /* A bare number: "0" is unambiguous for durations; sizes default to bytes. */
        if (!unit_optional && v != 0)
            return -EINVAL;
        if (v > max)
            return -EINVAL;
        *out = v;
        return 0;
    }
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(rest, units[i].name) != 0)
            continue;
        if (v > max / units[i].mult)
            return -EINVAL;
        *out = v * units[i].mult;
        return 0;
    }
    return -EINVAL;
}

int
units_parse_duration(const char *s, int64_t *out_ms)
{
    uint64_t v;
    int rc;

    if ((rc = parse_with_units(s, duration_units, NUNITS(duration_units), false,
                               (uint64_t)INT64_MAX, &v)) < 0)
        return rc;
    *out_ms = (int64_t)v;
    return 0;
}

int
units_parse_size(const char *s, uint64_t *out_bytes)
{
    return parse_with_units(s, size_units, NUNITS(size_units), true, UINT64_MAX, out_bytes);
}

void
units_render_duration(int64_t ms, char *buf, size_t cap)
{
    if (cap == 0)
        return;
    if (ms <= 0) {
        snprintf(buf, cap, "%lld", (long long)ms);
        return;
    }
    for (size_t i = 0; i < NUNITS(duration_units); i++) {
        uint64_t m = duration_units[i].mult;
        if ((uint64_t)ms % m == 0) {
            snprintf(buf, cap, "%llu%s", (unsigned long long)((uint64_t)ms / m),
                     duration_units[i].name);
            return;
        }
    }
}

void
units_render_size(uint64_t bytes, char *buf, size_t cap)
{
    /* Binary units only: they are what the config documents and what round-trips. */
    static const struct unit bin[] = {
        { "GiB", 1ull << 30 }, { "MiB", 1ull << 20 }, { "KiB", 1ull << 10 },
    };

    if (cap == 0)
        return;
    if (bytes != 0) {
        for (size_t i = 0; i < NUNITS(bin); i++) {
            if (bytes % bin[i].mult == 0) {
                snprintf(buf, cap, "%llu%s", (unsigned long long)(bytes / bin[i].mult),
                         bin[i].name);
                return;
            }
        }
    }
    snprintf(buf, cap, "%llu", (unsigned long long)bytes);
}

int
units_epoch_to_ms(double v, enum units_epoch unit, int64_t *out_ms)
{
    double ms;

    if (!isfinite(v) || v < 0)
        return -ERANGE;
    if (unit == UNITS_EPOCH_AUTO) {
        /* 1e11 s is the year 5138; 1e11 ms is 1973. Real event times are
         * unambiguous across these boundaries. */
        if (v < 1e11)
            unit = UNITS_EPOCH_S;
        else if (v < 1e14)
            unit = UNITS_EPOCH_MS;
        else if (v < 1e17)
            unit = UNITS_EPOCH_US;
        else
            unit = UNITS_EPOCH_NS;
    }
    switch (unit) {
    case UNITS_EPOCH_S:  ms = v * 1e3; break;
    case UNITS_EPOCH_MS: ms = v; break;
    case UNITS_EPOCH_US: ms = v / 1e3; break;
    case UNITS_EPOCH_NS: ms = v / 1e6; break;
    default:             return -ERANGE;
    }
    ms = floor(ms);
    /* 9.2e18 is just under INT64_MAX, so the conversion below is defined. */
    if (!(ms < 9.2e18))
        return -ERANGE;
    *out_ms = (int64_t)ms;
    return 0;
}

/* Reads exactly n digits at *p. */
static bool
take_digits(const char **p, const char *end, int n, int *out)
{
    int v = 0;

    if (end - *p < n)
        return false;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool
take_char(const char **p, const char *end, const char *set)
{
    if (*p >= end || strchr(set, **p) == NULL || **p == '\0')
        return false;
    (*p)++;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int
days_in_month(int y, int m)
{
    static const int dim[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : dim[m - 1];
}

int
units_parse_rfc3339(const char *s, size_t len, int64_t *out_ms)
{
    const char *p = s, *end = s + len;
    int y, mo, d, h, mi, sec, frac_ms = 0, oh = 0, om = 0, sign = 0;
    int64_t ms;

    if (s == NULL)
        return -EINVAL;
    if (!take_digits(&p, end, 4, &y) || !take_char(&p, end, "-") ||
        !take_digits(&p, end, 2, &mo) || !take_char(&p, end, "-") ||
        !take_digits(&p, end, 2, &d) || !take_char(&p, end, "Tt ") ||
        !take_digits(&p, end, 2, &h) || !take_char(&p, end, ":") ||
        !take_digits(&p, end, 2, &mi) || !take_char(&p, end, ":") ||
        !take_digits(&p, end, 2, &sec))
        return -EINVAL;
    if (p < end && *p == '.') {
        int nd = 0;
        p++;
        while (p < end && *p >= '0' && *p <= '9') {
            /* Milliseconds: the first three digits; the rest are truncated. */
            if (nd < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
            nd++;
            p++;
        }
        if (nd == 0)
            return -EINVAL;
        for (int i = nd; i < 3; i++)
            frac_ms *= 10;
    }
    if (p < end && (*p == 'Z' || *p == 'z')) {
        p++;
    } else if (p < end && (*p == '+' || *p == '-')) {
        sign = *p == '-' ? -1 : 1;
        p++;
        if (!take_digits(&p, end, 2, &oh) || !take_char(&p, end, ":") ||
            !take_digits(&p, end, 2, &om))
            return -EINVAL;
        if (oh > 23 || om > 59)
            return -EINVAL;
    } else {
        return -EINVAL;
    }
    if (p != end)
        return -EINVAL;
    /* Seconds may be 60 (a leap second); it reads as the first second after. */
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        sec > 60)
        return -EINVAL;
    ms = days_from_civil(y, mo, d) * 86400000 + (int64_t)h * 3600000 +
         (int64_t)mi * 60000 + (int64_t)sec * 1000 + frac_ms;
    ms -= (int64_t)sign * ((int64_t)oh * 3600000 + (int64_t)om * 60000);
    *out_ms = ms;
    return 0;
}
