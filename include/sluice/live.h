/* live.h - the live path: records the forwarder produces straight from the intake
 * journal, so that those Kafka acknowledges before the journal is merged never
 * touch SQLite (see live.c for the protocol and why it keeps order and loses
 * nothing).
 *
 * Three parties share one struct live:
 *   - the ingest handle's spool (under the ingest lock): live_offer after a record's
 *     journal frame is written, live_block when a record goes around the journal,
 *     live_skip_* while merging the journal, live_committed after each commit;
 *   - the forwarder thread: live_try_on / live_off, live_take, live_ack, live_late;
 *   - the ingest flusher: live_holding, whether merges may wait.
 * Every function is thread-safe. */
#ifndef SLUICE_LIVE_H
#define SLUICE_LIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/record.h"

struct buf;
struct live;

/* At most max_records records or max_bytes bytes wait in the queue; an offer past
 * either turns the live path off (the records go through SQLite as before). */
int  live_create(struct live **out, size_t max_records, size_t max_bytes);
void live_destroy(struct live *lv);

/* ---- the ingest handle -------------------------------------------------------- */

/* The journal frame (journal.h) of the record with sequence seq was written.
 * Queued for the forwarder while the live path is on: true (the caller wakes the
 * forwarder). */
bool live_offer(struct live *lv, uint64_t seq, const void *frame, size_t len);
/* The record with sequence seq took the database path (route state, aggregates,
 * compaction): the live path turns off, so the forwarder claims it from SQLite in
 * order. */
void live_block(struct live *lv, uint64_t seq);

/* Merging the journal: between begin and end, live_skip says whether the frame
 * with sequence seq was acknowledged already (then it is not inserted). */
void live_skip_begin(struct live *lv);
bool live_skip(struct live *lv, uint64_t seq);
void live_skip_end(struct live *lv);
/* Every sequence up to upto is now in SQLite, or was skipped. */
void live_committed(struct live *lv, uint64_t upto);

/* Whether the forwarder is producing from the queue, so merges may wait for its
 * acknowledgements. */
bool live_holding(struct live *lv);

/* ---- the forwarder ---------------------------------------------------------- */

/* Turns the live path on. *barrier: the newest sequence offered so far; the
 * forwarder claims from SQLite up to it (once live_committed_upto reaches it) and
 * only then takes from the queue, whose records are all newer. */
void live_try_on(struct live *lv, uint64_t *barrier);
/* Off, dropping the queue: those records are in the journal, so in SQLite soon. */
void live_off(struct live *lv);
bool live_is_on(struct live *lv);
void live_set_holding(struct live *lv, bool holding);
uint64_t live_committed_upto(struct live *lv);
/* Moves up to max queued records to the end of out, each as its sequence (a
 * uint64_t in host order, unaligned) followed by its journal frame; see
 * live_next. Returns how many. */
size_t live_take(struct live *lv, struct buf *out, size_t max);
/* Decodes the entry at data + *off of a live_take buffer: true with *seq and rec
 * (pointers into data) filled and *off moved past it. */
bool live_next(const void *data, size_t len, size_t *off, uint64_t *seq,
               struct record *rec);
/* A record produced from the queue was acknowledged (or dead-lettered): true when
 * it is in SQLite already and the caller deletes it; false when the merge will
 * skip it. */
bool live_ack(struct live *lv, uint64_t seq);
/* live_ack for seqs[0..n) under one lock: moves those the caller must delete to the
 * front of seqs and returns how many. */
size_t live_ack_many(struct live *lv, uint64_t *seqs, size_t n);
/* Acknowledged records that a merge inserted anyway (the acknowledgement came
 * while it ran): up to max sequences the caller deletes. Returns how many. */
size_t live_late(struct live *lv, uint64_t *out, size_t max);

#endif
