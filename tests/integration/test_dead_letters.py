"""Dead letters: undecodable payloads (error.stage=decode), a record Kafka refuses
for good (TOPIC_AUTHORIZATION_FAILED from the broker) and one too large for the
producer (MSG_SIZE_TOO_LARGE, 2 MB over message.max.bytes) land in
sluice.dead-letter with error, error.stage, mqtt.topic (and kafka.topic for Kafka's
refusals); the records behind them keep flowing; `sluice spool dead-letters` lists
them from the spool."""
import subprocess

import harness as h
import policy as p

N_GOOD = 1000
N_BAD = 5


def test_dead_letters(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd, partitions=4)
    cfg = h.sluice_config(wd, "dl", mosq.url, kafka.bootstrap)
    sl = h.Sluice(wd, cfg).start()
    base = sl.http_url()
    dump = wd.file("dump.jsonl")
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin", "sluice.dead-letter"],
                      expect=2 * N_GOOD, timeout=60,
                      extra=["--dump", dump, "--linger-ms", "3000"])
    h.loadgen(mosq.url, N_GOOD, devices=p.DEVICES, extra=p.fmt("telemetry"))
    h.wait_for(lambda: p.metric(base + "/metrics", "sluice_kafka_delivered_total") >= N_GOOD,
               20, "the first records delivered")
    # The next Produce request (only this record is in flight) is refused for good.
    kafka.cmd("errors Produce 1 TOPIC_AUTHORIZATION_FAILED")
    h.loadgen(mosq.url, 1, devices=p.DEVICES, start=3_000_000, extra=p.fmt("telemetry"))
    h.wait_for(lambda: (p.metric(base + "/metrics", "sluice_dead_letter_total") or 0) >= 1,
               20, "the refused record dead-lettered")
    # Too large for the producer, then undecodable payloads, then more good records.
    h.loadgen(mosq.url, 1, devices=p.DEVICES, start=4_000_000, extra=p.fmt("telemetry") +
              ["--size", str(2 * 1024 * 1024)])
    for i in range(N_BAD):
        subprocess.run(["mosquitto_pub", "-p", str(mosq.port), "-q", "1", "-t",
                        f"factory/berlin/l1/dev-{i:04d}/telemetry", "-m", "not json {"],
                       check=True, timeout=10)
    h.loadgen(mosq.url, N_GOOD, devices=p.DEVICES, start=100_000, extra=p.fmt("telemetry"))
    res = check.result()
    listed = p.dead_letters(sl)
    assert sl.stop() == 0
    assert res["distinct"] >= 2 * N_GOOD and res["lost"] == 0, res
    dl = [r for r in p.read_dump(dump) if r["topic"] == "sluice.dead-letter"]
    stages = {}
    for r in dl:
        hd = r["headers"]
        assert hd.get("error") and hd.get("error.stage") and hd.get("mqtt.topic"), hd
        stages.setdefault(hd["error.stage"], []).append(hd["error"])
        if hd["error.stage"] == "kafka":
            assert hd.get("kafka.topic") == "telemetry.berlin", hd
    h.log(f"dead letters by stage: {stages}")
    assert len(stages.get("decode", [])) == N_BAD, stages
    assert "TOPIC_AUTHORIZATION_FAILED" in stages.get("kafka", []), stages
    assert "MSG_SIZE_TOO_LARGE" in stages.get("kafka", []), stages
    h.log("sluice spool dead-letters:\n" + "\n".join(listed))
    assert sum(" decode " in line for line in listed) == N_BAD, listed
    assert any("TOPIC_AUTHORIZATION_FAILED" in line for line in listed), listed
    assert any("MSG_SIZE_TOO_LARGE" in line for line in listed), listed


if __name__ == "__main__":
    h.run(test_dead_letters)
