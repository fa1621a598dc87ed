"""The disk fills up under the spool: no crash, no acknowledgement for what is not
committed, /readyz 503, and once space returns (and Kafka is back) every message
arrives: 0 lost.

The spool lives on a small tmpfs that a ballast file fills (a real ENOSPC from
write(2), on the WAL or the database). Where mount(2) is not allowed, the test falls
back to the fault seam SLUICE_FAULT_MAX_PAGES (fault_seams builds only): SQLite's
max_page_count, which fails the same way (SQLITE_FULL) without a file system."""
import os
import subprocess

import harness as h
import policy as p

TOTAL = 6000


def try_mount(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True, text=True)
    return r.returncode == 0


class Mount:
    def __init__(self, path):
        self.path = path

    def stop(self):
        subprocess.run(["umount", "-l", self.path], capture_output=True)


def test_disk_full(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd, partitions=4)
    kafka.cmd("down all")
    mnt = wd.file("disk")
    ballast = os.path.join(mnt, "ballast")
    if not os.environ.get("SLUICE_TEST_NO_MOUNT") and try_mount(mnt, "24m"):
        wd.own(Mount(mnt))
        mode = "tmpfs"
    else:
        os.environ["SLUICE_FAULT_MAX_PAGES"] = "600"
        mode = "max_page_count"
    cfg = h.sluice_config(wd, "full", mosq.url, kafka.bootstrap)
    with open(cfg) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text.replace(wd.file("full-spool/spool.db"), os.path.join(mnt, "spool.db")))
    sl = h.Sluice(wd, cfg).start()
    base = sl.http_url()
    if mode == "tmpfs":
        # Leave ~1.5 MiB: less than the WAL wants for the run.
        st = os.statvfs(mnt)
        with open(ballast, "wb") as f:
            f.write(b"\0" * (st.f_bavail * st.f_frsize - 1536 * 1024))
    os.environ.pop("SLUICE_FAULT_MAX_PAGES", None)
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=TOTAL, timeout=90)
    pub = h.loadgen(mosq.url, TOTAL, devices=100, qos=1, background=True, wd=wd)
    sl.wait_log(r"spool full: holding the message unacknowledged", 30)
    status, body = h.wait_for(lambda: (lambda r: r if r[0] == 503 else None)(p.readyz(base)),
                              10, "/readyz 503")
    h.log(f"disk full ({mode}): /readyz {status} {body.strip()}")
    assert pub.wait(timeout=60) == 0, "loadgen failed"
    appended = p.metric(base + "/metrics", "sluice_spool_appends_total")
    h.log(f"spooled before the disk filled: {appended:.0f} of {TOTAL}")
    assert appended < TOTAL
    assert sl.proc.poll() is None, "sluice died on a full disk"
    # Space returns, Kafka returns.
    if mode == "tmpfs":
        os.unlink(ballast)
    kafka.cmd("up all")
    res = check.result()
    h.wait_for(lambda: p.readyz(base)[0] == 200, 30, "/readyz 200 again")
    assert sl.stop() == 0
    assert res["lost"] == 0 and res["distinct"] == TOTAL, res
    h.log(f"disk full ({mode}): {TOTAL} delivered, 0 lost, {res['duplicates']} duplicates")


if __name__ == "__main__":
    h.run(test_disk_full)
