/* err.c - formatting of struct err sentences. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sluice/err.h"

int
err_set(struct err *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int
err_wrap(struct err *err, const char *fmt, ...)
{
    char old[ERR_MSG_MAX];
    va_list ap;
    int n;

    if (err == NULL)
        return 0;
    memcpy(old, err->msg, sizeof(old));
    va_start(ap, fmt);
    n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    /* The sentence may be cut at ERR_MSG_MAX; cutting it is better than losing it. */
    if (n >= 0 && (size_t)n + 2 < sizeof(err->msg)) {
        size_t room = sizeof(err->msg) - (size_t)n - 3, len = strlen(old);
        err->msg[n] = ':';
        err->msg[n + 1] = ' ';
        memcpy(err->msg + n + 2, old, len < room ? len : room);
        err->msg[(size_t)n + 2 + (len < room ? len : room)] = '\0';
    }
    return err->code;
}

void
err_clear(struct err *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}
