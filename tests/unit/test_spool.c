/* test_spool.c - the spool: order, lanes, sequences, batches, damage, faults.
 *
 * Every test works in its own mkdtemp directory. Damaged fixtures come from
 * $SLUICE_TEST_DATA/spool (see make_fixtures.py there); each is copied to scratch,
 * must be refused with -EBADMSG and a clear sentence, and must be byte-identical
 * afterwards. Fault tests need the seams (meson -Dfault_seams=true). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/buf.h"
#include "sluice/config.h"
#include "sluice/err.h"
#include "sluice/journal.h"
#include "sluice/live.h"
#include "sluice/metrics.h"
#include "sluice/record.h"
#include "sluice/spool.h"

#define N(t) (sizeof(t) / sizeof((t)[0]))

static char scratch[256];
static char dbpath[320];

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(p);
}

static void
setup(void)
{
    snprintf(scratch, sizeof(scratch), "%s/sluice-spool-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(scratch));
    snprintf(dbpath, sizeof(dbpath), "%s/spool.db", scratch);
}

static void
teardown(void)
{
    nftw(scratch, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct spool *
open_at(const char *path, enum config_durability d, bool ro)
{
    struct spool_conf conf = { .path = path, .durability = d, .readonly = ro };
    struct spool *sp = NULL;
    struct err err = {0};
    int rc = spool_open(&sp, &conf, &err);

    ck_assert_msg(rc == 0, "spool_open %s: %d %s", path, rc, err.msg);
    return sp;
}

static struct spool *
open_rw(void)
{
    return open_at(dbpath, DURABILITY_PROCESS, false);
}

/* A record whose value names it: "<lane>:<i>" padded to about 200 bytes. */
struct mkrec {
    struct record rec;
    char          value[256];
    char          key[32];
    char          mtopic[64];
};

static struct record *
mkrec(struct mkrec *m, const char *lane, int i)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->value, sizeof(m->value), "%s:%d:%0180d", lane, i, 0);
    snprintf(m->key, sizeof(m->key), "dev-%d", i % 7);
    snprintf(m->mtopic, sizeof(m->mtopic), "factory/b/l1/dev-%d/telemetry", i % 7);
    m->rec.topic = "telemetry.b";
    m->rec.topic_len = strlen(m->rec.topic);
    m->rec.key = m->key;
    m->rec.key_len = strlen(m->key);
    m->rec.value = m->value;
    m->rec.value_len = strlen(m->value);
    m->rec.mqtt_topic = m->mtopic;
    m->rec.mqtt_topic_len = strlen(m->mtopic);
    m->rec.lane = lane;
    m->rec.event_ms = 1700000000000 + i;
    m->rec.ingest_ms = 1700000000500 + i;
    m->rec.route = (uint32_t)(i % 3);
    m->rec.qos = 1;
    return &m->rec;
}

/* Appends mkrec(lane, i); returns the sequence it got. */
static uint64_t
append_any(struct spool *sp, const char *lane, int i, bool commit)
{
    struct mkrec m;
    struct err err = {0};
    struct record *r = mkrec(&m, lane, i);
    int rc = spool_append(sp, r, commit, &err);

    ck_assert_msg(rc == 0, "append %s %d: %d %s", lane, i, rc, err.msg);
    return r->seq;
}

static uint64_t
append(struct spool *sp, const char *lane, int i, bool commit)
{
    uint64_t seq = append_any(sp, lane, i, commit);

    ck_assert_uint_gt(seq, 0);
    return seq;
}

static size_t
claim_all(struct spool *sp, const char *lane, struct spool_batch *b)
{
    struct err err = {0};
    int rc;

    spool_batch_reset(b);
    rc = spool_claim(sp, lane, 0, SIZE_MAX, b, &err);
    ck_assert_msg(rc == 0, "claim: %d %s", rc, err.msg);
    return b->n;
}

/* Checks that claimed record r is the one mkrec(lane, i) made. */
static void
check_rec(const struct record *r, const char *lane, int i)
{
    struct mkrec m;
    const struct record *w = mkrec(&m, lane, i);

    ck_assert_str_eq(r->lane, lane);
    ck_assert_uint_eq(r->value_len, w->value_len);
    ck_assert_mem_eq(r->value, w->value, w->value_len);
    ck_assert_uint_eq(r->topic_len, w->topic_len);
    ck_assert_mem_eq(r->topic, w->topic, w->topic_len);
    ck_assert_uint_eq(r->key_len, w->key_len);
    ck_assert_mem_eq(r->key, w->key, w->key_len);
    ck_assert_uint_eq(r->mqtt_topic_len, w->mqtt_topic_len);
    ck_assert_mem_eq(r->mqtt_topic, w->mqtt_topic, w->mqtt_topic_len);
    ck_assert_int_eq(r->event_ms, w->event_ms);
    ck_assert_int_eq(r->ingest_ms, w->ingest_ms);
    ck_assert_uint_eq(r->route, w->route);
    ck_assert_uint_eq(r->qos, 1);
    ck_assert(!r->retained && !r->dead_letter);
    ck_assert_uint_eq(r->hdrs_len, 0);
}

static uint64_t
count_rows(struct spool *sp, const char *lane)
{
    struct spool_batch b;
    size_t n;

    spool_batch_init(&b);
    n = claim_all(sp, lane, &b);
    spool_batch_fini(&b);
    return n;
}

static void
slurp(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long n;

    ck_assert_msg(f != NULL, "open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    *data = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(*data);
    ck_assert_uint_eq(fread(*data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
}

static void
spit(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* ---------------------------------------------------------------------------- */

START_TEST(test_spool_append_claim_delete_in_order)
{
    struct spool *sp = open_rw();
    struct spool_batch b;
    struct err err = {0};
    uint64_t seqs[10];

    for (int i = 0; i < 10; i++)
        seqs[i] = append(sp, "bulk", i, true);
    spool_batch_init(&b);
    ck_assert_uint_eq(claim_all(sp, "bulk", &b), 10);
    for (size_t i = 0; i < 10; i++) {
        ck_assert_uint_eq(b.recs[i].seq, seqs[i]);
        if (i > 0)
            ck_assert_uint_gt(b.recs[i].seq, b.recs[i - 1].seq);
        check_rec(&b.recs[i], "bulk", (int)i);
    }
    /* Claiming does not consume: a claim after the 4th resumes there. */
    spool_batch_reset(&b);
    ck_assert_int_eq(spool_claim(sp, "bulk", seqs[3], 2, &b, &err), 0);
    ck_assert_uint_eq(b.n, 2);
    ck_assert_uint_eq(b.recs[0].seq, seqs[4]);
    ck_assert_uint_eq(b.recs[1].seq, seqs[5]);

    ck_assert_int_eq(spool_delete(sp, seqs, 4, &err), 0);
    uint64_t unknown[] = { 999999, seqs[0] };
    ck_assert_int_eq(spool_delete(sp, unknown, 2, &err), 0);
    ck_assert_uint_eq(claim_all(sp, "bulk", &b), 6);
    ck_assert_uint_eq(b.recs[0].seq, seqs[4]);
    check_rec(&b.recs[0], "bulk", 4);
    spool_batch_fini(&b);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_lanes_are_separate)
{
    struct spool *sp = open_rw(), *fw;
    struct spool_batch b;
    struct err err = {0};
    uint64_t seqs[20];

    /* Sequences are global: unique and increasing across lanes. */
    for (int i = 0; i < 20; i++) {
        seqs[i] = append(sp, i % 3 == 0 ? "urgent" : "bulk", i, true);
        if (i > 0)
            ck_assert_uint_gt(seqs[i], seqs[i - 1]);
    }
    spool_batch_init(&b);
    ck_assert_uint_eq(claim_all(sp, "urgent", &b), 7);
    for (size_t i = 0; i < b.n; i++) {
        check_rec(&b.recs[i], "urgent", (int)i * 3);
        ck_assert_uint_eq(b.recs[i].seq, seqs[i * 3]);
    }
    ck_assert_uint_eq(claim_all(sp, "bulk", &b), 13);
    ck_assert_uint_eq(claim_all(sp, "nosuchlane", &b), 0);

    /* A handle that never saw the lanes deletes across both in one call. */
    fw = open_rw();
    ck_assert_int_eq(spool_delete(fw, seqs, 6, &err), 0);
    ck_assert_uint_eq(count_rows(fw, "urgent"), 5);
    ck_assert_uint_eq(count_rows(fw, "bulk"), 9);
    /* Deletes go by runs of consecutive sequences: unsorted, duplicated, unknown
     * (deleted already) and interleaved across lanes, exactly the named rows go.
     * Left: 6 (urgent), 10 and 19 (bulk). */
    uint64_t some[] = { seqs[9], seqs[7], seqs[8], seqs[2], seqs[7], seqs[11],
                        seqs[12], seqs[13], seqs[14], seqs[15], seqs[16], seqs[17],
                        seqs[18], seqs[0], 0 };
    ck_assert_int_eq(spool_delete(fw, some, N(some), &err), 0);
    ck_assert_uint_eq(claim_all(fw, "urgent", &b), 1);
    ck_assert_uint_eq(b.recs[0].seq, seqs[6]);
    ck_assert_uint_eq(claim_all(fw, "bulk", &b), 2);
    ck_assert_uint_eq(b.recs[0].seq, seqs[10]);
    ck_assert_uint_eq(b.recs[1].seq, seqs[19]);
    /* Sequences too far apart for the bitmap sort take the other path. */
    uint64_t far[] = { (uint64_t)1 << 40, seqs[19], seqs[6], seqs[19] };
    ck_assert_int_eq(spool_delete(fw, far, N(far), &err), 0);
    ck_assert_uint_eq(count_rows(fw, "urgent"), 0);
    ck_assert_uint_eq(claim_all(fw, "bulk", &b), 1);
    ck_assert_uint_eq(b.recs[0].seq, seqs[10]);
    spool_close(fw);
    spool_batch_fini(&b);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_seq_never_reused_after_delete_and_reopen)
{
    struct spool *sp = open_rw();
    struct err err = {0};
    uint64_t seqs[3], last;

    for (int i = 0; i < 3; i++)
        seqs[i] = append(sp, "bulk", i, true);
    ck_assert_int_eq(spool_delete(sp, seqs, 3, &err), 0);
    spool_close(sp);
    sp = open_rw();
    last = append(sp, "bulk", 3, true);
    ck_assert_uint_gt(last, seqs[2]);
    /* Also within one handle, and after deleting only the highest row. */
    ck_assert_int_eq(spool_delete(sp, &last, 1, &err), 0);
    ck_assert_uint_gt(append(sp, "bulk", 4, true), last);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_batch_commits_together)
{
    struct spool *in = open_rw(), *fw = open_rw();
    struct err err = {0};

    ck_assert_uint_eq(spool_pending(in), 0);
    ck_assert_int_eq(spool_pending_since_ms(in), 0);
    for (int i = 0; i < 5; i++)
        append(in, "bulk", i, false);
    ck_assert_uint_eq(spool_pending(in), 5);
    ck_assert_int_gt(spool_pending_since_ms(in), 0);
    ck_assert_uint_eq(count_rows(fw, "bulk"), 0);     /* invisible until commit */
    ck_assert_int_eq(spool_commit(in, &err), 0);
    ck_assert_uint_eq(spool_pending(in), 0);
    ck_assert_uint_eq(count_rows(fw, "bulk"), 5);
    ck_assert_int_eq(spool_commit(in, &err), 0);      /* no batch: no-op */
    /* commit=true while a batch is open commits the batch with it. */
    append(in, "bulk", 5, false);
    append(in, "bulk", 6, true);
    ck_assert_uint_eq(spool_pending(in), 0);
    ck_assert_uint_eq(count_rows(fw, "bulk"), 7);
    spool_close(fw);
    spool_close(in);
}
END_TEST

START_TEST(test_spool_close_rolls_back_open_batch)
{
    struct spool *sp = open_rw();

    append(sp, "bulk", 0, true);
    append(sp, "bulk", 1, false);
    spool_close(sp);
    sp = open_rw();
    ck_assert_uint_eq(count_rows(sp, "bulk"), 1);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_reopen_keeps_rows)
{
    struct spool *sp = open_rw();
    struct spool_batch b;

    for (int i = 0; i < 50; i++)
        append(sp, "bulk", i, i % 2 == 0 || i == 49);   /* odd rows ride the next */
    spool_close(sp);
    sp = open_rw();
    spool_batch_init(&b);
    ck_assert_uint_eq(claim_all(sp, "bulk", &b), 50);
    for (size_t i = 0; i < 50; i++)
        check_rec(&b.recs[i], "bulk", (int)i);
    spool_batch_fini(&b);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_claim_arena_growth_keeps_pointers)
{
    struct spool *sp = open_rw();
    struct spool_batch b;
    struct err err = {0};
    uint64_t after = 0;

    for (int i = 0; i < 300; i++)
        append(sp, "bulk", i, true);
    /* Many small claims into one batch: the arena moves several times. */
    spool_batch_init(&b);
    while (b.n < 300) {
        size_t n0 = b.n;
        ck_assert_int_eq(spool_claim(sp, "bulk", after, 7, &b, &err), 0);
        ck_assert_uint_gt(b.n, n0);
        after = b.recs[b.n - 1].seq;
    }
    for (size_t i = 0; i < 300; i++)
        check_rec(&b.recs[i], "bulk", (int)i);
    spool_batch_fini(&b);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_null_key_headers_and_flags_round_trip)
{
    struct spool *sp = open_rw();
    struct spool_batch b;
    struct record_header h;
    struct err err = {0};
    struct buf hdrs;
    struct mkrec m;
    struct record *r = mkrec(&m, "dl", 1);

    buf_init(&hdrs);
    ck_assert_int_eq(record_hdrs_add(&hdrs, "error", 5, "bad json", 8), 0);
    r->key = NULL;
    r->key_len = 0;
    r->value_len = 0;
    r->hdrs = hdrs.data;
    r->hdrs_len = hdrs.len;
    r->retained = true;
    r->dead_letter = true;
    r->qos = 2;
    ck_assert_int_eq(spool_append(sp, r, true, &err), 0);
    spool_batch_init(&b);
    ck_assert_uint_eq(claim_all(sp, "dl", &b), 1);
    ck_assert_ptr_null(b.recs[0].key);
    ck_assert_uint_eq(b.recs[0].value_len, 0);
    ck_assert_ptr_nonnull(b.recs[0].value);
    ck_assert(b.recs[0].retained && b.recs[0].dead_letter);
    ck_assert_uint_eq(b.recs[0].qos, 2);
    ck_assert(record_hdrs_find(b.recs[0].hdrs, b.recs[0].hdrs_len, "error", &h));
    ck_assert_uint_eq(h.value_len, 8);
    ck_assert_mem_eq(h.value, "bad json", 8);
    buf_fini(&hdrs);
    spool_batch_fini(&b);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_file_modes_ignore_umask)
{
    char path[400], side[420];
    struct stat st;
    mode_t old = umask(0);
    struct spool *sp;

    snprintf(path, sizeof(path), "%s/var/lib/sluice/spool.db", scratch);
    sp = open_at(path, DURABILITY_PROCESS, false);
    append(sp, "bulk", 0, true);
    umask(old);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    snprintf(side, sizeof(side), "%s-wal", path);
    ck_assert_int_eq(stat(side, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    snprintf(side, sizeof(side), "%s-shm", path);
    ck_assert_int_eq(stat(side, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    snprintf(side, sizeof(side), "%s/var/lib/sluice", scratch);
    ck_assert_int_eq(stat(side, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0700);
    snprintf(side, sizeof(side), "%s/var", scratch);
    ck_assert_int_eq(stat(side, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0700);
    ck_assert_int_eq(spool_sync_wal(sp), 0);
    spool_close(sp);
}
END_TEST

/* Read-only opens (`sluice spool stats`) skip the O(file) quick_check, so damage
 * inside a page they never read goes unnoticed there; they still never write. */
static const struct {
    const char *file;
    const char *want;      /* substring of the error sentence */
    bool        ro_sees;   /* a read-only open refuses it too */
} damaged[] = {
    { "not_a_database.spool", "not a sluice spool: file is not a database", true },
    { "truncated.spool",      "damaged", true },
    { "future_version.spool", "schema version 999 is newer than this sluice (4)", true },
    { "bitflip.spool",        "damaged (integrity check: *** in database main ***", false },
};

START_TEST(test_spool_damaged_file_refused_and_untouched)
{
    const char *data = getenv("SLUICE_TEST_DATA");
    struct spool_conf conf = { .path = dbpath };
    char fixture[512], *before, *after;
    size_t nbefore, nafter;
    struct spool *sp = NULL;
    struct err err = {0};
    int rc;

    ck_assert_msg(data != NULL, "SLUICE_TEST_DATA is not set");
    snprintf(fixture, sizeof(fixture), "%s/spool/%s", data, damaged[_i].file);
    slurp(fixture, &before, &nbefore);
    spit(dbpath, before, nbefore);
    for (int ro = 0; ro < 2; ro++) {
        conf.readonly = ro;
        err_clear(&err);
        rc = spool_open(&sp, &conf, &err);
        if (ro && !damaged[_i].ro_sees) {
            ck_assert_int_eq(rc, 0);
            spool_close(sp);
        } else {
            ck_assert_msg(rc == -EBADMSG, "%s (ro %d): rc %d: %s", damaged[_i].file, ro,
                          rc, err.msg);
            ck_assert_ptr_null(sp);
            ck_assert_msg(strstr(err.msg, damaged[_i].want) != NULL, "%s: %s",
                          damaged[_i].file, err.msg);
            ck_assert_msg(strstr(err.msg, dbpath) != NULL, "no path in: %s", err.msg);
            fprintf(stderr, "%s%s: %s\n", damaged[_i].file, ro ? " (ro)" : "", err.msg);
        }
        slurp(dbpath, &after, &nafter);
        ck_assert_uint_eq(nafter, nbefore);
        ck_assert_msg(memcmp(before, after, nbefore) == 0, "%s was modified",
                      damaged[_i].file);
        free(after);
    }
    free(before);
}
END_TEST

START_TEST(test_spool_deleted_wal_loses_uncheckpointed_rows_but_opens)
{
    char wal[400];
    struct spool *sp;
    pid_t pid;
    int status;

    sp = open_rw();              /* schema checkpointed into the file on close */
    append(sp, "bulk", 0, true);
    spool_close(sp);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Commit rows, then die without closing: they live only in the WAL. */
        struct spool *c = open_rw();
        for (int i = 1; i <= 10; i++)
            append(c, "bulk", i, true);
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    snprintf(wal, sizeof(wal), "%s-wal", dbpath);
    ck_assert_int_eq(unlink(wal), 0);
    /* The WAL was the only copy of those ten commits: they are gone, the row that
     * a checkpoint had moved into the file stays, and the spool opens fine. */
    sp = open_rw();
    ck_assert_uint_eq(count_rows(sp, "bulk"), 1);
    append(sp, "bulk", 11, true);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_crash_keeps_committed_rows)
{
    struct spool *sp;
    pid_t pid;
    int status;

    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct spool *c = open_rw();
        for (int i = 0; i < 10; i++)
            append(c, "bulk", i, true);
        append(c, "bulk", 10, false);     /* uncommitted batch: not promised */
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    sp = open_rw();
    ck_assert_uint_eq(count_rows(sp, "bulk"), 10);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_readonly_stats_while_another_handle_writes)
{
    struct spool *w = open_rw(), *ro;
    struct spool_stats st;
    struct err err = {0};

    for (int i = 0; i < 10; i++)
        append(w, i < 4 ? "urgent" : "bulk", i, true);
    ro = open_at(dbpath, DURABILITY_PROCESS, true);
    ck_assert_int_eq(spool_stats(ro, &st, &err), 0);
    ck_assert_uint_eq(st.records, 10);
    ck_assert_uint_eq(st.nlanes, 2);
    ck_assert_str_eq(st.lanes[0].name, "bulk");
    ck_assert_uint_eq(st.lanes[0].records, 6);
    ck_assert_int_eq(st.lanes[0].oldest_ms, 1700000000500 + 4);
    ck_assert_str_eq(st.lanes[1].name, "urgent");
    ck_assert_uint_eq(st.lanes[1].records, 4);
    ck_assert_int_eq(st.lanes[1].oldest_ms, 1700000000500);
    ck_assert_uint_gt(st.bytes, 10 * 200);
    ck_assert_uint_eq(st.bytes, st.lanes[0].bytes + st.lanes[1].bytes);
    ck_assert_uint_gt(st.file_bytes, 0);
    spool_stats_fini(&st);

    /* The writer keeps going, even with a batch open; stats see committed rows. */
    append(w, "bulk", 10, true);
    append(w, "bulk", 11, false);
    ck_assert_int_eq(spool_stats(ro, &st, &err), 0);
    ck_assert_uint_eq(st.records, 11);
    spool_stats_fini(&st);
    ck_assert_int_eq(spool_commit(w, &err), 0);

    struct mkrec m;
    ck_assert_int_eq(spool_append(ro, mkrec(&m, "bulk", 1), true, &err), -EROFS);
    spool_close(ro);
    spool_close(w);

    /* And read-only after a clean shutdown (no -wal, no -shm left). */
    ro = open_at(dbpath, DURABILITY_PROCESS, true);
    ck_assert_int_eq(spool_stats(ro, &st, &err), 0);
    ck_assert_uint_eq(st.records, 12);
    spool_stats_fini(&st);
    spool_close(ro);
}
END_TEST

START_TEST(test_spool_readonly_missing_file)
{
    struct spool_conf conf = { .path = dbpath, .readonly = true };
    struct spool *sp = NULL;
    struct err err = {0};

    ck_assert_int_eq(spool_open(&sp, &conf, &err), -ENOENT);
    ck_assert_ptr_null(sp);
    ck_assert_ptr_nonnull(strstr(err.msg, dbpath));
    ck_assert_int_ne(access(dbpath, F_OK), 0);     /* and nothing was created */
}
END_TEST

/* Two handles on two threads, as in the bridge: one appends, one drains. */
#define RACE_ROWS 3000
static void *
race_ingest(void *arg)
{
    struct spool *sp = arg;

    for (int i = 0; i < RACE_ROWS; i++)
        append(sp, "bulk", i, i % 10 != 0);
    return NULL;
}

START_TEST(test_spool_ingest_and_forwarder_handles_interleave)
{
    struct spool *in = open_rw(), *fw = open_rw();
    struct spool_batch b;
    struct err err = {0};
    uint64_t after = 0, seqs[256];
    pthread_t t;
    int next = 0;

    ck_assert_int_eq(pthread_create(&t, NULL, race_ingest, in), 0);
    spool_batch_init(&b);
    while (next < RACE_ROWS) {
        spool_batch_reset(&b);
        ck_assert_msg(spool_claim(fw, "bulk", after, N(seqs), &b, &err) == 0, "%s",
                      err.msg);
        for (size_t i = 0; i < b.n; i++) {
            check_rec(&b.recs[i], "bulk", next++);
            seqs[i] = b.recs[i].seq;
        }
        if (b.n > 0) {
            after = b.recs[b.n - 1].seq;
            ck_assert_msg(spool_delete(fw, seqs, b.n, &err) == 0, "%s", err.msg);
        }
    }
    pthread_join(t, NULL);
    ck_assert_int_eq(spool_commit(in, &err), 0);
    ck_assert_uint_eq(count_rows(fw, "bulk"), 0);
    spool_batch_fini(&b);
    spool_close(fw);
    spool_close(in);
}
END_TEST

static int
count_dead(const struct spool_dead *d, void *arg)
{
    ck_assert(d->stage[0] != '\0');
    (*(size_t *)arg)++;
    return 0;
}

/* A retention policy: urgent (priority 0) and bulk (priority 9, max_age bulk_age). */
static void
policy(struct config *cfg, struct config_lane *lanes, uint64_t max_bytes,
       enum config_when_full wf, int64_t bulk_age)
{
    memset(cfg, 0, sizeof(*cfg));
    lanes[0] = (struct config_lane){ .name = "urgent", .priority = 0 };
    lanes[1] = (struct config_lane){ .name = "bulk", .priority = 9, .max_age_ms = bulk_age };
    cfg->lanes = lanes;
    cfg->nlanes = 2;
    cfg->spool.max_bytes = max_bytes;
    cfg->spool.when_full = wf;
}

START_TEST(test_spool_max_age_evicts_only_old_rows_of_its_lane)
{
    struct spool *sp = open_rw();
    struct spool_batch b;
    struct config cfg;
    struct config_lane lanes[2];
    struct err err = {0};
    uint64_t before = metrics_get(&metrics.dropped[DROP_MAX_AGE]);

    policy(&cfg, lanes, 0, WHEN_FULL_DROP_OLDEST, 1000);
    ck_assert_int_eq(spool_set_policy(sp, &cfg), 0);
    for (int i = 1; i <= 10; i++) {
        append(sp, "bulk", i, true);
        append(sp, "urgent", i, true);
    }
    /* mkrec's ingest_ms is 1700000000500 + i: rows 1..5 are over 1 s old. */
    ck_assert_int_eq(spool_retain(sp, 1700000000500 + 1000 + 6, &err), 0);
    spool_batch_init(&b);
    ck_assert_uint_eq(claim_all(sp, "bulk", &b), 5);
    check_rec(&b.recs[0], "bulk", 6);
    ck_assert_uint_eq(claim_all(sp, "urgent", &b), 10);    /* no max_age of its own */
    ck_assert_uint_eq(metrics_get(&metrics.dropped[DROP_MAX_AGE]) - before, 5);
    ck_assert_int_eq(spool_retain(sp, 1700000000500 + 1000 + 6, &err), 0);   /* idempotent */
    ck_assert_uint_eq(claim_all(sp, "bulk", &b), 5);
    spool_batch_fini(&b);
    spool_close(sp);
}
END_TEST

/* compact: latest_per_key keeps the newest waiting row per Kafka key in that lane
 * only, on both append paths; a rolled-back batch brings the superseded rows back; a
 * superseded row already claimed is deleted as a no-op; keyless rows stay. */
START_TEST(test_spool_compact_latest_per_key)
{
    struct spool *sp = open_rw();
    struct spool_batch b;
    struct config cfg;
    struct config_lane lanes[2];
    struct err err = {0};
    struct mkrec m;
    struct record *r;
    uint64_t before = metrics_get(&metrics.compacted[0]), seqs[7];

    policy(&cfg, lanes, 0, WHEN_FULL_DROP_OLDEST, 0);
    lanes[0].compact = COMPACT_LATEST_PER_KEY;
    ck_assert_int_eq(spool_set_policy(sp, &cfg), 0);
    for (int i = 1; i <= 21; i++) {          /* keys dev-0 .. dev-6, three rounds */
        append(sp, "urgent", i, true);
        append(sp, "bulk", i, true);
    }
    spool_batch_init(&b);
    ck_assert_uint_eq(claim_all(sp, "urgent", &b), 7);
    for (size_t i = 0; i < 7; i++)
        check_rec(&b.recs[i], "urgent", 15 + (int)i);      /* the newest, in order */
    ck_assert_uint_eq(claim_all(sp, "bulk", &b), 21);       /* other lanes untouched */
    ck_assert_uint_eq(metrics_get(&metrics.compacted[0]) - before, 14);

    /* in flight: claimed, then superseded (QoS 0 batch), then "delivered" */
    ck_assert_uint_eq(claim_all(sp, "urgent", &b), 7);
    for (size_t i = 0; i < 7; i++)
        seqs[i] = b.recs[i].seq;
    for (int i = 22; i <= 28; i++)
        append(sp, "urgent", i, false);
    ck_assert_int_eq(spool_commit(sp, &err), 0);
    ck_assert_int_eq(spool_delete(sp, seqs, 7, &err), 0);
    ck_assert_uint_eq(claim_all(sp, "urgent", &b), 7);
    check_rec(&b.recs[0], "urgent", 22);

    /* a keyless record is never superseded */
    r = mkrec(&m, "urgent", 29);
    r->key = NULL;
    r->key_len = 0;
    ck_assert_int_eq(spool_append(sp, r, true, &err), 0);
    r = mkrec(&m, "urgent", 30);
    r->key = NULL;
    r->key_len = 0;
    ck_assert_int_eq(spool_append(sp, r, true, &err), 0);
    ck_assert_uint_eq(claim_all(sp, "urgent", &b), 9);

    /* an uncommitted batch that superseded rows is rolled back whole at close */
    for (int i = 36; i <= 42; i++)
        append(sp, "urgent", i, false);
    spool_close(sp);
    sp = open_rw();
    ck_assert_int_eq(spool_set_policy(sp, &cfg), 0);
    ck_assert_uint_eq(claim_all(sp, "urgent", &b), 9);
    check_rec(&b.recs[0], "urgent", 22);
    append(sp, "urgent", 42, true);                        /* dev-0 again, after reopen */
    ck_assert_uint_eq(claim_all(sp, "urgent", &b), 9);
    check_rec(&b.recs[8], "urgent", 42);
    spool_batch_fini(&b);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_drop_oldest_evicts_lowest_priority_lane_first)
{
    struct spool *sp = open_rw();
    struct spool_batch b;
    struct config cfg;
    struct config_lane lanes[2];
    struct spool_stats st;
    struct err err = {0};
    uint64_t before = metrics_get(&metrics.dropped[DROP_SPOOL_FULL]);
    const int nu = 100, nb = 3000;
    size_t kept;

    policy(&cfg, lanes, 256 * 1024, WHEN_FULL_DROP_OLDEST, 0);
    ck_assert_int_eq(spool_set_policy(sp, &cfg), 0);
    for (int i = 0; i < nu; i++)
        append(sp, "urgent", i, true);
    for (int i = 0; i < nb; i++)
        append(sp, "bulk", i, i % 10 == 9);       /* batches too */
    ck_assert_int_eq(spool_commit(sp, &err), 0);
    spool_batch_init(&b);
    ck_assert_uint_eq(claim_all(sp, "urgent", &b), (size_t)nu);
    kept = claim_all(sp, "bulk", &b);
    ck_assert_uint_gt(kept, 100);
    ck_assert_uint_lt(kept, (size_t)nb);
    for (size_t i = 0; i < kept; i++)               /* the newest, in order */
        check_rec(&b.recs[i], "bulk", nb - (int)kept + (int)i);
    ck_assert_uint_eq(metrics_get(&metrics.dropped[DROP_SPOOL_FULL]) - before,
                      (uint64_t)nb - kept);
    ck_assert_int_eq(spool_stats(sp, &st, &err), 0);
    spool_stats_fini(&st);
    spool_batch_fini(&b);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_backpressure_refuses_then_takes_after_delete)
{
    struct spool *sp = open_rw();
    struct spool_batch b;
    struct config cfg;
    struct config_lane lanes[2];
    struct err err = {0};
    struct mkrec m;
    uint64_t seqs[200];
    int rc = 0, i;

    policy(&cfg, lanes, 128 * 1024, WHEN_FULL_BACKPRESSURE, 0);
    ck_assert_int_eq(spool_set_policy(sp, &cfg), 0);
    for (i = 0; i < 5000; i++)
        if ((rc = spool_append(sp, mkrec(&m, "bulk", i), true, &err)) < 0)
            break;
    ck_assert_int_eq(rc, -ENOSPC);
    ck_assert_msg(strstr(err.msg, "backpressure") != NULL, "%s", err.msg);
    ck_assert_uint_eq(count_rows(sp, "bulk"), (uint64_t)i);    /* nothing dropped */
    spool_batch_init(&b);
    spool_batch_reset(&b);
    ck_assert_int_eq(spool_claim(sp, "bulk", 0, 200, &b, &err), 0);
    for (size_t k = 0; k < b.n; k++)
        seqs[k] = b.recs[k].seq;
    ck_assert_int_eq(spool_delete(sp, seqs, b.n, &err), 0);     /* the forwarder drains */
    append(sp, "bulk", i, true);
    spool_batch_fini(&b);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_dead_letter_log_is_listed_and_bounded)
{
    struct spool *sp = open_rw();
    struct err err = {0};
    struct mkrec m;
    struct spool_dead d = { .at_ms = 1, .size = 7 };
    struct record *r = mkrec(&m, "dl", 1);
    char hdrs[128];
    size_t n = 0;
    struct buf hb;

    buf_init(&hb);
    ck_assert_int_eq(record_hdrs_add(&hb, "error", 5, "bad json", 8), 0);
    ck_assert_int_eq(record_hdrs_add(&hb, "error.stage", 11, "decode", 6), 0);
    ck_assert_uint_lt(hb.len, sizeof(hdrs));
    memcpy(hdrs, hb.data, hb.len);
    r->hdrs = hdrs;
    r->hdrs_len = hb.len;
    r->dead_letter = true;
    ck_assert_int_eq(spool_append(sp, r, true, &err), 0);
    snprintf(d.stage, sizeof(d.stage), "kafka");
    snprintf(d.error, sizeof(d.error), "MSG_SIZE_TOO_LARGE");
    snprintf(d.kafka_topic, sizeof(d.kafka_topic), "t");
    for (int i = 0; i < SPOOL_DEAD_KEEP + 5; i++)
        ck_assert_int_eq(spool_dead_note(sp, &d, &err), 0);
    ck_assert_int_eq(spool_dead_letters(sp, count_dead, &n, &err), 0);
    ck_assert_uint_eq(n, SPOOL_DEAD_KEEP);          /* the decode one was trimmed */
    buf_fini(&hb);
    spool_close(sp);
}
END_TEST


/* ---- the intake journal ---------------------------------------------------- */

static struct spool *
open_journal(void)
{
    struct spool_conf conf = { .path = dbpath, .durability = DURABILITY_PROCESS,
                               .journal = true };
    struct spool *sp = NULL;
    struct err err = {0};
    int rc = spool_open(&sp, &conf, &err);

    ck_assert_msg(rc == 0, "spool_open %s (journal): %d %s", dbpath, rc, err.msg);
    return sp;
}

/* A journaled append: durable in the journal (commit) or only buffered. Its
 * sequence is given at the append (the live path produces with it). */
static uint64_t
jappend(struct spool *sp, const char *lane, int i, bool commit)
{
    uint64_t seq = append_any(sp, lane, i, commit);

    ck_assert_uint_gt(seq, 0);
    return seq;
}

/* The rows of lane are exactly mkrec(lane, first .. first + n - 1), in order. */
static void
expect_rows(struct spool *sp, const char *lane, int first, size_t n)
{
    struct spool_batch b;

    spool_batch_init(&b);
    ck_assert_uint_eq(claim_all(sp, lane, &b), n);
    for (size_t k = 0; k < n; k++) {
        check_rec(&b.recs[k], lane, first + (int)k);
        if (k > 0)
            ck_assert_uint_gt(b.recs[k].seq, b.recs[k - 1].seq);
    }
    spool_batch_fini(&b);
}

/* The child's handle, never closed (that is the crash), stays reachable here so
 * valgrind does not call it a leak. */
static struct spool *volatile child_sp;   /* volatile: the store must happen */

static void
run_child(void (*fn)(void))
{
    pid_t pid = fork();
    int status;

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        fn();
        _exit(0);          /* a crash: no close, no commit */
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void
child_acks_ten(void)
{
    struct spool *c = child_sp = open_journal();
    for (int i = 0; i < 10; i++)
        jappend(c, "bulk", i, true);
    jappend(c, "bulk", 10, false);      /* QoS 0: buffered only, not promised */
}

START_TEST(test_spool_journal_acked_rows_survive_a_crash)
{
    struct spool *sp;

    run_child(child_acks_ten);
    sp = open_journal();            /* the replay */
    ck_assert_uint_eq(spool_pending(sp), 0);
    expect_rows(sp, "bulk", 0, 10);
    spool_close(sp);
    sp = open_journal();            /* not twice */
    expect_rows(sp, "bulk", 0, 10);
    spool_close(sp);
    sp = open_rw();                 /* and a plain handle sees the same rows */
    expect_rows(sp, "bulk", 0, 10);
    spool_close(sp);
}
END_TEST

static void
child_commits_then_acks_more(void)
{
    struct spool *c = child_sp = open_journal();
    struct err err = {0};
    for (int i = 0; i < 6; i++)
        jappend(c, "bulk", i, true);
    ck_assert_int_eq(spool_commit(c, &err), 0);
    ck_assert_uint_eq(count_rows(c, "bulk"), 6);
    /* The next generation overwrites the first frames; the older ones stay behind
     * them in the file and must not come back. */
    jappend(c, "bulk", 6, true);
    jappend(c, "bulk", 7, true);
}

START_TEST(test_spool_journal_replays_only_what_was_not_committed)
{
    struct spool *sp;
    struct stat st;
    char jpath[400];

    run_child(child_commits_then_acks_more);
    snprintf(jpath, sizeof(jpath), "%s-intake", dbpath);
    ck_assert_int_eq(stat(jpath, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    sp = open_journal();
    expect_rows(sp, "bulk", 0, 8);
    spool_close(sp);
}
END_TEST

static void
child_acks_four(void)
{
    struct spool *c = child_sp = open_journal();
    for (int i = 0; i < 4; i++)
        jappend(c, "bulk", i, true);
}

START_TEST(test_spool_journal_torn_tail_is_not_replayed)
{
    struct spool *sp;
    char jpath[400], *data;
    size_t len;

    run_child(child_acks_four);
    snprintf(jpath, sizeof(jpath), "%s-intake", dbpath);
    slurp(jpath, &data, &len);
    spit(jpath, data, len - 5);         /* the last frame's write was cut short */
    free(data);
    sp = open_journal();
    expect_rows(sp, "bulk", 0, 3);
    spool_close(sp);
}
END_TEST

/* A journal whose database was removed belongs to the old spool: not replayed into
 * the new one. */
START_TEST(test_spool_journal_without_its_database_is_dropped)
{
    struct spool *sp;
    char p[400];

    run_child(child_acks_four);
    ck_assert_int_eq(unlink(dbpath), 0);
    snprintf(p, sizeof(p), "%s-wal", dbpath);
    (void)unlink(p);
    snprintf(p, sizeof(p), "%s-shm", dbpath);
    (void)unlink(p);
    sp = open_journal();
    ck_assert_uint_eq(count_rows(sp, "bulk"), 0);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_journal_clean_close_commits_everything)
{
    struct spool *sp = open_journal();

    for (int i = 0; i < 5; i++)
        jappend(sp, "bulk", i, i % 2 == 0);    /* QoS 1 and QoS 0 mixed */
    ck_assert_uint_eq(spool_pending(sp), 5);
    ck_assert_int_gt(spool_pending_since_ms(sp), 0);
    ck_assert_uint_eq(count_rows(sp, "bulk"), 0);   /* not in the database yet */
    spool_close(sp);
    sp = open_rw();
    expect_rows(sp, "bulk", 0, 5);
    spool_close(sp);
}
END_TEST

/* Frames: every field round-trips, a NULL key stays NULL, and a scan stops where the
 * generation changes or a byte is damaged. */
/* ---- the live path (live.h): what the journal merge skips ------------------- */

static struct spool *
open_journal_live(struct live *lv)
{
    struct spool_conf conf = { .path = dbpath, .durability = DURABILITY_PROCESS,
                               .journal = true, .live = lv };
    struct spool *sp = NULL;
    struct err err = {0};
    int rc = spool_open(&sp, &conf, &err);

    ck_assert_msg(rc == 0, "spool_open %s (journal, live): %d %s", dbpath, rc, err.msg);
    return sp;
}

/* Records Kafka acknowledged before the merge never reach SQLite; the others do,
 * with the sequences the live path produced them with; a skipped sequence is never
 * handed out again, not even the newest one and not after a reopen. */
START_TEST(test_spool_live_merge_skips_acknowledged_records)
{
    static const int skip[] = { 0, 1, 2, 3, 4, 9 };
    struct live *lv;
    struct spool *sp;
    struct spool_batch b;
    struct err err = {0};
    struct buf q;
    uint64_t barrier, seqs[10];

    ck_assert_int_eq(live_create(&lv, 100, 1 << 20), 0);
    sp = open_journal_live(lv);
    live_try_on(lv, &barrier);
    ck_assert_uint_eq(barrier, 0);
    for (int i = 0; i < 10; i++) {
        seqs[i] = jappend(sp, "bulk", i, true);
        ck_assert(spool_offered(sp));
        if (i > 0)
            ck_assert_uint_gt(seqs[i], seqs[i - 1]);
    }
    buf_init(&q);
    ck_assert_uint_eq(live_take(lv, &q, 100), 10);   /* what the forwarder produces */
    buf_fini(&q);
    for (size_t k = 0; k < N(skip); k++)
        ck_assert(!live_ack(lv, seqs[skip[k]]));     /* Kafka has them: not merged yet */
    ck_assert_uint_eq(spool_pending(sp), 10);
    ck_assert_int_eq(spool_commit(sp, &err), 0);
    ck_assert_uint_eq(spool_pending(sp), 0);
    ck_assert_uint_eq(live_committed_upto(lv), seqs[9]);

    spool_batch_init(&b);
    ck_assert_uint_eq(claim_all(sp, "bulk", &b), 4);
    for (int k = 0; k < 4; k++) {
        check_rec(&b.recs[k], "bulk", 5 + k);
        ck_assert_uint_eq(b.recs[k].seq, seqs[5 + k]);
    }
    spool_batch_fini(&b);
    ck_assert(live_ack(lv, seqs[5]));                /* merged: its row is deleted */
    spool_close(sp);

    sp = open_rw();
    ck_assert_uint_gt(append(sp, "bulk", 10, true), seqs[9]);
    ck_assert_uint_eq(count_rows(sp, "bulk"), 5);
    spool_close(sp);
    live_destroy(lv);
}
END_TEST

/* A record that must go into the database with route state turns the live path
 * off, so the forwarder claims it (and what follows) from SQLite in order. */
START_TEST(test_spool_live_database_path_turns_it_off)
{
    struct live *lv;
    struct spool *sp;
    struct err err = {0};
    struct mkrec m;
    struct record *r;
    uint64_t barrier, seq;
    const struct spool_state_put put = { .route = "deadband/r", .key = "k", .key_len = 1,
                                         .value = "v", .value_len = 1 };

    ck_assert_int_eq(live_create(&lv, 100, 1 << 20), 0);
    sp = open_journal_live(lv);
    live_try_on(lv, &barrier);
    live_set_holding(lv, true);
    seq = jappend(sp, "bulk", 0, true);
    ck_assert(spool_holding(sp));
    r = mkrec(&m, "bulk", 1);
    ck_assert_int_eq(spool_append_with_state(sp, r, true, &put, 1, &err), 0);
    ck_assert(!spool_offered(sp));
    ck_assert_uint_gt(r->seq, seq);
    ck_assert(!live_is_on(lv));
    ck_assert(!spool_holding(sp));
    live_try_on(lv, &barrier);
    ck_assert_uint_eq(barrier, r->seq);    /* the claims must take it first */
    expect_rows(sp, "bulk", 0, 2);
    spool_close(sp);
    live_destroy(lv);
}
END_TEST

/* While the forwarder produces from the queue, the flusher's commit only writes the
 * journal file (the merge waits for acknowledgements); without the live path, or
 * with it off, it commits. */
START_TEST(test_spool_live_commit_or_hold)
{
    struct live *lv;
    struct spool *sp;
    struct err err = {0};
    uint64_t barrier;

    ck_assert_int_eq(live_create(&lv, 100, 1 << 20), 0);
    sp = open_journal_live(lv);
    jappend(sp, "bulk", 0, false);                  /* QoS 0: buffered, not in the file */
    ck_assert_int_eq(spool_commit_or_hold(sp, &err), 0);    /* not holding: merged */
    ck_assert_uint_eq(count_rows(sp, "bulk"), 1);
    live_try_on(lv, &barrier);
    live_set_holding(lv, true);
    jappend(sp, "bulk", 1, false);
    ck_assert_int_eq(spool_commit_or_hold(sp, &err), 1);    /* held: file only */
    ck_assert_uint_eq(count_rows(sp, "bulk"), 1);
    ck_assert_uint_eq(spool_pending(sp), 1);
    live_off(lv);
    ck_assert_int_eq(spool_commit_or_hold(sp, &err), 0);
    ck_assert_uint_eq(count_rows(sp, "bulk"), 2);
    spool_close(sp);
    live_destroy(lv);
}
END_TEST

/* Frames carry their sequences: a replay gives each record the one the live path
 * may have sent it to Kafka with (downstream de-duplicates on instance + seq). */
START_TEST(test_spool_journal_replay_keeps_sequences)
{
    struct spool *sp = open_rw();
    struct spool_batch b;
    struct mkrec m;
    struct buf f;
    char jpath[400];
    FILE *fp;

    append(sp, "bulk", 0, true);                    /* the database exists, seq 1 */
    spool_close(sp);
    buf_init(&f);
    for (int i = 1; i <= 3; i++) {
        struct record *r = mkrec(&m, "bulk", i);
        r->seq = 1000 + (uint64_t)i;
        ck_assert_int_eq(journal_frame_add(&f, 5, r), 0);
    }
    snprintf(jpath, sizeof(jpath), "%s-intake", dbpath);
    ck_assert_ptr_nonnull(fp = fopen(jpath, "w"));
    ck_assert_uint_eq(fwrite(f.data, 1, f.len, fp), f.len);
    fclose(fp);
    buf_fini(&f);

    sp = open_journal();
    spool_batch_init(&b);
    ck_assert_uint_eq(claim_all(sp, "bulk", &b), 4);
    for (int k = 0; k < 4; k++)
        check_rec(&b.recs[k], "bulk", k);
    ck_assert_uint_eq(b.recs[0].seq, 1);
    ck_assert_uint_eq(b.recs[1].seq, 1001);
    ck_assert_uint_eq(b.recs[3].seq, 1003);
    spool_batch_fini(&b);
    ck_assert_uint_eq(jappend(sp, "bulk", 4, true), 1004);   /* and on from there */
    spool_close(sp);
}
END_TEST

START_TEST(test_journal_frames_round_trip_and_scan)
{
    struct buf b;
    struct mkrec m1, m2;
    struct record *r1 = mkrec(&m1, "urgent", 1), *r2 = mkrec(&m2, "bulk", 2), got;
    uint64_t gen;
    size_t off = 0, end;

    r1->hdrs = "\x00\x01h\x00\x00\x00\x01v";
    r1->hdrs_len = 8;
    r1->retained = true;
    r1->qos = 2;
    r2->key = NULL;
    r2->key_len = 0;
    r2->dead_letter = true;
    buf_init(&b);
    ck_assert_int_eq(journal_frame_add(&b, 7, r1), 0);
    ck_assert_int_eq(journal_frame_add(&b, 7, r2), 0);
    size_t two = b.len;
    ck_assert_int_eq(journal_frame_add(&b, 8, r1), 0);

    ck_assert(journal_frame_next(b.data, b.len, &off, &gen, &got));
    ck_assert_uint_eq(gen, 7);
    ck_assert_str_eq(got.lane, "urgent");
    ck_assert_uint_eq(got.value_len, r1->value_len);
    ck_assert_mem_eq(got.value, r1->value, r1->value_len);
    ck_assert_uint_eq(got.key_len, r1->key_len);
    ck_assert_mem_eq(got.key, r1->key, r1->key_len);
    ck_assert_uint_eq(got.hdrs_len, 8);
    ck_assert_mem_eq(got.hdrs, r1->hdrs, 8);
    ck_assert(got.retained && !got.dead_letter);
    ck_assert_uint_eq(got.qos, 2);
    ck_assert_int_eq(got.event_ms, r1->event_ms);
    ck_assert_int_eq(got.ingest_ms, r1->ingest_ms);
    ck_assert_uint_eq(got.route, r1->route);
    ck_assert(journal_frame_next(b.data, b.len, &off, &gen, &got));
    ck_assert_ptr_null(got.key);
    ck_assert(got.dead_letter && !got.retained);
    ck_assert_uint_eq(got.seq, 0);              /* none stored */
    ck_assert_uint_eq(off, two);

    ck_assert_uint_eq(journal_scan(b.data, b.len, &gen, &end), 2);   /* gen 8 ends it */
    ck_assert_uint_eq(gen, 7);
    ck_assert_uint_eq(end, two);
    b.data[two - 3] ^= 0x20;                                        /* damage frame 2 */
    ck_assert_uint_eq(journal_scan(b.data, b.len, &gen, &end), 1);
    ck_assert_uint_eq(journal_scan(b.data, 10, &gen, &end), 0);      /* torn header */
    ck_assert_uint_eq(gen, 0);
    ck_assert_uint_eq(end, 0);

    /* A frame written with a sequence carries it, 8 bytes longer. */
    buf_reset(&b);
    ck_assert_int_eq(journal_frame_add(&b, 9, r1), 0);
    size_t plain = b.len;
    r1->seq = 0x0123456789abULL;
    ck_assert_int_eq(journal_frame_add(&b, 9, r1), 0);
    ck_assert_uint_eq(b.len - plain, plain + 8);
    off = plain;
    ck_assert(journal_frame_next(b.data, b.len, &off, &gen, &got));
    ck_assert_uint_eq(got.seq, 0x0123456789abULL);
    ck_assert_mem_eq(got.value, r1->value, r1->value_len);
    ck_assert_uint_eq(off, b.len);
    buf_fini(&b);
}
END_TEST

#ifdef SLUICE_FAULT_SEAMS
START_TEST(test_spool_commit_fault_returns_eio_then_recovers)
{
    struct spool *sp = open_rw();
    struct err err = {0};
    struct mkrec m;
    struct record *r;

    append(sp, "bulk", 0, true);
    spool_fault_fail_commit(sp, 1);
    r = mkrec(&m, "bulk", 1);
    ck_assert_int_eq(spool_append(sp, r, true, &err), -EIO);
    ck_assert_uint_eq(r->seq, 0);
    ck_assert_msg(strstr(err.msg, "injected commit fault") != NULL, "%s", err.msg);
    ck_assert_uint_eq(count_rows(sp, "bulk"), 1);
    append(sp, "bulk", 2, true);
    ck_assert_uint_eq(count_rows(sp, "bulk"), 2);

    /* A batch: the whole batch goes, and the sentence counts it. */
    for (int i = 3; i < 6; i++)
        append(sp, "bulk", i, false);
    spool_fault_fail_commit(sp, 1);
    ck_assert_int_eq(spool_commit(sp, &err), -EIO);
    ck_assert_msg(strstr(err.msg, "(3 rows of the open batch rolled back)") != NULL, "%s",
                  err.msg);
    ck_assert_uint_eq(spool_pending(sp), 0);
    ck_assert_uint_eq(count_rows(sp, "bulk"), 2);

    /* A new lane added inside a failed batch is forgotten with it. */
    spool_fault_fail_all(sp, true);
    append(sp, "fresh", 6, false);
    ck_assert_int_eq(spool_append(sp, mkrec(&m, "fresh", 7), true, &err), -EIO);
    ck_assert_msg(strstr(err.msg, "(2 rows of the open batch rolled back)") != NULL, "%s",
                  err.msg);
    spool_fault_fail_all(sp, false);
    append(sp, "fresh", 8, true);
    ck_assert_uint_eq(count_rows(sp, "fresh"), 1);
    spool_close(sp);

    sp = open_rw();
    ck_assert_uint_eq(count_rows(sp, "bulk"), 2);
    ck_assert_uint_eq(count_rows(sp, "fresh"), 1);
    spool_close(sp);
}
END_TEST

/* A failed commit of the journal loses nothing: the frames wait, and the next
 * commit takes them. */
START_TEST(test_spool_journal_failed_commit_keeps_rows)
{
    struct spool *sp = open_journal();
    struct err err = {0};

    for (int i = 0; i < 3; i++)
        jappend(sp, "bulk", i, true);
    spool_fault_fail_commit(sp, 1);
    ck_assert_int_eq(spool_commit(sp, &err), -EIO);
    ck_assert_msg(strstr(err.msg, "rolled back") == NULL, "%s", err.msg);
    ck_assert_uint_eq(spool_pending(sp), 3);
    ck_assert_uint_eq(count_rows(sp, "bulk"), 0);
    jappend(sp, "bulk", 3, true);
    ck_assert_int_eq(spool_commit(sp, &err), 0);
    ck_assert_uint_eq(spool_pending(sp), 0);
    expect_rows(sp, "bulk", 0, 4);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_full_disk_enospc_then_recovers)
{
    struct spool *sp = open_rw();
    struct err err = {0};
    struct mkrec m;
    int rc = 0, i;

    append(sp, "bulk", 0, true);
    ck_assert_int_eq(spool_fault_max_pages(sp, spool_fault_page_count(sp) + 4), 0);
    for (i = 1; i < 1000; i++) {
        if ((rc = spool_append(sp, mkrec(&m, "bulk", i), true, &err)) < 0)
            break;
    }
    ck_assert_int_eq(rc, -ENOSPC);
    ck_assert_msg(strstr(err.msg, "full") != NULL, "%s", err.msg);
    ck_assert_uint_eq(count_rows(sp, "bulk"), (uint64_t)i);
    /* Same in a batch: the error names the rows lost. */
    for (int j = 0; j < 3; j++)
        spool_append(sp, mkrec(&m, "bulk", 2000 + j), false, &err);
    rc = spool_commit(sp, &err);
    if (rc == 0)                                   /* the first append already failed */
        ck_assert_uint_eq(spool_pending(sp), 0);
    ck_assert_uint_eq(count_rows(sp, "bulk"), (uint64_t)i);
    ck_assert_int_eq(spool_fault_max_pages(sp, 0), 0);
    append(sp, "bulk", i, true);
    ck_assert_uint_eq(count_rows(sp, "bulk"), (uint64_t)i + 1);
    spool_close(sp);
}
END_TEST
#endif

START_TEST(test_spool_sync_tick_checkpoints_into_the_file)
{
    struct spool *sp = open_rw();
    struct stat before, after;

    for (int i = 0; i < 300; i++)
        append(sp, "bulk", i, true);
    ck_assert_int_eq(stat(dbpath, &before), 0);
    ck_assert_int_eq(spool_sync_wal(sp), 0);
    ck_assert_int_eq(stat(dbpath, &after), 0);
    ck_assert_int_gt(after.st_size, before.st_size);     /* the rows left the WAL */
    append(sp, "bulk", 300, true);                       /* and the WAL restarts */
    ck_assert_int_eq(spool_sync_wal(sp), 0);
    ck_assert_uint_eq(count_rows(sp, "bulk"), 301);
    spool_close(sp);
}
END_TEST

/* Under `durability: power` (no tick) each commit that takes the WAL past
 * SPOOL_CKPT_PAGES frames checkpoints it, and the WAL restarts: a new spool (4 KiB
 * pages) keeps its WAL under 16 MiB plus a commit, however much is written. */
START_TEST(test_spool_power_wal_stays_bounded)
{
    struct spool *sp = open_at(dbpath, DURABILITY_POWER, false);
    char wal[340];
    struct stat st;
    off_t most = 0;
    struct err err = {0};

    snprintf(wal, sizeof(wal), "%s-wal", dbpath);
    for (int i = 0; i < 120000; i++) {
        append(sp, "bulk", i, false);
        if (i % 500 == 499) {
            ck_assert_int_eq(spool_commit(sp, &err), 0);
            ck_assert_int_eq(stat(wal, &st), 0);
            most = st.st_size > most ? st.st_size : most;
        }
    }
    ck_assert_uint_eq(count_rows(sp, "bulk"), 120000);
    ck_assert_msg(most > 0 && most < 18 * 1024 * 1024, "WAL reached %lld bytes",
                  (long long)most);
    spool_close(sp);
}
END_TEST

START_TEST(test_spool_power_durability_and_sync)
{
    struct spool *sp = open_at(dbpath, DURABILITY_POWER, false);

    append(sp, "bulk", 0, true);
    ck_assert_int_eq(spool_sync_wal(sp), 0);
    spool_close(sp);
    sp = open_rw();
    ck_assert_uint_eq(count_rows(sp, "bulk"), 1);
    ck_assert_int_eq(spool_sync_wal(sp), 0);
    spool_close(sp);
    spool_close(NULL);
}
END_TEST

static Suite *
spool_suite(void)
{
    Suite *s = suite_create("spool");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_spool_append_claim_delete_in_order);
    tcase_add_test(tc, test_spool_lanes_are_separate);
    tcase_add_test(tc, test_spool_seq_never_reused_after_delete_and_reopen);
    tcase_add_test(tc, test_spool_batch_commits_together);
    tcase_add_test(tc, test_spool_close_rolls_back_open_batch);
    tcase_add_test(tc, test_spool_reopen_keeps_rows);
    tcase_add_test(tc, test_spool_claim_arena_growth_keeps_pointers);
    tcase_add_test(tc, test_spool_null_key_headers_and_flags_round_trip);
    tcase_add_test(tc, test_spool_file_modes_ignore_umask);
    tcase_add_loop_test(tc, test_spool_damaged_file_refused_and_untouched, 0, N(damaged));
    tcase_add_test(tc, test_spool_deleted_wal_loses_uncheckpointed_rows_but_opens);
    tcase_add_test(tc, test_spool_crash_keeps_committed_rows);
    tcase_add_test(tc, test_spool_readonly_stats_while_another_handle_writes);
    tcase_add_test(tc, test_spool_readonly_missing_file);
    tcase_add_test(tc, test_spool_ingest_and_forwarder_handles_interleave);
    tcase_add_test(tc, test_spool_max_age_evicts_only_old_rows_of_its_lane);
    tcase_add_test(tc, test_spool_drop_oldest_evicts_lowest_priority_lane_first);
    tcase_add_test(tc, test_spool_compact_latest_per_key);
    tcase_add_test(tc, test_spool_backpressure_refuses_then_takes_after_delete);
    tcase_add_test(tc, test_spool_dead_letter_log_is_listed_and_bounded);
#ifdef SLUICE_FAULT_SEAMS
    tcase_add_test(tc, test_spool_commit_fault_returns_eio_then_recovers);
    tcase_add_test(tc, test_spool_full_disk_enospc_then_recovers);
    tcase_add_test(tc, test_spool_power_wal_stays_bounded);
    tcase_add_test(tc, test_spool_journal_failed_commit_keeps_rows);
#endif
    tcase_add_test(tc, test_spool_journal_acked_rows_survive_a_crash);
    tcase_add_test(tc, test_spool_journal_replays_only_what_was_not_committed);
    tcase_add_test(tc, test_spool_journal_torn_tail_is_not_replayed);
    tcase_add_test(tc, test_spool_journal_clean_close_commits_everything);
    tcase_add_test(tc, test_spool_journal_without_its_database_is_dropped);
    tcase_add_test(tc, test_spool_live_merge_skips_acknowledged_records);
    tcase_add_test(tc, test_spool_live_database_path_turns_it_off);
    tcase_add_test(tc, test_spool_live_commit_or_hold);
    tcase_add_test(tc, test_spool_journal_replay_keeps_sequences);
    tcase_add_test(tc, test_journal_frames_round_trip_and_scan);
    tcase_add_test(tc, test_spool_sync_tick_checkpoints_into_the_file);
    tcase_add_test(tc, test_spool_power_durability_and_sync);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(spool_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
