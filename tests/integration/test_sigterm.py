"""SIGTERM mid-stream: exit 0; restart; the run completes with no loss and, for a
clean stop, no duplicates."""
import time

import harness as h


def test_sigterm(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    sl = h.Sluice(wd, h.sluice_config(wd, "term", mosq.url, kafka.bootstrap)).start()
    total = 10000
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=total, timeout=180)
    pub = h.loadgen(mosq.url, total, devices=50, qos=1, rate=2000, background=True, wd=wd)
    t0 = time.monotonic()
    h.wait_for(lambda: time.monotonic() - t0 > 2, 5, "traffic before SIGTERM")
    rc = sl.stop()
    assert rc == 0, f"sluice exited {rc} on SIGTERM"
    h.log("sluice stopped with SIGTERM, exit 0")
    sl.start()
    assert pub.wait(timeout=120) == 0, "loadgen failed"
    res = check.result()
    assert sl.stop() == 0
    assert res["lost"] == 0, res
    assert res["distinct"] == total, res
    assert res["duplicates"] == 0, res
    assert res["reordered"] == 0, res
    assert res["seq_collisions"] == 0, res


if __name__ == "__main__":
    h.run(test_sigterm)
