"""SIGHUP mid-stream: a new route takes effect with nothing lost or duplicated on the
routes already running; a broken config is refused and the old one keeps running."""
import os
import signal
import time

import harness as h

ALARMS = """
  - name: alarms
    match: factory/{site}/{line}/{device}/alarm
    format: json
    topic: alarms
    key: "{device}"
    timestamp: $.ts
    lane: urgent
"""


def test_reload(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    cfg = h.sluice_config(wd, "reload", mosq.url, kafka.bootstrap)
    with open(cfg) as f:
        original = f.read()
    sl = h.Sluice(wd, cfg).start()

    total = 12000
    telemetry = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=total, timeout=180)
    pub = h.loadgen(mosq.url, total, devices=100, qos=1, rate=2000, background=True, wd=wd)
    t0 = time.monotonic()
    h.wait_for(lambda: time.monotonic() - t0 > 2, 5, "traffic before the reload")

    # 1. Add a route while telemetry flows.
    with open(cfg + ".new", "w") as f:
        f.write(original + ALARMS)
    os.replace(cfg + ".new", cfg)
    sl.proc.send_signal(signal.SIGHUP)
    sl.wait_log(r"main: reload done: 2 route", 20)
    alarms = h.Checker(kafka.bootstrap, ["alarms"], expect=200, timeout=120)
    h.loadgen(mosq.url, 200, devices=20, qos=1,
              extra=["--topic-fmt", "factory/berlin/l{line}/{device}/alarm",
                     "--client-id", "reload-alarms"])
    res_a = alarms.result()
    assert res_a["distinct"] == 200 and res_a["lost"] == 0, res_a

    # 2. A broken config is refused; the running one stays.
    with open(cfg + ".new", "w") as f:
        f.write(original.replace("format: json", "format: jsn") + ALARMS)
    os.replace(cfg + ".new", cfg)
    sl.proc.send_signal(signal.SIGHUP)
    sl.wait_log(r"reload failed with \d+ error", 20)
    assert "format" in sl.log_since_start(), "the reload error does not name the problem"

    assert pub.wait(timeout=120) == 0, "loadgen failed"
    res_t = telemetry.result()
    assert sl.stop() == 0
    assert res_t["distinct"] == total and res_t["lost"] == 0, res_t
    assert res_t["duplicates"] == 0, res_t
    assert res_t["reordered"] == 0, res_t


if __name__ == "__main__":
    h.run(test_reload)
