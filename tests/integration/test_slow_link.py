"""Kafka back after an outage over a slow link: every broker answers with 1.5 s of
added round-trip time (a vessel's satellite uplink under load), longer than the
forwarder's first wait for its reachability probe. sluice must still notice that
Kafka is back, then deliver everything it spooled meanwhile: nothing lost, order per
key kept. (Before the probe learned to wait longer, it timed out forever and the
spool never drained.)"""
import time

import harness as h

RTT_MS = 1500


def test_slow_link(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    sl = h.Sluice(wd, h.sluice_config(wd, "slowlink", mosq.url, kafka.bootstrap)).start()
    sl.wait_log(r"forward: kafka reachable at", 30)
    kafka.cmd(f"rtt all {RTT_MS}")
    kafka.cmd("down all")
    sl.wait_log(r"forward: kafka unreachable", 60)
    total = 3000
    pub = h.loadgen(mosq.url, total, devices=30, qos=1, rate=1000, background=True, wd=wd)
    assert pub.wait(timeout=60) == 0, "loadgen failed"
    h.wait_for(lambda: sl.spool_total() >= total, 30, "the spool to hold every message")
    kafka.cmd("up all")
    up_at = time.monotonic()
    sl.wait_log(r"forward: kafka reachable again", 90)
    h.log(f"kafka reachable again {time.monotonic() - up_at:.1f} s after `up all`"
          f" at {RTT_MS} ms round trip")
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=total, timeout=180)
    res = check.result()
    assert sl.stop() == 0
    h.assert_delivered(res, total)


if __name__ == "__main__":
    h.run(test_slow_link)
