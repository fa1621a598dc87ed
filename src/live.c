/* live.c - the live path (live.h).
 *
 * Why. With Kafka reachable and nothing waiting, every record used to be inserted
 * into SQLite by the journal merge, read back by the forwarder's claim, and deleted
 * after its acknowledgement: three SQLite operations, and one page cache emptied
 * by the other connection's writes, for a record that stays a few milliseconds.
 * bench/run-pipeline.sh measured that at a quarter of sluice's CPU at QoS 1. On the
 * live path the forwarder produces the record from a copy of its journal frame as
 * soon as the frame is written, and a merge skips the frames Kafka has already
 * acknowledged: those records never touch SQLite.
 *
 * Sequences. The ingest handle gives each record its sequence when its frame is
 * written (spool.c), not when the frame is merged, so a record has the same
 * sequence on the live path and in SQLite, and the forwarder's lane cursors mean
 * the same thing for both. A merge also raises meta.seq_floor to the newest
 * sequence it covers, so a skipped sequence is never handed out again.
 *
 * Order. Per lane, records must reach Kafka in sequence order. The forwarder has
 * three phases (forward.c, fw_live_*):
 *   off      it claims from SQLite after its cursors, as without a live path;
 *   barrier  after live_try_on: offers are queued from now on, and *barrier is the
 *            newest sequence offered before. The forwarder waits until every
 *            sequence up to the barrier is committed (live_committed_upto), claims
 *            SQLite up to the barrier and no further, and when every lane is
 *            drained up to it, moves to
 *   live     it takes the queue, in order, and produces; its cursors follow. It
 *            does not claim from SQLite: everything there is either at or before
 *            a cursor (produced already) or a queued record the merge copied
 *            there (produced from the queue).
 * Anything the live path cannot carry turns it off, dropping the queue: a record
 * taking the database path (live_block), a full queue, Kafka unreachable, a
 * producer that refuses (queue full, fatal error), forward.max_rate, a stop. The
 * dropped records are in the journal, so in SQLite after the next merge, after
 * their lane's cursor (which only ever covers produced records): the claims take
 * them, in order.
 *
 * Nothing lost. A record leaves SQLite's future only through live_skip, which
 * answers yes only for a sequence the forwarder reported acknowledged
 * (live_ack). An acknowledgement for a sequence already committed deletes the row,
 * as before. One that arrives while its frame is being merged (after live_skip said
 * no, before live_committed) is kept in the acknowledged list without the skipped
 * mark; live_committed hands it to live_late, and the forwarder deletes the row. A
 * failed merge commits nothing and calls no live_committed: the next merge asks
 * live_skip again.
 *
 * Duplicates. A crash loses the acknowledged list, so the journal replay re-sends
 * the acknowledged records of the unmerged journal: the merge waits (live_holding)
 * at most SPOOL_HOLD_MS or SPOOL_HOLD_ROWS records (spool.c), which bounds them.
 * The replay gives them the sequences they had, so downstream de-duplication on
 * sluice.instance + sluice.seq removes them. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/journal.h"
#include "sluice/live.h"

struct live_acked {
    uint64_t seq;
    bool     skipped;     /* a merge (maybe one that failed) left it out */
};

struct live {
    pthread_mutex_t mu;
    bool            on;
    atomic_bool     holding;
    size_t          max_records, max_bytes;

    struct buf      q;            /* [u64 seq][frame] entries */
    size_t          qhead;        /* bytes of q already taken */
    size_t          qn;           /* entries after qhead */

    uint64_t        last;         /* newest sequence offered or blocked */
    uint64_t        committed;    /* live_committed's newest upto */

    struct live_acked *acked;     /* acknowledged, sequence > committed when added */
    size_t          nacked, capacked;
    bool            sorted;
    uint64_t       *late;         /* for live_late */
    size_t          nlate, caplate;
};

int
live_create(struct live **out, size_t max_records, size_t max_bytes)
{
    struct live *lv = calloc(1, sizeof(*lv));

    *out = NULL;
    if (lv == NULL)
        return -ENOMEM;
    pthread_mutex_init(&lv->mu, NULL);
    atomic_init(&lv->holding, false);
    buf_init(&lv->q);
    lv->max_records = max_records;
    lv->max_bytes = max_bytes;
    lv->sorted = true;
    *out = lv;
    return 0;
}

void
live_destroy(struct live *lv)
{
    if (lv == NULL)
        return;
    buf_fini(&lv->q);
    free(lv->acked);
    free(lv->late);
    pthread_mutex_destroy(&lv->mu);
    free(lv);
}

/* Under mu. */
static void
live_drop_queue(struct live *lv)
{
    buf_reset(&lv->q);
    lv->qhead = lv->qn = 0;
}

static void
live_off_locked(struct live *lv)
{
    lv->on = false;
    atomic_store(&lv->holding, false);
    live_drop_queue(lv);
}

bool
live_offer(struct live *lv, uint64_t seq, const void *frame, size_t len)
{
    bool queued = false;

    pthread_mutex_lock(&lv->mu);
    if (seq > lv->last)
        lv->last = seq;
    if (lv->on) {
        if (lv->qn >= lv->max_records || lv->q.len - lv->qhead + len > lv->max_bytes ||
            buf_reserve(&lv->q, sizeof(seq) + len) < 0) {
            live_off_locked(lv);        /* the forwarder fell behind: SQLite it is */
        } else {
            buf_append(&lv->q, &seq, sizeof(seq));
            buf_append(&lv->q, frame, len);
            lv->qn++;
            queued = true;
        }
    }
    pthread_mutex_unlock(&lv->mu);
    return queued;
}

void
live_block(struct live *lv, uint64_t seq)
{
    pthread_mutex_lock(&lv->mu);
    if (seq > lv->last)
        lv->last = seq;
    live_off_locked(lv);
    pthread_mutex_unlock(&lv->mu);
}

static int
live_acked_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct live_acked *)a)->seq, y = ((const struct live_acked *)b)->seq;

    return x < y ? -1 : x > y;
}

void
live_skip_begin(struct live *lv)
{
    pthread_mutex_lock(&lv->mu);
    if (!lv->sorted) {
        qsort(lv->acked, lv->nacked, sizeof(*lv->acked), live_acked_cmp);
        lv->sorted = true;
    }
}

bool
live_skip(struct live *lv, uint64_t seq)
{
    size_t lo = 0, hi = lv->nacked;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (lv->acked[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < lv->nacked && lv->acked[lo].seq == seq) {
        lv->acked[lo].skipped = true;
        return true;
    }
    return false;
}

void
live_skip_end(struct live *lv)
{
    pthread_mutex_unlock(&lv->mu);
}

void
live_committed(struct live *lv, uint64_t upto)
{
    size_t keep = 0;

    pthread_mutex_lock(&lv->mu);
    if (upto > lv->committed)
        lv->committed = upto;
    for (size_t i = 0; i < lv->nacked; i++) {
        struct live_acked a = lv->acked[i];
        if (a.seq > lv->committed) {
            lv->acked[keep++] = a;
        } else if (!a.skipped) {
            /* Acknowledged while its merge ran: the row went in; delete it. */
            if (lv->nlate == lv->caplate) {
                size_t ncap = lv->caplate ? 2 * lv->caplate : 256;
                uint64_t *p = realloc(lv->late, ncap * sizeof(*p));
                if (p == NULL)
                    continue;   /* the row stays: re-sent after a restart, not lost */
                lv->late = p;
                lv->caplate = ncap;
            }
            lv->late[lv->nlate++] = a.seq;
        }
    }
    lv->nacked = keep;
    pthread_mutex_unlock(&lv->mu);
}

bool
live_holding(struct live *lv)
{
    return atomic_load(&lv->holding);
}

void
live_try_on(struct live *lv, uint64_t *barrier)
{
    pthread_mutex_lock(&lv->mu);
    lv->on = true;
    *barrier = lv->last;
    pthread_mutex_unlock(&lv->mu);
}

void
live_off(struct live *lv)
{
    pthread_mutex_lock(&lv->mu);
    live_off_locked(lv);
    pthread_mutex_unlock(&lv->mu);
}

bool
live_is_on(struct live *lv)
{
    bool on;

    pthread_mutex_lock(&lv->mu);
    on = lv->on;
    pthread_mutex_unlock(&lv->mu);
    return on;
}

void
live_set_holding(struct live *lv, bool holding)
{
    atomic_store(&lv->holding, holding);
}

uint64_t
live_committed_upto(struct live *lv)
{
    uint64_t c;

    pthread_mutex_lock(&lv->mu);
    c = lv->committed;
    pthread_mutex_unlock(&lv->mu);
    return c;
}

/* The length of the live entry at p (its sequence and frame); the frame's length
 * field was checked when journal.c wrote it. */
static size_t
live_entry_len(const unsigned char *p)
{
    const unsigned char *f = p + sizeof(uint64_t);
    uint32_t body = (uint32_t)f[0] | (uint32_t)f[1] << 8 | (uint32_t)f[2] << 16 |
                    (uint32_t)f[3] << 24;

    return sizeof(uint64_t) + JOURNAL_FRAME_HDR + body;
}

size_t
live_take(struct live *lv, struct buf *out, size_t max)
{
    size_t n = 0, end;

    pthread_mutex_lock(&lv->mu);
    end = lv->qhead;
    while (n < max && n < lv->qn) {
        end += live_entry_len((const unsigned char *)lv->q.data + end);
        n++;
    }
    if (n > 0 && buf_append(out, lv->q.data + lv->qhead, end - lv->qhead) < 0)
        n = 0;          /* out of memory: they stay queued */
    if (n > 0) {
        lv->qhead = end;
        lv->qn -= n;
        if (lv->qn == 0) {
            live_drop_queue(lv);
        } else if (lv->qhead > lv->q.len / 2) {
            /* A queue that never quite empties must not grow: move the rest down. */
            memmove(lv->q.data, lv->q.data + lv->qhead, lv->q.len - lv->qhead);
            lv->q.len -= lv->qhead;
            lv->qhead = 0;
        }
    }
    pthread_mutex_unlock(&lv->mu);
    return n;
}

bool
live_next(const void *data, size_t len, size_t *off, uint64_t *seq, struct record *rec)
{
    size_t o = *off + sizeof(uint64_t);
    uint64_t gen;

    if (data == NULL || *off > len || len - *off < sizeof(uint64_t))
        return false;
    if (!journal_frame_next(data, len, &o, &gen, rec))
        return false;
    memcpy(seq, (const char *)data + *off, sizeof(*seq));
    rec->seq = *seq;
    *off = o;
    return true;
}

/* Under mu: live_ack's decision for one sequence. */
static bool
live_ack_locked(struct live *lv, uint64_t seq)
{
    if (seq <= lv->committed)
        return true;
    if (lv->nacked == lv->capacked) {
        size_t ncap = lv->capacked ? 2 * lv->capacked : 1024;
        struct live_acked *p = realloc(lv->acked, ncap * sizeof(*p));
        if (p == NULL)
            return false;   /* cannot remember it: the merge inserts it, the row
                               stays until a restart re-sends it (a duplicate) */
        lv->acked = p;
        lv->capacked = ncap;
    }
    if (lv->nacked > 0 && lv->acked[lv->nacked - 1].seq > seq)
        lv->sorted = false;
    lv->acked[lv->nacked++] = (struct live_acked){ .seq = seq };
    return false;
}

bool
live_ack(struct live *lv, uint64_t seq)
{
    bool in_sqlite;

    pthread_mutex_lock(&lv->mu);
    in_sqlite = live_ack_locked(lv, seq);
    pthread_mutex_unlock(&lv->mu);
    return in_sqlite;
}

size_t
live_ack_many(struct live *lv, uint64_t *seqs, size_t n)
{
    size_t del = 0;

    pthread_mutex_lock(&lv->mu);
    for (size_t i = 0; i < n; i++) {
        if (live_ack_locked(lv, seqs[i]))
            seqs[del++] = seqs[i];
    }
    pthread_mutex_unlock(&lv->mu);
    return del;
}

size_t
live_late(struct live *lv, uint64_t *out, size_t max)
{
    size_t n;

    pthread_mutex_lock(&lv->mu);
    n = lv->nlate < max ? lv->nlate : max;
    if (n > 0) {
        memcpy(out, lv->late, n * sizeof(*out));
        memmove(lv->late, lv->late + n, (lv->nlate - n) * sizeof(*lv->late));
        lv->nlate -= n;
    }
    pthread_mutex_unlock(&lv->mu);
    return n;
}
