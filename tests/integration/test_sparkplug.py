"""Sparkplug B through the bridge: Tahu-made NBIRTH/DBIRTH/DDATA fixtures published
to mosquitto reach Kafka as JSON with metric names resolved from the births, keyed
{group}/{edge_node}/{device}, with the payload timestamp as CreateTime; sluice is
SIGKILLed between DBIRTH and DDATA and the DDATA still resolves (the alias map lives
in the spool file); a seq gap is counted and marked (and shown on /metrics).

Also:
  - QoS 0 BIRTHs under a QoS 0 load (so a spool batch is open when they arrive): once
    the BIRTHs are delivered, SIGKILL; after the restart the DDATA still resolves;
  - sparkplug.request_rebirth: NDATA from an unknown node makes sluice publish one
    Rebirth NCMD, which `sluice map` decodes; a second NDATA within the interval does
    not; the counters on /metrics say so."""
import json
import os
import queue
import re
import subprocess
import threading
import time
import urllib.request

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


ROUTE_LOAD = """
  - name: telemetry
    match: factory/{site}/{line}/{device}/telemetry
    format: json
    topic: telemetry.{site}
    key: "{device}"
    lane: bulk
"""


def pub(mosq, topic, fixture, qos=1):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosq.port), "-q", str(qos),
                    "-t", topic, "-f", os.path.join(DATA, fixture + ".bin")],
                   check=True, timeout=10)


def route_metric(base, name, route):
    """One route's sample of a per-route counter, or 0."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r'^%s\{route="%s"\} (\S+)$' % (re.escape(name), re.escape(route)), text,
                  re.M)
    return float(m.group(1)) if m else 0


def metric(base, name):
    return p.metric(base + "/metrics", name) or 0


def consume(kafka, wd, topic, dump):
    return subprocess.Popen([h.tool("sluice-kcheck"), "--bootstrap", kafka.bootstrap,
                             "--topic", topic, "--timeout", "90", "--idle", "15",
                             "--dump", dump],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
    # Spooled, not just delivered: births resent from the spool also count as delivered.
    h.wait_for(lambda: route_metric(base, "sluice_mqtt_messages_total", "sparkplug") >= 2,
               30, "DDATA and NDATA spooled")
    h.wait_for(lambda: (p.metric(base + "/metrics", "sluice_kafka_delivered_total") or 0) >= 2,
               30, "DDATA and NDATA delivered")
    assert metric(base, "sluice_sparkplug_seq_gaps_total") == 1
    assert metric(base, "sluice_sparkplug_unknown_alias_total") == 0
    # SIGTERM flushes only what is in flight, so let the consumer go idle first.
    out, err = check.communicate(timeout=120)
    assert sl.stop() == 0
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


def test_sparkplug_metrics(wd):
    """The counters of test_sparkplug's second run, on /metrics (a fresh bridge)."""
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd, partitions=4)
    cfg = h.sluice_config(wd, "spbm", mosq.url, kafka.bootstrap, routes=ROUTES)
    sl = h.Sluice(wd, cfg).start()
    base = sl.http_url()
    for name in ("sluice_sparkplug_seq_gaps_total", "sluice_sparkplug_unknown_alias_total",
                 "sluice_sparkplug_rebirth_requests_total"):
        assert p.metric(base + "/metrics", name) == 0, name
    pub(mosq, "spBv1.0/Plant1/NBIRTH/Edge1", "nbirth")
    pub(mosq, "spBv1.0/Plant1/NDATA/Edge1", "ndata_gap")            # seq 5 after 0
    pub(mosq, "spBv1.0/Plant1/NDATA/Edge1", "ndata_unknown_alias")  # seq 2 after 5: gap
    pub(mosq, "spBv1.0/Plant1/DDATA/Edge1/DevX", "ddata")           # no DBIRTH; seq 2: gap
    h.wait_for(lambda: route_metric(base, "sluice_mqtt_messages_total", "sparkplug") >= 4,
               30, "four sparkplug messages")
    assert metric(base, "sluice_sparkplug_seq_gaps_total") == 3
    assert metric(base, "sluice_sparkplug_unknown_alias_total") == 2
    assert metric(base, "sluice_sparkplug_rebirth_requests_total") == 0   # not asked to
    assert sl.stop() == 0
    mosq.stop()
    kafka.stop()


def test_sparkplug_qos0_birth_durable(wd):
    """BIRTHs at QoS 0 while QoS 0 load keeps a spool batch open: the aliases are on
    disk before the BIRTHs are committed, so a SIGKILL right after their delivery
    loses nothing."""
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd, partitions=4)
    cfg = h.sluice_config(wd, "spb0", mosq.url, kafka.bootstrap, routes=ROUTES + ROUTE_LOAD)
    sl = h.Sluice(wd, cfg).start()
    base = sl.http_url()
    dump = wd.file("dump0.jsonl")
    check = consume(kafka, wd, "sparkplug.Plant2", dump)
    load = h.loadgen(mosq.url, 400000, qos=0, rate=4000, background=True, wd=wd)
    try:
        h.wait_for(lambda: route_metric(base, "sluice_mqtt_messages_total", "telemetry") >= 200,
                   30, "QoS 0 load flowing")
        pub(mosq, "spBv1.0/Plant2/NBIRTH/Edge1", "nbirth", qos=0)
        pub(mosq, "spBv1.0/Plant2/DBIRTH/Edge1/Dev1", "dbirth", qos=0)
        h.wait_for(lambda: route_metric(base, "sluice_kafka_delivered_total", "sparkplug") >= 2,
                   30, "both QoS 0 births delivered")
        assert sl.kill() != 0
    finally:
        load.kill()
        load.wait()
    h.log("sluice killed right after the QoS 0 births were delivered; restarting")
    sl.start()
    base = sl.http_url()
    pub(mosq, "spBv1.0/Plant2/DDATA/Edge1/Dev1", "ddata", qos=0)
    # mqtt_messages, not delivered: the births may be sent again from the spool (they
    # were delivered, their delete maybe not committed). SIGTERM flushes the rest.
    h.wait_for(lambda: route_metric(base, "sluice_mqtt_messages_total", "sparkplug") >= 1,
               30, "DDATA spooled")
    # SIGTERM flushes only what is in flight, so let the consumer go idle first.
    out, err = check.communicate(timeout=120)
    assert sl.stop() == 0
    recs = [r for r in p.read_dump(dump) if r["topic"] == "sparkplug.Plant2"]
    by_topic = {r["headers"]["mqtt.topic"]: r for r in recs}
    assert set(by_topic) == {"spBv1.0/Plant2/NBIRTH/Edge1", "spBv1.0/Plant2/DBIRTH/Edge1/Dev1",
                             "spBv1.0/Plant2/DDATA/Edge1/Dev1"}, (out, err, recs)
    ddata = by_topic["spBv1.0/Plant2/DDATA/Edge1/Dev1"]
    assert "sparkplug.warning" not in ddata["headers"], ddata
    v = json.loads(ddata["value"])
    assert [m.get("name") for m in v["metrics"]] == ["Inputs/A", "Outputs/Temp"], v
    mosq.stop()
    kafka.stop()


def read_lines(stream, q):
    for line in stream:
        q.put(line.rstrip("\n"))
    q.put(None)


def next_match(q, rx, deadline):
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            line = q.get(timeout=left)
        except queue.Empty:
            return None
        if line is None:
            return None
        m = rx.search(line)
        if m:
            return m


def test_sparkplug_rebirth(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd, partitions=4)
    cfg = h.sluice_config(wd, "spbr", mosq.url, kafka.bootstrap, routes=ROUTES)
    with open(cfg, "a") as f:
        f.write("sparkplug:\n  request_rebirth: true\n  rebirth_interval: 1m\n")
    sl = h.Sluice(wd, cfg).start()
    base = sl.http_url()

    # Every NCMD, as "topic hexpayload"; -d shows when the subscription is in place.
    # stdbuf: mosquitto_sub's stdout is a pipe here, block-buffered otherwise.
    sub = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1",
                            "-p", str(mosq.port), "-d", "-t", "spBv1.0/+/NCMD/#",
                            "-F", "%t %x", "-W", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = queue.Queue()
    threading.Thread(target=read_lines, args=(sub.stdout, lines), daemon=True).start()
    try:
        assert next_match(lines, re.compile(r"received SUBACK"), time.monotonic() + 10), \
            "mosquitto_sub did not subscribe"
        ncmd = re.compile(r"^(spBv1\.0/\S+/NCMD/\S+) ([0-9a-f]*)$")

        pub(mosq, "spBv1.0/Plant3/NDATA/Edge9", "ndata", qos=0)      # nobody knows Edge9
        m = next_match(lines, ncmd, time.monotonic() + 20)
        assert m, "no NCMD within 20 s"
        assert m.group(1) == "spBv1.0/Plant3/NCMD/Edge9", m.group(0)
        payload = wd.file("ncmd.bin")
        with open(payload, "wb") as f:
            f.write(bytes.fromhex(m.group(2)))
        out = subprocess.run([h.SLUICE, "map", "-c", cfg, m.group(1), payload],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out
        value = json.loads(re.search(r"^value:\s+(.*)$", out.stdout, re.M).group(1))
        assert value["metrics"] == [
            {"name": "Node Control/Rebirth", "timestamp": value["timestamp"],
             "type": "Boolean", "value": True}], value
        assert "seq" not in value, value
        assert abs(value["timestamp"] - time.time() * 1000) < 120000, value

        # Within the interval: the DATA is still marked, but nothing is published.
        pub(mosq, "spBv1.0/Plant3/NDATA/Edge9", "ndata", qos=0)
        h.wait_for(lambda: metric(base, "sluice_sparkplug_unknown_alias_total") >= 2, 20,
                   "second NDATA decoded")
        assert next_match(lines, ncmd, time.monotonic() + 2) is None, "a second NCMD"
        assert metric(base, "sluice_sparkplug_rebirth_requests_total") == 1
        assert metric(base, "sluice_sparkplug_seq_gaps_total") == 1     # seq 1 twice
    finally:
        sub.kill()
        sub.wait()
    assert sl.stop() == 0
    assert "published spBv1.0/Plant3/NCMD/Edge9" in sl.log_text()
    mosq.stop()
    kafka.stop()


def test_sparkplug_all(wd):
    test_sparkplug(wd)
    test_sparkplug_metrics(wd)
    test_sparkplug_qos0_birth_durable(wd)
    test_sparkplug_rebirth(wd)


if __name__ == "__main__":
    h.run(test_sparkplug_all)
