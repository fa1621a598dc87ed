"""SIGKILL sluice 5 times during a QoS 1 run, restarting it each time: nothing lost.
Duplicates are expected (records produced but not yet deleted at the kill) and must
stay within the in-flight window, the intake journal and the acknowledgements not yet
deleted, per kill."""
import time

import harness as h

# What a kill can re-send: include/sluice/forward.h FORWARD_WINDOW (records produced,
# not yet acknowledged), src/spool.c SPOOL_JOURNAL_ROWS (acknowledged on the live path
# before the intake journal was merged: replayed) and src/forward.c FW_PEND_MAX
# (acknowledged, not yet deleted: held for whole-run deletes, at most FORWARD_WINDOW).
RESEND_PER_KILL = 4000 + 4000 + 4000


def test_sigkill(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    sl = h.Sluice(wd, h.sluice_config(wd, "kill", mosq.url, kafka.bootstrap)).start()
    total = 20000
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=total, timeout=240)
    pub = h.loadgen(mosq.url, total, devices=100, qos=1, rate=2000, background=True, wd=wd)
    kills = 0
    while kills < 5 and pub.poll() is None:
        t0 = time.monotonic()
        h.wait_for(lambda: time.monotonic() - t0 > 1.2 or pub.poll() is not None, 5,
                   "the next kill moment")
        sl.kill()
        kills += 1
        h.log(f"SIGKILL #{kills}")
        sl.start()
    assert kills >= 3, f"only {kills} kills happened before the publisher finished"
    assert pub.wait(timeout=120) == 0, "loadgen failed"
    res = check.result()
    assert sl.stop() == 0
    h.log(f"kills={kills} duplicates={res['duplicates']} "
          f"(bound {kills * RESEND_PER_KILL})")
    assert res["lost"] == 0, res
    assert res["distinct"] == total, res
    assert res["duplicates"] <= kills * RESEND_PER_KILL, res
    # No restart handed out a sequence again (sluice.instance + sluice.seq unique).
    assert res["seq_collisions"] == 0, res


if __name__ == "__main__":
    h.run(test_sigkill)
