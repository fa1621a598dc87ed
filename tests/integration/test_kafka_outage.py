"""Kafka down for 10 s in the middle of a run: nothing lost, order per key kept."""
import time

import harness as h


def test_kafka_outage(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    sl = h.Sluice(wd, h.sluice_config(wd, "outage", mosq.url, kafka.bootstrap)).start()
    total = 30000
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=total, timeout=180)
    pub = h.loadgen(mosq.url, total, devices=100, qos=1, rate=2000, background=True, wd=wd)
    time.sleep(2.0)   # let traffic flow before the outage (timing, not a wait)
    kafka.cmd("down all")
    h.log("kafka: all brokers down")
    sl.wait_log(r"forward: kafka unreachable", 30)
    down_at = time.monotonic()
    h.wait_for(lambda: time.monotonic() - down_at >= 10, 15, "a 10 s outage")
    kafka.cmd("up all")
    h.log("kafka: all brokers up")
    assert pub.wait(timeout=120) == 0, "loadgen failed"
    res = check.result()
    assert sl.stop() == 0
    h.assert_delivered(res, total)
    h.log(f"duplicates after a 10 s outage: {res['duplicates']}")


if __name__ == "__main__":
    h.run(test_kafka_outage)
