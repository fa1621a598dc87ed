#!/usr/bin/env python3
"""Regenerates the damaged spool fixtures in this directory (golden files: commit
the output, do not regenerate casually). Each file is a spool that sluice must
refuse with -EBADMSG and leave byte-for-byte untouched; test_spool.c checks both.

  not_a_database.spool  text where a database should be ("file is not a database")
  truncated.spool       a valid spool cut to 60% of its pages (quick_check fails)
  future_version.spool  a valid spool with PRAGMA user_version = 999
  bitflip.spool         a valid spool with bits flipped in the header of one
                        b-tree leaf page of the records table (quick_check fails)

The schema below is spool.c's migration step 0 -> 1 (page size 1024, WAL mode), so
the damage is the only thing wrong with these files. Named *.spool because
.gitignore drops *.db."""
import os
import sqlite3
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = """
CREATE TABLE lanes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta (k, v) VALUES ('seq_floor', 0);
CREATE TABLE records (
  rid INTEGER PRIMARY KEY, topic TEXT NOT NULL, key BLOB, value BLOB NOT NULL,
  mqtt_topic TEXT NOT NULL, hdrs BLOB NOT NULL, event_ms INTEGER NOT NULL,
  ingest_ms INTEGER NOT NULL, route INTEGER NOT NULL, qos INTEGER NOT NULL,
  retained INTEGER NOT NULL, dead_letter INTEGER NOT NULL, size INTEGER NOT NULL);
"""
PAGE = 1024


def make_spool(path, user_version=1, rows=300):
    if os.path.exists(path):
        os.unlink(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA page_size = %d" % PAGE)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("BEGIN")
    for stmt in SCHEMA.split(";"):
        if stmt.strip():
            db.execute(stmt)
    db.execute("INSERT INTO lanes (name) VALUES ('bulk')")
    for i in range(1, rows + 1):
        value = (b'{"ts":%d,"v":' % (1700000000000 + i)) + b"7" * 170 + b"}"
        db.execute("INSERT INTO records VALUES (?,'telemetry.berlin',?,?,?,x'',?,?,0,1,0,0,?)",
                   ((1 << 48) | i, b"dev-%d" % (i % 17), value, "factory/berlin/l1/dev-%d/telemetry" % (i % 17),
                    1700000000000 + i, 1700000000000 + i, len(value) + 40))
    db.execute("PRAGMA user_version = %d" % user_version)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)


def main():
    with open(os.path.join(HERE, "not_a_database.spool"), "wb") as f:
        f.write(b"sluice spool? no: this is a text file where a database should be.\n" * 64)

    make_spool(os.path.join(HERE, "future_version.spool"), user_version=999)

    path = os.path.join(HERE, "truncated.spool")
    make_spool(path)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate((size // PAGE) * 6 // 10 * PAGE)

    path = os.path.join(HERE, "bitflip.spool")
    make_spool(path)
    data = bytearray(open(path, "rb").read())
    leaves = [p for p in range(1, len(data) // PAGE) if data[p * PAGE] == 0x0D]
    victim = leaves[len(leaves) // 2]
    off = victim * PAGE
    data[off] ^= 0x40          # page type 0x0d (table leaf) -> 0x4d (invalid)
    data[off + 4] ^= 0x11      # and the cell count
    open(path, "wb").write(bytes(data))
    print("bitflip: page %d of %d" % (victim + 1, len(data) // PAGE), file=sys.stderr)


if __name__ == "__main__":
    main()
