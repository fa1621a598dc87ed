/* bench_delete.c - what it costs SQLite to forget delivered rows (an experiment, not
 * a test). Usage: bench_delete DIR [rows] [run] [segment].
 *
 * The forwarder deletes acknowledged rows with rid range statements (spool_delete),
 * and in a drain that is about a third of its samples. This measures, in one run and
 * on rows shaped like the spool's (its records columns, a 200-byte value, 1 KiB
 * pages, WAL, synchronous=NORMAL, secure_delete=FAST, a 4 MiB cache):
 *   claim   reading the rows in rid order, 1,000 at a time (the claims: the baseline);
 *   range   claim, then delete them in runs of `run` rows, one transaction per 1,000
 *           (what a drain does today);
 *   clear   claim, then empty whole tables of `segment` rows with DELETE FROM and no
 *           WHERE, which SQLite runs as a b-tree clear, freeing pages without visiting
 *           cells (what a spool kept in segment tables could do once a segment is
 *           delivered).
 * It prints rows per CPU second for each, and the delete cost per row beyond the
 * claim, with range / clear as a ratio. */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define CLAIM_ROWS 1000

static double
cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void
must(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "bench_delete: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static void
exec(sqlite3 *db, const char *sql)
{
    must(db, sqlite3_exec(db, sql, NULL, NULL, NULL), sql);
}

/* A fresh database in dir with `tables` tables of rows/tables rows each. */
static sqlite3 *
build(const char *dir, long rows, long tables)
{
    char path[512], sql[512], value[200], key[16], mtopic[64];
    sqlite3 *db;

    snprintf(path, sizeof(path), "%s/bench_delete.db", dir);
    for (size_t i = 0; i < 3; i++) {
        static const char *const ext[] = { "", "-wal", "-shm" };
        char p[600];
        snprintf(p, sizeof(p), "%s%s", path, ext[i]);
        remove(p);
    }
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "bench_delete: cannot open %s\n", path);
        exit(1);
    }
    exec(db, "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
             " PRAGMA secure_delete = FAST; PRAGMA cache_size = -4096");
    memset(value, 'x', sizeof(value));
    for (long t = 0; t < tables; t++) {
        sqlite3_stmt *ins;

        snprintf(sql, sizeof(sql),
                 "CREATE TABLE r%ld (rid INTEGER PRIMARY KEY, topic TEXT, key BLOB,"
                 " value BLOB, mqtt_topic TEXT, hdrs BLOB, event_ms INTEGER,"
                 " ingest_ms INTEGER, route INTEGER, qos INTEGER, retained INTEGER,"
                 " dead_letter INTEGER, size INTEGER)", t);
        exec(db, sql);
        snprintf(sql, sizeof(sql), "INSERT INTO r%ld VALUES (?1, 'telemetry.factory', ?2, ?3,"
                 " ?4, x'00', 1796659542644, 1796659542645, 0, 1, 0, 0, 300)", t);
        must(db, sqlite3_prepare_v2(db, sql, -1, &ins, NULL), sql);
        exec(db, "BEGIN");
        for (long i = 1; i <= rows / tables; i++) {
            long seq = t * (rows / tables) + i;
            snprintf(key, sizeof(key), "dev-%03ld", seq % 100);
            snprintf(mtopic, sizeof(mtopic), "factory/l1/dev-%03ld/telemetry", seq % 100);
            sqlite3_bind_int64(ins, 1, (sqlite3_int64)1 << 48 | seq);
            sqlite3_bind_blob(ins, 2, key, (int)strlen(key), SQLITE_STATIC);
            sqlite3_bind_blob(ins, 3, value, sizeof(value), SQLITE_STATIC);
            sqlite3_bind_text(ins, 4, mtopic, -1, SQLITE_STATIC);
            must(db, sqlite3_step(ins), "insert");
            sqlite3_reset(ins);
        }
        exec(db, "COMMIT");
        sqlite3_finalize(ins);
    }
    must(db, sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL),
         "checkpoint");
    return db;
}

/* Reads table t's rows in rid order, CLAIM_ROWS at a time, and after each claim
 * deletes them in runs of `run` rows (run > 0), as the forwarder does. */
static void
claim_table(sqlite3 *db, long t, long run)
{
    char sql[256];
    sqlite3_stmt *claim, *del = NULL;
    sqlite3_int64 after = (sqlite3_int64)1 << 48;
    int got;

    snprintf(sql, sizeof(sql), "SELECT rid, topic, key, value, mqtt_topic, hdrs FROM r%ld"
             " WHERE rid > ?1 ORDER BY rid LIMIT %d", t, CLAIM_ROWS);
    must(db, sqlite3_prepare_v2(db, sql, -1, &claim, NULL), sql);
    if (run > 0) {
        snprintf(sql, sizeof(sql), "DELETE FROM r%ld WHERE rid BETWEEN ?1 AND ?2", t);
        must(db, sqlite3_prepare_v2(db, sql, -1, &del, NULL), sql);
    }
    do {
        sqlite3_int64 first = after + 1;
        got = 0;
        sqlite3_bind_int64(claim, 1, after);
        while (sqlite3_step(claim) == SQLITE_ROW) {
            after = sqlite3_column_int64(claim, 0);
            (void)sqlite3_column_blob(claim, 3);
            got++;
        }
        sqlite3_reset(claim);
        if (del == NULL || got == 0)
            continue;
        exec(db, "BEGIN");
        for (sqlite3_int64 lo = first; lo <= after; lo += run) {
            sqlite3_bind_int64(del, 1, lo);
            sqlite3_bind_int64(del, 2, lo + run - 1 < after ? lo + run - 1 : after);
            must(db, sqlite3_step(del), "delete");
            sqlite3_reset(del);
        }
        exec(db, "COMMIT");
    } while (got == CLAIM_ROWS);
    sqlite3_finalize(claim);
    sqlite3_finalize(del);
}

int
main(int argc, char **argv)
{
    long rows = argc > 2 ? atol(argv[2]) : 200000, run = argc > 3 ? atol(argv[3]) : 19,
         seg = argc > 4 ? atol(argv[4]) : 10000, tables;
    double t0, claim, range, clear;
    sqlite3 *db;
    char sql[64];

    if (argc < 2 || rows <= 0 || run <= 0 || seg <= 0 || rows % seg != 0) {
        fprintf(stderr, "usage: bench_delete DIR [rows] [run] [segment] (segment divides rows)\n");
        return 2;
    }
    tables = rows / seg;

    db = build(argv[1], rows, 1);
    t0 = cpu_s();
    claim_table(db, 0, 0);
    claim = cpu_s() - t0;
    sqlite3_close(db);

    db = build(argv[1], rows, 1);
    t0 = cpu_s();
    claim_table(db, 0, run);
    range = cpu_s() - t0;
    sqlite3_close(db);

    db = build(argv[1], rows, tables);
    t0 = cpu_s();
    for (long t = 0; t < tables; t++) {
        claim_table(db, t, 0);
        snprintf(sql, sizeof(sql), "DELETE FROM r%ld", t);
        exec(db, sql);
    }
    clear = cpu_s() - t0;
    sqlite3_close(db);

    printf("%ld rows, 200-byte values, 1 KiB pages, runs of %ld, segments of %ld\n",
           rows, run, seg);
    printf("claim only          %9.0f rows/CPU s\n", rows / claim);
    printf("claim + range       %9.0f rows/CPU s  delete %.2f us/row\n", rows / range,
           (range - claim) * 1e6 / rows);
    printf("claim + clear       %9.0f rows/CPU s  delete %.2f us/row\n", rows / clear,
           (clear - claim) * 1e6 / rows);
    printf("delete cost range / clear: %.1fx\n", (range - claim) / (clear - claim));
    return 0;
}
