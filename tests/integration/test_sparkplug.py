"""Sparkplug B through the bridge: Tahu-made NBIRTH/DBIRTH/DDATA fixtures published
to mosquitto reach Kafka as JSON with metric names resolved from the births, keyed
{group}/{edge_node}/{device}, with the payload timestamp as CreateTime; sluice is
SIGKILLed between DBIRTH and DDATA and the DDATA still resolves (the alias map lives
in the spool file); a seq gap is counted and marked."""
import json
import os
import subprocess

import harness as h
import policy as p

DATA = os.path.join(os.environ.get("SLUICE_SOURCE", "."), "tests", "data", "sparkplug")
ROUTES = """
  - name: sparkplug
    match: spBv1.0/#
    format: sparkplug
    topic: sparkplug.{group}
    key: "{group}/{edge_node}/{device}"
    lane: urgent
"""


def pub(mosq, topic, fixture):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosq.port), "-q", "1",
                    "-t", topic, "-f", os.path.join(DATA, fixture + ".bin")],
                   check=True, timeout=10)


def test_sparkplug(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd, partitions=4)
    cfg = h.sluice_config(wd, "spb", mosq.url, kafka.bootstrap, routes=ROUTES)
    sl = h.Sluice(wd, cfg).start()
    base = sl.http_url()
    dump = wd.file("dump.jsonl")
    check = subprocess.Popen([h.tool("sluice-kcheck"), "--bootstrap", kafka.bootstrap,
                              "--topic", "sparkplug.Plant1", "--timeout", "90",
                              "--idle", "15", "--dump", dump],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    pub(mosq, "spBv1.0/Plant1/NBIRTH/Edge1", "nbirth")
    pub(mosq, "spBv1.0/Plant1/DBIRTH/Edge1/Dev1", "dbirth")
    h.wait_for(lambda: (p.metric(base + "/metrics", "sluice_kafka_delivered_total") or 0) >= 2,
               30, "both births delivered")
    assert sl.kill() != 0
    h.log("sluice killed after the DBIRTH; restarting")
    sl.start()
    base = sl.http_url()
    pub(mosq, "spBv1.0/Plant1/DDATA/Edge1/Dev1", "ddata")       # seq 2
    pub(mosq, "spBv1.0/Plant1/NDATA/Edge1", "ndata_gap")        # seq 5: a gap
    h.wait_for(lambda: (p.metric(base + "/metrics", "sluice_kafka_delivered_total") or 0) >= 2,
               30, "DDATA and NDATA delivered")
    assert sl.stop() == 0
    out, err = check.communicate(timeout=120)
    recs = [r for r in p.read_dump(dump) if r["topic"] == "sparkplug.Plant1"]
    h.log(f"{len(recs)} records: " + json.dumps([(r["key"], r["headers"].get("mqtt.topic"))
                                                  for r in recs]))
    by_topic = {r["headers"]["mqtt.topic"]: r for r in recs}
    assert len(by_topic) == 4, (out, err, recs)

    nbirth = by_topic["spBv1.0/Plant1/NBIRTH/Edge1"]
    assert nbirth["key"] == "Plant1/Edge1/", nbirth
    assert nbirth["timestamp"] == 1700000000000, nbirth
    v = json.loads(nbirth["value"])
    assert {"name": "int32", "alias": 4, "type": "Int32", "value": -2000000000} in v["metrics"], v

    ddata = by_topic["spBv1.0/Plant1/DDATA/Edge1/Dev1"]
    assert ddata["key"] == "Plant1/Edge1/Dev1", ddata
    assert ddata["timestamp"] == 1700000002000, ddata
    v = json.loads(ddata["value"])
    assert v["metrics"] == [
        {"name": "Inputs/A", "alias": 100, "type": "Boolean", "value": True},
        {"name": "Outputs/Temp", "alias": 102, "type": "Float", "value": 22.75},
    ], v
    assert "sparkplug.warning" not in ddata["headers"], ddata

    ndata = by_topic["spBv1.0/Plant1/NDATA/Edge1"]
    assert ndata["headers"].get("sparkplug.warning") == "seq-gap", ndata
    v = json.loads(ndata["value"])
    assert v["metrics"][0]["name"] == "int32", v   # the NBIRTH's alias, also from disk


if __name__ == "__main__":
    h.run(test_sparkplug)
