/* err.h - one sentence about what went wrong, for a person to read.
 *
 * Fallible functions return 0 or a negative errno. Where a person will read the
 * failure, the caller passes a struct err (may be NULL) that receives one lower-case
 * sentence, "where: what: why". */
#ifndef SLUICE_ERR_H
#define SLUICE_ERR_H

#define ERR_MSG_MAX 512

struct err {
    int  code;              /* the negative errno last set, or 0 */
    char msg[ERR_MSG_MAX];  /* NUL-terminated sentence, "" when unset */
};

/* Fills err (if not NULL) and returns code, so callers can `return err_set(...)`. */
int err_set(struct err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes err->msg with "prefix: " (used to add context on the way up). */
int err_wrap(struct err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void err_clear(struct err *err);

#endif
