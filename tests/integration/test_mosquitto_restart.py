"""Mosquitto (with persistence) restarted mid-run: sluice reconnects, nothing lost."""
import time

import harness as h


def test_mosquitto_restart(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    sl = h.Sluice(wd, h.sluice_config(wd, "mrestart", mosq.url, kafka.bootstrap)).start()
    total = 16000
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=total, timeout=180)
    pub = h.loadgen(mosq.url, total, devices=100, qos=1, rate=2000, background=True, wd=wd)
    t0 = time.monotonic()
    h.wait_for(lambda: time.monotonic() - t0 > 3, 5, "traffic before the restart")
    mosq.stop()     # SIGTERM: mosquitto saves its persistence file on the way out
    h.log("mosquitto stopped")
    sl.wait_log(r"ingest: connection lost", 30)
    mosq.start()
    h.log("mosquitto restarted")
    sl.wait_log(r"ingest: connected", 60)
    assert pub.wait(timeout=180) == 0, "loadgen failed"
    res = check.result()
    assert sl.stop() == 0
    assert res["lost"] == 0, res
    assert res["distinct"] == total, res
    assert res["reordered"] == 0, res


if __name__ == "__main__":
    h.run(test_mosquitto_restart)
