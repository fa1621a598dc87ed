/* buf.h - a growable byte buffer, caller-embedded (init/fini). */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stddef.h>

struct buf {
    char  *data;    /* owned; NULL until the first append */
    size_t len;     /* bytes in use */
    size_t cap;     /* bytes allocated */
};

void buf_init(struct buf *b);
void buf_fini(struct buf *b);                 /* frees; b may be reused after init */
void buf_reset(struct buf *b);                /* len = 0, keeps the memory */
int  buf_reserve(struct buf *b, size_t extra); /* 0 or -ENOMEM */
int  buf_append(struct buf *b, const void *p, size_t n);
int  buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends n bytes and a NUL that is not counted in len. */
int  buf_append_str(struct buf *b, const char *s, size_t n);

#endif
