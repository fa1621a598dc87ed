/* test_live.c - the live path's shared state (live.h): what is queued when, what a
 * merge may skip, and which acknowledgements delete rows. The spool's side (skipped
 * rows, sequences, the floor) is in test_spool.c. */
#include <check.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/journal.h"
#include "sluice/live.h"
#include "sluice/record.h"

/* Offers the frame of a small record with sequence seq; returns live_offer's word. */
static bool
offer(struct live *lv, uint64_t seq)
{
    char value[32];
    struct record rec = { .lane = "bulk", .topic = "t", .topic_len = 1, .mqtt_topic = "m/x",
                          .mqtt_topic_len = 3, .qos = 1, .seq = seq };
    struct buf f;
    bool queued;

    snprintf(value, sizeof(value), "value-%" PRIu64, seq);
    rec.value = value;
    rec.value_len = strlen(value);
    buf_init(&f);
    ck_assert_int_eq(journal_frame_add(&f, 3, &rec), 0);
    queued = live_offer(lv, seq, f.data, f.len);
    buf_fini(&f);
    return queued;
}

/* Takes everything queued; checks it is exactly first..last in order, with the
 * values offer gave them. */
static void
expect_taken(struct live *lv, uint64_t first, uint64_t last)
{
    struct buf b;
    struct record rec;
    uint64_t seq, want = first;
    size_t off = 0, n;
    char value[32];

    buf_init(&b);
    n = live_take(lv, &b, 100000);
    ck_assert_uint_eq(n, last >= first ? last - first + 1 : 0);
    while (live_next(b.data, b.len, &off, &seq, &rec)) {
        ck_assert_uint_eq(seq, want);
        ck_assert_uint_eq(rec.seq, want);
        snprintf(value, sizeof(value), "value-%" PRIu64, want);
        ck_assert_uint_eq(rec.value_len, strlen(value));
        ck_assert_mem_eq(rec.value, value, rec.value_len);
        ck_assert_str_eq(rec.lane, "bulk");
        want++;
    }
    ck_assert_uint_eq(off, b.len);
    ck_assert_uint_eq(want, last >= first ? last + 1 : first);
    buf_fini(&b);
}

START_TEST(test_live_queues_only_while_on_and_sets_the_barrier)
{
    struct live *lv;
    uint64_t barrier = 99;

    ck_assert_int_eq(live_create(&lv, 100, 1 << 20), 0);
    ck_assert(!offer(lv, 1));               /* off: the journal and SQLite have it */
    ck_assert(!offer(lv, 2));
    live_try_on(lv, &barrier);
    ck_assert_uint_eq(barrier, 2);          /* claim up to 2 before the queue */
    ck_assert(live_is_on(lv));
    for (uint64_t s = 3; s <= 7; s++)
        ck_assert(offer(lv, s));
    expect_taken(lv, 3, 7);
    expect_taken(lv, 8, 7);                 /* nothing left */
    ck_assert(offer(lv, 8));
    live_off(lv);                           /* drops what is queued */
    ck_assert(!live_is_on(lv));
    expect_taken(lv, 9, 8);
    ck_assert(!offer(lv, 9));
    live_destroy(lv);
}
END_TEST

START_TEST(test_live_a_full_queue_or_a_blocked_record_turns_it_off)
{
    struct live *lv;
    uint64_t barrier;

    ck_assert_int_eq(live_create(&lv, 3, 1 << 20), 0);
    live_try_on(lv, &barrier);
    ck_assert_uint_eq(barrier, 0);
    ck_assert(offer(lv, 1) && offer(lv, 2) && offer(lv, 3));
    ck_assert(!offer(lv, 4));               /* a 4th would exceed 3: off, dropped */
    ck_assert(!live_is_on(lv));
    expect_taken(lv, 1, 0);

    live_try_on(lv, &barrier);
    ck_assert_uint_eq(barrier, 4);
    ck_assert(offer(lv, 5));
    live_block(lv, 6);                      /* 6 went to SQLite directly */
    ck_assert(!live_is_on(lv));
    expect_taken(lv, 1, 0);
    live_try_on(lv, &barrier);
    ck_assert_uint_eq(barrier, 6);          /* the claims must reach 6 first */

    /* A queue that is taken as fast as it fills never hits the bound. */
    for (uint64_t s = 7; s < 1007; s++) {
        ck_assert(offer(lv, s));
        expect_taken(lv, s, s);
    }
    live_destroy(lv);
}
END_TEST

START_TEST(test_live_acks_skips_and_late_deletes)
{
    struct live *lv;
    uint64_t late[8];

    ck_assert_int_eq(live_create(&lv, 100, 1 << 20), 0);
    live_committed(lv, 10);                 /* 1..10 are in SQLite */
    ck_assert(live_ack(lv, 10));            /* so its ack deletes the row */
    ck_assert(!live_ack(lv, 14));           /* not merged yet: the merge skips it */
    ck_assert(!live_ack(lv, 12));           /* acks come in any order */
    ck_assert(!live_ack(lv, 17));

    live_skip_begin(lv);                    /* a merge of 11..15 */
    ck_assert(!live_skip(lv, 11));
    ck_assert(live_skip(lv, 12));
    ck_assert(!live_skip(lv, 13));
    ck_assert(live_skip(lv, 14));
    ck_assert(!live_skip(lv, 15));
    live_skip_end(lv);
    ck_assert(!live_ack(lv, 13));           /* acked while the merge ran: inserted */
    ck_assert_uint_eq(live_late(lv, late, 8), 0);
    live_committed(lv, 15);
    ck_assert_uint_eq(live_committed_upto(lv), 15);
    ck_assert_uint_eq(live_late(lv, late, 8), 1);
    ck_assert_uint_eq(late[0], 13);         /* 12 and 14 were skipped: nothing to do */
    ck_assert_uint_eq(live_late(lv, late, 8), 0);
    ck_assert(live_ack(lv, 15));

    /* A failed merge commits nothing: the next one skips the same rows again. */
    live_skip_begin(lv);
    ck_assert(live_skip(lv, 17));
    live_skip_end(lv);                      /* ... and no live_committed */
    live_skip_begin(lv);
    ck_assert(!live_skip(lv, 16));
    ck_assert(live_skip(lv, 17));
    live_skip_end(lv);
    live_committed(lv, 17);
    ck_assert_uint_eq(live_late(lv, late, 8), 0);
    live_committed(lv, 12);                 /* never goes back */
    ck_assert_uint_eq(live_committed_upto(lv), 17);

    /* Many at once: those in SQLite come back first, the rest wait for a merge. */
    uint64_t many[] = { 20, 16, 21, 3 };
    ck_assert_uint_eq(live_ack_many(lv, many, 4), 2);
    ck_assert_uint_eq(many[0], 16);
    ck_assert_uint_eq(many[1], 3);
    live_skip_begin(lv);
    ck_assert(live_skip(lv, 20) && live_skip(lv, 21) && !live_skip(lv, 16));
    live_skip_end(lv);
    live_destroy(lv);
}
END_TEST

START_TEST(test_live_holding_flag)
{
    struct live *lv;
    uint64_t barrier;

    ck_assert_int_eq(live_create(&lv, 100, 1 << 20), 0);
    ck_assert(!live_holding(lv));
    live_try_on(lv, &barrier);
    live_set_holding(lv, true);
    ck_assert(live_holding(lv));
    live_block(lv, 5);                      /* off: merges must not wait any more */
    ck_assert(!live_holding(lv));
    live_destroy(lv);
}
END_TEST

static Suite *
live_suite(void)
{
    Suite *s = suite_create("live");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_live_queues_only_while_on_and_sets_the_barrier);
    tcase_add_test(tc, test_live_a_full_queue_or_a_blocked_record_turns_it_off);
    tcase_add_test(tc, test_live_acks_skips_and_late_deletes);
    tcase_add_test(tc, test_live_holding_flag);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(live_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
