"""Wall-clock steps under sluice (libfaketime, Debian package faketime): -1 h, then
+1 day (from the real clock), while messages flow and, around each step, with Kafka down so the spool holds
records stamped on both sides of the step. Asserts: nothing lost, no reordering per
key, and `sluice spool stats` (run both on the real clock and on sluice's faked one)
and /metrics never show a negative age.

How: LD_PRELOAD=libfaketimeMT.so.1 with FAKETIME_TIMESTAMP_FILE (one line, a relative
offset such as "-1h"), FAKETIME_NO_CACHE=1 so a rewrite takes effect at the next
clock read, and FAKETIME_DONT_FAKE_MONOTONIC=1: sluice's intervals (backoff, batch
linger, retention tick) run on CLOCK_MONOTONIC, which a real clock step does not move
either. Only CLOCK_REALTIME (ingest.time, spool ingest_ms, the log) jumps.
FAKETIME_FORCE_MONOTONIC_FIX=0 as well: libfaketime 0.9.10 (bookworm) otherwise shifts
the deadline of every timed wait on a CLOCK_MONOTONIC condition variable by the fake
offset although the monotonic clock is not faked (upstream fixed it in 2025, PR #503),
so under a +1 day offset those waits in sluice and Paho would time out at once and
spin. With the fix disabled the deadline is passed through untouched, which is right
on glibc 2.36, whose pthread_cond_timedwait does not call the interposed clock.
And the project's libsluice-faketime-c11.so preloaded first: libfaketime translates the
deadlines of pthread_cond_timedwait but not of C11 cnd_timedwait, which librdkafka
uses with deadlines from the faked timespec_get (tools/faketime_c11.c). The route
takes event time from the payload, stamped by loadgen on the real clock.

Under ASan (make asan) ASAN_OPTIONS gets allocator_release_to_os_interval_ms=-1:
otherwise the first allocation of each size class reads CLOCK_MONOTONIC while holding
that class's allocator lock. Before libfaketime's constructor has run (a constructor
of a library such as libgpg-error mallocs earlier), that read lands in libfaketime's
clock_gettime, whose lazy init calls dlsym, which mallocs the same size class: a
deadlock before main. With the interval disabled the allocator reads no clock (it then
never returns freed pages to the kernel early; detection is unchanged). Programs
without ASan ignore the variable."""
import os
import re
import subprocess
import time
import urllib.request

import harness as h

LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
TOTAL = 15000
RATE = 1000
# The step forward after -1 h: to one day ahead of the real clock (+1 day + 1 h).
FORWARD_STEP = os.environ.get("SLUICE_CLOCK_FORWARD_STEP", "+1d")


def faked_env(offset_file):
    env = dict(os.environ)
    env.update(LD_PRELOAD=f"{h.tool('libsluice-faketime-c11.so')} {LIB}", FAKETIME_TIMESTAMP_FILE=offset_file, FAKETIME_NO_CACHE="1",
               FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_FORCE_MONOTONIC_FIX="0")
    env.pop("FAKETIME", None)      # the variable would win over the file
    # ASan only (see above); appended so that it wins over an earlier setting.
    asan = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "allocator_release_to_os_interval_ms=-1"
    return env


def ages(out):
    """oldest_age_seconds of every lane line of `sluice spool stats`."""
    vals = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) == 4 and parts[0] != "total":
            vals.append(float(parts[3]))
    return vals


def test_clock_step(wd):
    if not os.path.exists(LIB):
        raise AssertionError(f"{LIB} missing: scripts/install-deps installs faketime")
    offset = wd.file("faketime.offset")
    with open(offset, "w") as f:
        f.write("+0\n")
    probe = subprocess.run(["date", "+%s"], env=faked_env(offset), capture_output=True,
                           text=True, timeout=10)
    assert abs(int(probe.stdout) - time.time()) < 5, f"faketime +0 gave {probe.stdout}"

    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    cfg = h.sluice_config(wd, "clock", mosq.url, kafka.bootstrap)
    sl = h.Sluice(wd, cfg)
    # Sluice.start with sluice's environment faked: Popen inherits os.environ.
    saved = dict(os.environ)
    os.environ.update(faked_env(offset))
    try:
        sl.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    metrics = sl.http_url("/metrics")
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=TOTAL, timeout=240)
    pub = h.loadgen(mosq.url, TOTAL, devices=50, qos=1, rate=RATE, background=True, wd=wd)

    seen_ages = []

    def sample(label):
        real = subprocess.run([h.SLUICE, "spool", "stats", "-c", cfg], capture_output=True,
                              text=True, timeout=30)
        fake = subprocess.run([h.SLUICE, "spool", "stats", "-c", cfg], capture_output=True,
                              text=True, timeout=30, env=faked_env(offset))
        assert real.returncode == 0 and fake.returncode == 0, (real, fake)
        body = urllib.request.urlopen(metrics, timeout=10).read().decode()
        gauge = [float(m.group(1)) for m in
                 re.finditer(r"^sluice_spool_oldest_age_seconds\{[^}]*\} (\S+)$", body, re.M)]
        a = ages(real.stdout) + ages(fake.stdout) + gauge
        seen_ages.extend(a)
        h.log(f"{label}: ages real {ages(real.stdout)} faked {ages(fake.stdout)} "
              f"metrics {gauge}")

    def step(to, label):
        kafka.cmd("down all")
        time.sleep(1.0)                 # records spooled before the step
        with open(offset, "w") as f:
            f.write(to + "\n")
        h.log(f"clock step: {label} (offset {to})")
        time.sleep(1.0)                 # and after it
        sample(f"Kafka down, after {label}")
        kafka.cmd("up all")

    time.sleep(2.0)
    step("-1h", "-1 h")
    time.sleep(2.0)
    step(FORWARD_STEP, f"forward to {FORWARD_STEP}")
    sample(f"Kafka up, {FORWARD_STEP}")
    assert pub.wait(timeout=180) == 0, "loadgen failed"
    res = check.result()
    sample("drained")
    log = sl.log_text()
    assert sl.stop() == 0
    assert seen_ages, "no ages sampled"
    assert min(seen_ages) >= 0, f"negative age: {seen_ages}"
    assert res["lost"] == 0, res
    assert res["reordered"] == 0, res
    assert res["distinct"] == TOTAL, res
    # The log's own time stamps show the steps took effect inside sluice.
    years_days = set(re.findall(r"^(\d{4}-\d{2}-\d{2})T", log, re.M))
    h.log(f"log dates seen: {sorted(years_days)}; duplicates {res['duplicates']}")
    hours = set(re.findall(r"^\d{4}-\d{2}-\d{2}T(\d{2}):", log, re.M))
    assert len(hours) >= 2 or len(years_days) >= 2, "the -1 h step never reached sluice's clock"
    if FORWARD_STEP == "+1d":
        tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
        assert tomorrow in years_days, f"the +1 day step never reached sluice's log: {years_days}"


if __name__ == "__main__":
    h.run(test_clock_step)
