/* fuzz_journal.c - the intake journal's frame reader (a file a crash or a damaged
 * disk may have left in any state).
 *
 * Input: the bytes of a journal file. Checks: the scan's prefix lies inside the
 * input and holds exactly the frames frame_next yields up to it, all of one
 * generation; every decoded record points inside the input, has a NUL-terminated
 * lane, and survives re-encoding: journal_frame_add then journal_frame_next give the
 * same fields (the stored sequence too) back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/journal.h"

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
same(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static int
inside(const void *p, size_t n, const uint8_t *data, size_t size)
{
    const uint8_t *q = p;
    return n == 0 || (q >= data && q + n <= data + size);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t gen = 0, g, first = 0;
    size_t end = 0, off = 0, n, k = 0;
    struct record r, back;
    struct buf b;

    n = journal_scan(data, size, &gen, &end);
    CHECK(end <= size);
    CHECK((n == 0) == (end == 0));
    buf_init(&b);
    while (off < end) {
        size_t at = off, boff = 0;
        uint64_t bg;

        CHECK(journal_frame_next(data, size, &off, &g, &r));
        CHECK(off > at && off <= end);
        if (k == 0)
            first = g;
        CHECK(g == first);
        k++;
        CHECK(inside(r.lane, strlen(r.lane) + 1, data, size));
        CHECK(inside(r.topic, r.topic_len, data, size));
        CHECK(inside(r.key, r.key_len, data, size));
        CHECK(inside(r.value, r.value_len, data, size));
        CHECK(inside(r.mqtt_topic, r.mqtt_topic_len, data, size));
        CHECK(inside(r.hdrs, r.hdrs_len, data, size));

        buf_reset(&b);
        CHECK(journal_frame_add(&b, g, &r) == 0);
        CHECK(journal_frame_next(b.data, b.len, &boff, &bg, &back));
        CHECK(boff == b.len && bg == g);
        CHECK(strcmp(back.lane, r.lane) == 0);
        CHECK(same(back.topic, back.topic_len, r.topic, r.topic_len));
        CHECK((back.key == NULL) == (r.key == NULL));
        CHECK(same(back.key, back.key_len, r.key, r.key_len));
        CHECK(same(back.value, back.value_len, r.value, r.value_len));
        CHECK(same(back.mqtt_topic, back.mqtt_topic_len, r.mqtt_topic, r.mqtt_topic_len));
        CHECK(same(back.hdrs, back.hdrs_len, r.hdrs, r.hdrs_len));
        CHECK(back.event_ms == r.event_ms && back.ingest_ms == r.ingest_ms);
        CHECK(back.route == r.route && back.qos == r.qos);
        CHECK(back.retained == r.retained && back.dead_letter == r.dead_letter);
        CHECK(back.seq == r.seq);
    }
    CHECK(k == n);
    CHECK(n == 0 || gen == first);
    buf_fini(&b);
    return 0;
}

#include "fuzz_replay.h"
