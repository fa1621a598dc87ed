/* record.c - the extra-header block encoding and the fixed SPEC headers.
 *
 * Extra headers travel through the spool as one opaque blob: repeated
 * [u16 name_len][name][u32 value_len][value], little endian. A length-prefixed form
 * (rather than NUL separators) keeps arbitrary bytes in values intact and lets the
 * reader reject a damaged blob instead of running off its end. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/record.h"

int
record_hdrs_add(struct buf *b, const char *name, size_t name_len, const char *value,
                size_t value_len)
{
    unsigned char hdr[4];
    int rc;

    if (name_len > UINT16_MAX || value_len > UINT32_MAX)
        return -E2BIG;
    if ((rc = buf_reserve(b, 6 + name_len + value_len)) < 0)
        return rc;
    hdr[0] = (unsigned char)(name_len & 0xff);
    hdr[1] = (unsigned char)(name_len >> 8);
    buf_append(b, hdr, 2);
    buf_append(b, name, name_len);
    for (int i = 0; i < 4; i++)
        hdr[i] = (unsigned char)((value_len >> (8 * i)) & 0xff);
    buf_append(b, hdr, 4);
    buf_append(b, value, value_len);
    return 0;
}

bool
record_hdrs_next(const void *hdrs, size_t len, size_t *off, struct record_header *h)
{
    const unsigned char *p = hdrs;
    size_t o = *off, nlen, vlen;

    if (o + 2 > len)
        return false;
    nlen = (size_t)p[o] | (size_t)p[o + 1] << 8;
    o += 2;
    if (nlen > len - o || len - o - nlen < 4)
        return false;
    h->name = (const char *)p + o;
    h->name_len = nlen;
    o += nlen;
    vlen = (size_t)p[o] | (size_t)p[o + 1] << 8 | (size_t)p[o + 2] << 16 |
           (size_t)p[o + 3] << 24;
    o += 4;
    if (vlen > len - o)
        return false;
    h->value = (const char *)p + o;
    h->value_len = vlen;
    *off = o + vlen;
    return true;
}

bool
record_hdrs_find(const void *hdrs, size_t len, const char *name, struct record_header *h)
{
    size_t off = 0, n = strlen(name);

    while (record_hdrs_next(hdrs, len, &off, h)) {
        if (h->name_len == n && memcmp(h->name, name, n) == 0)
            return true;
    }
    return false;
}

/* Write v in decimal and a NUL to out (21 bytes suffice; 22 with a sign):
 * snprintf's format parsing was a visible share of the forwarder's time, three calls
 * per record. */
static void
record_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *out++ = tmp[--n];
    *out = '\0';
}

static void
record_i64(char *out, int64_t v)
{
    if (v < 0)
        *out++ = '-';
    record_u64(out, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
}

size_t
record_fixed_headers(const struct record *rec, const char *instance,
                     char scratch[RECORD_SCRATCH],
                     struct record_header out[RECORD_FIXED_HEADERS])
{
    /* scratch layout: qos (2) | event.time (21) | ingest.time (21) | seq (21) */
    char *qos = scratch, *ev = scratch + 2, *in = scratch + 24, *seq = scratch + 46;
    size_t n = 0;

    qos[0] = (char)('0' + (rec->qos & 3));
    qos[1] = '\0';
    record_i64(ev, rec->event_ms);
    record_i64(in, rec->ingest_ms);
    record_u64(seq, rec->seq);

#define HDR(n_, v_, l_) \
    out[n++] = (struct record_header){ n_, sizeof(n_) - 1, (v_), (l_) }
    HDR("mqtt.topic", rec->mqtt_topic, rec->mqtt_topic_len);
    HDR("mqtt.qos", qos, 1);
    HDR("mqtt.retained", rec->retained ? "true" : "false", rec->retained ? 4 : 5);
    HDR("event.time", ev, strlen(ev));
    HDR("ingest.time", in, strlen(in));
    HDR("sluice.instance", instance, strlen(instance));
    HDR("sluice.seq", seq, strlen(seq));
#undef HDR
    return n;
}
