"""Damaged spools at `sluice run` (tests/data/spool/make_fixtures.py made the golden
files): with spool.on_corrupt fail (the default) each exits 74 naming the path and the
reason and leaves the file byte-for-byte as it was; with quarantine the file (and its
WAL) is renamed to <path>.corrupt-<UTC time> unchanged, the loss is logged, and the
bridge starts on an empty spool and forwards. A deleted -wal is not damage: SQLite
opens the main file as it was at the last checkpoint, and the rows committed only to
the lost WAL are gone (SQLite's behaviour, documented in README "Guarantees")."""
import glob
import hashlib
import os
import shutil
import sqlite3
import subprocess

import harness as h

SOURCE = os.environ.get("SLUICE_SOURCE", ".")
FIXTURES = os.path.join(SOURCE, "tests", "data", "spool")
CASES = {
    # fixture: a word the reason must contain
    "not_a_database.spool": "not a sluice spool",
    "truncated.spool": "damaged",
    "bitflip.spool": "damaged",
    "future_version.spool": "newer",
}
EX_IOERR = 74


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def place(wd, name, fixture):
    spool = wd.file(f"{name}-spool/spool.db")
    os.makedirs(os.path.dirname(spool), exist_ok=True)
    shutil.copyfile(os.path.join(FIXTURES, fixture), spool)
    return spool


def run_to_exit(cfg, deadline=30):
    p = subprocess.run([h.SLUICE, "run", "-c", cfg], capture_output=True, text=True,
                       timeout=deadline)
    return p.returncode, p.stdout + p.stderr


def check_fail(wd, mosq, kafka):
    for i, (fixture, reason) in enumerate(sorted(CASES.items())):
        name = f"fail{i}"
        spool = place(wd, name, fixture)
        before = digest(spool)
        cfg = h.sluice_config(wd, name, mosq.url, kafka.bootstrap)
        rc, out = run_to_exit(cfg)
        h.log(f"{fixture}: exit {rc}: {out.strip().splitlines()[-1] if out.strip() else ''}")
        assert rc == EX_IOERR, f"{fixture}: exit {rc}, want 74:\n{out}"
        line = [ln for ln in out.splitlines() if spool in ln]
        assert line, f"{fixture}: no log line names {spool}:\n{out}"
        assert any(reason in ln for ln in line), f"{fixture}: reason '{reason}' missing:\n{out}"
        assert digest(spool) == before, f"{fixture}: the damaged file was changed"
        assert not os.path.exists(spool + "-wal") or os.path.getsize(spool + "-wal") == 0
        assert not glob.glob(spool + ".corrupt-*"), f"{fixture}: quarantined under fail"


def check_quarantine(wd, mosq):
    for i, fixture in enumerate(sorted(CASES)):
        name = f"quar{i}"
        kafka = h.MockKafka(wd)        # a fresh cluster: each case counts its own 200
        spool = place(wd, name, fixture)
        before, size = digest(spool), os.path.getsize(spool)
        cfg = h.sluice_config(wd, name, mosq.url, kafka.bootstrap,
                              spool_extra="  on_corrupt: quarantine\n")
        sl = h.Sluice(wd, cfg, name=name).start()
        aside = [a for a in glob.glob(spool + ".corrupt-*")
                 if not a.endswith(("-wal", "-shm"))]
        assert len(aside) == 1, f"{fixture}: aside files {aside}"
        assert digest(aside[0]) == before, f"{fixture}: the quarantined file was changed"
        text = sl.log_since_start()
        assert f"quarantined {spool} as {aside[0]}" in text, text
        assert f"{size} bytes" in text, text
        if fixture == "future_version.spool":
            assert "lost 300 record(s)" in text, text     # readable: counted
        if fixture == "not_a_database.spool":
            assert "count unknown" in text, text
        h.log(f"{fixture}: " + [ln for ln in text.splitlines() if "quarantined" in ln][0])
        # The fresh spool forwards.
        check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=200, timeout=60)
        h.loadgen(mosq.url, 200, devices=10, qos=1)
        res = check.result()
        assert sl.stop() == 0
        kafka.stop()
        assert res["lost"] == 0 and res["distinct"] == 200, res
        assert res["reordered"] == 0, res


def check_deleted_wal(wd, mosq, kafka):
    """Rows committed to the WAL only are lost with it; the file still opens."""
    name = "nowal"
    spool = wd.file(f"{name}-spool/spool.db")
    os.makedirs(os.path.dirname(spool), exist_ok=True)
    shutil.copyfile(os.path.join(FIXTURES, "future_version.spool"), spool)
    db = sqlite3.connect(spool, isolation_level=None)
    db.execute("PRAGMA user_version = 1")             # a sound version-1 spool
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")     # 300 rows in the main file
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute("BEGIN")
    for i in range(301, 351):                         # 50 rows only in the WAL
        value = b'{"ts":%d,"v":1}' % (1700000000000 + i)
        db.execute("INSERT INTO records VALUES (?,'telemetry.berlin',?,?,?,x'',?,?,0,1,0,0,?)",
                   ((1 << 48) | i, b"dev-%d" % (i % 17), value,
                    "factory/berlin/l1/dev-%d/telemetry" % (i % 17),
                    1700000000000 + i, 1700000000000 + i, len(value) + 40))
    db.execute("COMMIT")
    assert os.path.getsize(spool + "-wal") > 0
    # A copy of the main file without its WAL: what a lost -wal leaves behind.
    lost = wd.file(f"{name}-spool/copy.db")
    shutil.copyfile(spool, lost)
    db.close()
    os.unlink(spool)
    for sfx in ("-wal", "-shm"):
        if os.path.exists(spool + sfx):
            os.unlink(spool + sfx)
    os.rename(lost, spool)
    cfg = h.sluice_config(wd, name, mosq.url, "127.0.0.1:1")   # Kafka away: rows stay
    out = subprocess.run([h.SLUICE, "spool", "stats", "-c", cfg], capture_output=True,
                         text=True, timeout=30)
    h.log(f"stats after a lost WAL: {out.stdout.strip()}")
    assert out.returncode == 0, out
    # The 50 inserts lived only in the WAL: the main file holds the first 300.
    total = [ln.split() for ln in out.stdout.splitlines() if ln.startswith("total")]
    assert total and total[0][1] == "300", out.stdout
    sl = h.Sluice(wd, cfg, name=name).start()
    assert sl.stop() == 0


def test_damaged_spool(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    check_fail(wd, mosq, kafka)
    check_quarantine(wd, mosq)
    check_deleted_wal(wd, mosq, kafka)


if __name__ == "__main__":
    h.run(test_damaged_spool)
