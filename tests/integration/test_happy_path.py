"""Happy path: 20,000 QoS 1 messages from 100 devices all reach Kafka once, in order
per key, keyed by device, with CreateTime from the payload and every SPEC header.

Then the live path (src/live.c): with Kafka there and nothing waiting, a record Kafka
acknowledges before the intake journal is merged never reaches SQLite
(sluice_spool_skipped_total). The burst above is a poor witness: the producer's first
acknowledgements take about a second (producer id, topic metadata), about as long as
the 20,000 take to arrive. So a steady stream follows, 6,000 messages at 2,000/s to a
second site (its own topic): all delivered once and in order, and most of them
skipped SQLite."""
import os

import harness as h
import policy as p


def assert_clean(res, n, keys):
    h.assert_delivered(res, n, duplicates=0)
    assert res["bad_timestamp"] == 0, res
    assert res["key_mismatch"] == 0, res
    assert res["keys"] == keys, res
    assert res["seq_collisions"] == 0, res


def test_happy_path(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    sl = h.Sluice(wd, h.sluice_config(wd, "happy", mosq.url, kafka.bootstrap)).start()
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=20000)
    h.loadgen(mosq.url, 20000, devices=100, qos=1)
    assert_clean(check.result(), 20000, 100)

    metrics = sl.http_url("/metrics")
    before = p.metric(metrics, "sluice_spool_skipped_total")
    check = h.Checker(kafka.bootstrap, ["telemetry.steady"], expect=6000)
    h.loadgen(mosq.url, 6000, devices=50, qos=1, rate=2000,
              extra=["--topic-fmt", "factory/steady/l{line}/{device}/telemetry"])
    assert_clean(check.result(), 6000, 50)
    if os.environ.get("SLUICE_LIVE") != "0":
        # The merge that skips the last of them runs within 200 ms (SPOOL_HOLD_MS).
        h.wait_for(lambda: p.metric(metrics, "sluice_spool_skipped_total") - before >= 3000,
                   10, "most of the steady stream to skip SQLite")
    else:
        # SLUICE_LIVE=0 switches the live path off (src/main.c): nothing may skip SQLite.
        assert p.metric(metrics, "sluice_spool_skipped_total") == 0
    h.log(f"steady stream: {p.metric(metrics, 'sluice_spool_skipped_total') - before:.0f} "
          f"of 6000 never written to SQLite")
    assert sl.stop() == 0, "sluice did not exit 0 on SIGTERM"


if __name__ == "__main__":
    h.run(test_happy_path)
