/* journal.h - frames of the spool's intake journal (see spool.c, "The intake
 * journal", for why it exists and how the spool uses it).
 *
 * A frame is one record, self-checking:
 *   [u32 body length][u32 CRC-32 of gen and body][u64 gen][body]
 * all little-endian; the body is
 *   [u8 flags][u8 qos][u32 route][i64 event_ms][i64 ingest_ms]
 *   then six [u32 length][bytes] fields: lane (with its NUL), topic, key, value,
 *   mqtt_topic, hdrs; then, when flags has bit 3 (the writer knew the record's
 *   spool sequence), that sequence as a u64.
 * gen is the journal generation the frame belongs to: a reader keeps the frames of
 * the first frame's generation up to the first frame that is torn, damaged or of
 * another generation (stale bytes of an older generation may follow them). */
#ifndef SLUICE_JOURNAL_H
#define SLUICE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/record.h"

struct buf;

#define JOURNAL_FRAME_HDR 16
#define JOURNAL_BODY_MAX  0x7fffffffu      /* a body never exceeds 2 GiB - 1 */

/* Appends rec as one frame of generation gen. 0, -E2BIG (over JOURNAL_BODY_MAX) or
 * -ENOMEM; on error b is as it was. rec->seq is stored when it is not 0. */
int  journal_frame_add(struct buf *b, uint64_t gen, const struct record *rec);

/* Decodes the frame at data + *off. true: rec (pointers into data) and *gen are
 * filled and *off moved past it; false: no whole, intact frame there (the end, a torn
 * tail, or damage), *off unchanged. rec->seq is the stored sequence, or 0. */
bool journal_frame_next(const void *data, size_t len, size_t *off, uint64_t *gen,
                        struct record *rec);

/* The valid prefix of a journal file's bytes: the frames of the first frame's
 * generation, up to the first frame that is not whole and intact or of another
 * generation. Returns their count; *gen is their generation (0 when none) and
 * *end the byte length of the prefix. */
size_t journal_scan(const void *data, size_t len, uint64_t *gen, size_t *end);

#endif
