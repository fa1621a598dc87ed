/* buf.c - growable byte buffer. Grows by doubling; never shrinks until fini. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"

void
buf_init(struct buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void
buf_fini(struct buf *b)
{
    free(b->data);
    buf_init(b);
}

void
buf_reset(struct buf *b)
{
    b->len = 0;
}

int
buf_reserve(struct buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > SIZE_MAX - b->len - 1)
        return -ENOMEM;
    need = b->len + extra + 1;      /* room for a trailing NUL, always */
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if ((p = realloc(b->data, cap)) == NULL)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
    int rc;

    if ((rc = buf_reserve(b, n)) < 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int
buf_append_str(struct buf *b, const char *s, size_t n)
{
    int rc;

    if ((rc = buf_append(b, s, n)) < 0)
        return rc;
    b->data[b->len] = '\0';
    return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((rc = buf_reserve(b, (size_t)n)) < 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}
