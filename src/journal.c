/* journal.c - frame encoding of the spool's intake journal (journal.h).
 *
 * Fields are written little-endian byte by byte, so a journal written on one box
 * reads the same on another. The CRC is zlib's CRC-32 over the generation and the
 * body: a frame torn by a crash, flipped bits, or the leftover bytes of an older
 * generation fail it (or the generation comparison) and end the valid prefix. */
#include <errno.h>
#include <string.h>

#include <zlib.h>

#include "sluice/buf.h"
#include "sluice/journal.h"

enum {
    JF_RETAINED    = 1 << 0,
    JF_DEAD_LETTER = 1 << 1,
    JF_HAS_KEY     = 1 << 2,
    JF_HAS_SEQ     = 1 << 3,        /* a u64 sequence follows the six fields */
};

#define JOURNAL_FIXED (1 + 1 + 4 + 8 + 8)      /* flags, qos, route, event, ingest */

/* n little-endian bytes of v at p, and back. */
static void
put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;

    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t
frame_crc(const unsigned char *gen_and_body, size_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);

    /* zlib takes uInt lengths: feed a 2 GiB body in pieces. */
    while (n > 0) {
        uInt step = n > 0x40000000u ? 0x40000000u : (uInt)n;
        crc = crc32(crc, gen_and_body, step);
        gen_and_body += step;
        n -= step;
    }
    return (uint32_t)crc;
}

int
journal_frame_add(struct buf *b, uint64_t gen, const struct record *rec)
{
    size_t lane_len = strlen(rec->lane) + 1;
    const void *fields[6] = { rec->lane, rec->topic, rec->key, rec->value,
                              rec->mqtt_topic, rec->hdrs };
    size_t lens[6] = { lane_len, rec->topic_len, rec->key != NULL ? rec->key_len : 0,
                       rec->value_len, rec->mqtt_topic_len, rec->hdrs_len };
    size_t body = JOURNAL_FIXED + (rec->seq != 0 ? 8 : 0), start = b->len;
    unsigned char *p;

    for (int i = 0; i < 6; i++) {
        if (lens[i] > JOURNAL_BODY_MAX - body - 4)
            return -E2BIG;
        body += 4 + lens[i];
    }
    if (buf_reserve(b, JOURNAL_FRAME_HDR + body) < 0)
        return -ENOMEM;
    p = (unsigned char *)b->data + start;
    put_le(p, (uint32_t)body, 4);
    put_le(p + 8, gen, 8);
    p += JOURNAL_FRAME_HDR;
    p[0] = (unsigned char)((rec->retained ? JF_RETAINED : 0) |
                           (rec->dead_letter ? JF_DEAD_LETTER : 0) |
                           (rec->key != NULL ? JF_HAS_KEY : 0) |
                           (rec->seq != 0 ? JF_HAS_SEQ : 0));
    p[1] = rec->qos;
    put_le(p + 2, rec->route, 4);
    put_le(p + 6, (uint64_t)rec->event_ms, 8);
    put_le(p + 14, (uint64_t)rec->ingest_ms, 8);
    p += JOURNAL_FIXED;
    for (int i = 0; i < 6; i++) {
        put_le(p, (uint32_t)lens[i], 4);
        if (lens[i] > 0)
            memcpy(p + 4, fields[i], lens[i]);
        p += 4 + lens[i];
    }
    if (rec->seq != 0)
        put_le(p, rec->seq, 8);
    p = (unsigned char *)b->data + start;
    put_le(p + 4, frame_crc(p + 8, 8 + body), 4);
    b->len = start + JOURNAL_FRAME_HDR + body;
    return 0;
}

bool
journal_frame_next(const void *data, size_t len, size_t *off, uint64_t *gen,
                   struct record *rec)
{
    const unsigned char *p, *end;
    const unsigned char *f[6];
    size_t flen[6];
    uint32_t body;

    if (data == NULL || *off > len || len - *off < JOURNAL_FRAME_HDR)
        return false;
    p = (const unsigned char *)data + *off;
    body = (uint32_t)get_le(p, 4);
    if (body < JOURNAL_FIXED + 6 * 4 || body > JOURNAL_BODY_MAX ||
        body > len - *off - JOURNAL_FRAME_HDR)
        return false;
    if ((uint32_t)get_le(p + 4, 4) != frame_crc(p + 8, 8 + (size_t)body))
        return false;
    end = p + JOURNAL_FRAME_HDR + body;
    const unsigned char *q = p + JOURNAL_FRAME_HDR + JOURNAL_FIXED;
    for (int i = 0; i < 6; i++) {
        if ((size_t)(end - q) < 4)
            return false;
        flen[i] = (uint32_t)get_le(q, 4);
        q += 4;
        if (flen[i] > (size_t)(end - q))
            return false;
        f[i] = q;
        q += flen[i];
    }
    const unsigned char *b = p + JOURNAL_FRAME_HDR;
    uint64_t seq = 0;
    if (b[0] & JF_HAS_SEQ) {
        if ((size_t)(end - q) < 8)
            return false;
        seq = get_le(q, 8);
        q += 8;
    }
    /* The lane is a NUL-terminated name; nothing may follow the last field. */
    if (q != end || flen[0] == 0 || f[0][flen[0] - 1] != '\0')
        return false;
    memset(rec, 0, sizeof(*rec));
    rec->seq = seq;
    rec->retained = (b[0] & JF_RETAINED) != 0;
    rec->dead_letter = (b[0] & JF_DEAD_LETTER) != 0;
    rec->qos = b[1];
    rec->route = (uint32_t)get_le(b + 2, 4);
    rec->event_ms = (int64_t)get_le(b + 6, 8);
    rec->ingest_ms = (int64_t)get_le(b + 14, 8);
    rec->lane = (const char *)f[0];
    rec->topic = (const char *)f[1];
    rec->topic_len = flen[1];
    rec->key = (b[0] & JF_HAS_KEY) ? (const char *)f[2] : NULL;
    rec->key_len = (b[0] & JF_HAS_KEY) ? flen[2] : 0;
    rec->value = f[3];
    rec->value_len = flen[3];
    rec->mqtt_topic = (const char *)f[4];
    rec->mqtt_topic_len = flen[4];
    rec->hdrs = f[5];
    rec->hdrs_len = flen[5];
    *gen = get_le(p + 8, 8);
    *off += JOURNAL_FRAME_HDR + body;
    return true;
}

size_t
journal_scan(const void *data, size_t len, uint64_t *gen, size_t *end)
{
    struct record rec;
    size_t off = 0, n = 0;
    uint64_t g = 0, first = 0;

    for (;;) {
        size_t at = off;
        if (!journal_frame_next(data, len, &off, &g, &rec))
            break;
        if (n == 0)
            first = g;
        else if (g != first) {
            off = at;
            break;
        }
        n++;
    }
    *gen = n > 0 ? first : 0;
    *end = off;
    return n;
}
