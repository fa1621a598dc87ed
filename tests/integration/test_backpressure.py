"""Kafka down, spool.max_bytes 512 KiB, when_full: backpressure. sluice stops taking
messages (the message in hand stays unacknowledged, the broker's persistent session
queues the rest), /readyz says 503 with spool "full" while it lasts, and once Kafka
is back every message arrives: 0 lost, nothing dropped. The stall outlasts the MQTT
keepalive (10 s in the test config), so the blocked-callback path is exercised."""
import time

import harness as h
import policy as p

TOTAL = 8000


def test_backpressure(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd, partitions=4)
    kafka.cmd("down all")
    cfg = h.sluice_config(wd, "bp", mosq.url, kafka.bootstrap,
                          spool_extra="  max_bytes: 512KiB\n  when_full: backpressure\n")
    sl = h.Sluice(wd, cfg).start()
    base = sl.http_url()
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=TOTAL, timeout=90)
    pub = h.loadgen(mosq.url, TOTAL, devices=100, qos=1, background=True, wd=wd)
    sl.wait_log(r"spool full: holding the message unacknowledged", 30)
    full_at = time.monotonic()
    status, body = h.wait_for(lambda: (lambda r: r if r[0] == 503 else None)(p.readyz(base)),
                              10, "/readyz 503")
    h.log(f"/readyz while full: {status} {body.strip()}")
    assert '"full"' in body or "full" in body, body
    assert pub.wait(timeout=60) == 0, "loadgen failed (the broker should queue for us)"
    appended = p.metric(base + "/metrics", "sluice_spool_appends_total")
    h.log(f"spooled before the stall: {appended:.0f} of {TOTAL}")
    assert appended < TOTAL
    # Hold the stall past the 10 s keepalive.
    h.wait_for(lambda: time.monotonic() - full_at >= 12, 20, "a 12 s stall")
    kafka.cmd("up all")
    res = check.result()
    h.wait_for(lambda: p.readyz(base)[0] == 200, 30, "/readyz 200 again")
    assert sl.stop() == 0
    log_text = sl.log_text()
    assert p.drops(log_text) == {}, p.drops(log_text)
    assert res["lost"] == 0 and res["distinct"] == TOTAL, res
    reconnects = log_text.count("ingest: connected")
    h.log(f"backpressure: {TOTAL} delivered, 0 lost, {res['duplicates']} duplicates, "
          f"log lines about (re)connects: {reconnects}")


if __name__ == "__main__":
    h.run(test_backpressure)
