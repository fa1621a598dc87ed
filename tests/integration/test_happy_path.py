"""Happy path: 20,000 QoS 1 messages from 100 devices all reach Kafka once, in order
per key, keyed by device, with CreateTime from the payload and every SPEC header."""
import harness as h


def test_happy_path(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    sl = h.Sluice(wd, h.sluice_config(wd, "happy", mosq.url, kafka.bootstrap)).start()
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=20000)
    h.loadgen(mosq.url, 20000, devices=100, qos=1)
    res = check.result()
    assert sl.stop() == 0, "sluice did not exit 0 on SIGTERM"
    assert res["distinct"] == 20000, res
    assert res["lost"] == 0, res
    assert res["duplicates"] == 0, res
    assert res["reordered"] == 0, res
    assert res["missing_headers"] == 0, res
    assert res["bad_timestamp"] == 0, res
    assert res["key_mismatch"] == 0, res
    assert res["keys"] == 100, res


if __name__ == "__main__":
    h.run(test_happy_path)
