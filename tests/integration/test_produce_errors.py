"""Produce errors injected by the mock cluster (NOT_ENOUGH_REPLICAS for 50 requests):
nothing lost, nothing duplicated (the idempotent producer retries in order), and the
retries are counted."""
import re

import harness as h


def test_produce_errors(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    sl = h.Sluice(wd, h.sluice_config(wd, "perr", mosq.url, kafka.bootstrap)).start()
    total = 5000
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=total, timeout=180)
    kafka.cmd("errors Produce 50 NOT_ENOUGH_REPLICAS")
    h.loadgen(mosq.url, total, devices=100, qos=1, rate=2500)
    res = check.result()
    assert sl.stop() == 0
    assert res["lost"] == 0, res
    assert res["distinct"] == total, res
    assert res["duplicates"] == 0, res
    assert res["reordered"] == 0, res
    m = re.search(r"stopped: .*retries (\d+)", sl.log_text())
    assert m, "no stop summary with a retry count in the log"
    retries = int(m.group(1))
    h.log(f"produce retries counted: {retries}")
    assert retries > 0, "the injected errors were not seen as retries"


if __name__ == "__main__":
    h.run(test_produce_errors)
