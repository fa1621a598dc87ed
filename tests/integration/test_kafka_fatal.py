"""Producer-state errors in the middle of a steady QoS 1 stream: nothing lost, nothing
reordered per key, nothing dead-lettered, no sluice.seq reused.

The mock cluster answers three produce requests with OUT_OF_ORDER_SEQUENCE_NUMBER
(librdkafka's idempotent producer raises a fatal error), and later three with
INVALID_PRODUCER_EPOCH (librdkafka 2.0.2 only fails the records; sluice used to take
that for a permanent rejection and dead-letter them). Either way sluice purges and
destroys the producer, creates a new one, and sends everything not yet acknowledged
again from the spool, in sequence order (src/forward.c, fw_recover). At 2,000
messages/s the live path (src/live.c) is carrying the stream when it happens, so this
is also its way out: records produced from the queue but not acknowledged must come
back through SQLite. Duplicates are allowed (what was in flight), within the window
per recreation."""
import time

import harness as h
import policy as p

N = 12000
FORWARD_WINDOW = 4000


def test_kafka_fatal(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    sl = h.Sluice(wd, h.sluice_config(wd, "fatal", mosq.url, kafka.bootstrap)).start()
    metrics = sl.http_url("/metrics")
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=N, timeout=120)
    pub = h.loadgen(mosq.url, N, devices=100, qos=1, rate=2000, background=True, wd=wd)
    # Once the stream is steady (and past the producer's first second), break it.
    for at, err in ((3000, "OUT_OF_ORDER_SEQUENCE_NUMBER"), (7000, "INVALID_PRODUCER_EPOCH")):
        h.wait_for(lambda: (p.metric(metrics, "sluice_kafka_delivered_total") or 0) >= at,
                   30, f"{at} records in Kafka")
        before = sl.metric("sluice_kafka_errors_total", {"reason": "fatal"})
        kafka.cmd(f"errors Produce 3 {err}")
        h.wait_for(lambda: sl.metric("sluice_kafka_errors_total", {"reason": "fatal"}) >
                   before, 30, f"the producer to be recreated after {err}")
    assert pub.wait(timeout=60) == 0, "loadgen failed"
    res = check.result()
    permanent = sl.metric("sluice_kafka_errors_total", {"reason": "permanent"})
    assert sl.stop() == 0
    assert permanent == 0, permanent
    assert "kafka producer failed" in sl.log_text()
    assert res["distinct"] == N, res
    assert res["lost"] == 0, res
    assert res["reordered"] == 0, res
    assert res["duplicates"] <= 2 * FORWARD_WINDOW, res
    assert res["seq_collisions"] == 0, res
    assert res["missing_headers"] == 0, res


if __name__ == "__main__":
    h.run(test_kafka_fatal)
