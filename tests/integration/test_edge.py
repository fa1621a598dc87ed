"""Edge processing before upload, against a real mosquitto and the mock cluster.

where: 2,000 QoS 1 messages from 20 devices on 4 lines through
  where: '{line} != "l4" and $.seq <= 80'
reach Kafka as exactly 15 devices x 80 = 1,200 records (none lost, none extra), and
the other 800 are counted in sluice_filtered_total{route="telemetry"} and
acknowledged: a restart with the same persistent session receives nothing again.

deadband: 20 devices send a drifting value (sluice-loadgen's v = 20 + 5 sin(i / 50),
three decimals) through `deadband: { field: $.v, abs: 2 }`. The test replays the
band per key to know exactly which messages must be forwarded, checks that exactly
those reach Kafka, SIGKILLs sluice, restarts it and sends the next 2,000: the band
continues from the last forwarded values persisted in the spool, so again exactly
the replayed count arrives (without persistence, the first value of each device
after the restart would be forwarded: the test checks that this would differ).

compact: with Kafka down, 2,000 messages of 20 devices go to a lane with
`compact: latest_per_key`; the spool keeps 20 records (sluice_compacted_total{lane}
1,980), and when Kafka returns exactly 20 records arrive, one per key, each the
device's newest (seq 100).
"""
import json
import math
import time

import harness as h

ROUTE_WHERE = """
  - name: telemetry
    match: factory/{site}/{line}/{device}/telemetry
    format: json
    topic: telemetry.{site}
    key: "{device}"
    timestamp: $.ts
    lane: bulk
    where: '{line} != "l4" and $.seq <= 80'
"""


def wait_metric(sl, name, labels, value, timeout=30):
    return h.wait_for(lambda: sl.metric(name, labels) == value, timeout,
                      f"{name}{labels} == {value}")


def test_where(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    cfg = h.sluice_config(wd, "where", mosq.url, kafka.bootstrap, routes=ROUTE_WHERE)
    sl = h.Sluice(wd, cfg).start()
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=1200,
                      extra=["--linger-ms", "2000"])
    h.loadgen(mosq.url, 2000, devices=20, qos=1)
    res = check.result()
    assert res["distinct"] == 1200 and res["lost"] == 0, res
    assert res["duplicates"] == 0 and res["reordered"] == 0, res
    assert res["keys"] == 15, res
    wait_metric(sl, "sluice_filtered_total", {"route": "telemetry"}, 800)
    assert sl.metric("sluice_mqtt_messages_total", {"route": "telemetry"}) == 1200
    assert sl.stop() == 0

    # Acknowledged: the broker does not redeliver the filtered messages.
    sl.start()
    time.sleep(2)
    assert sl.metric("sluice_filtered_total", {"route": "telemetry"}) == 0
    assert sl.metric("sluice_mqtt_messages_total", {"route": "telemetry"}) == 0
    assert sl.stop() == 0
    h.log("where: 2000 in, 1200 out, 800 filtered")


ROUTE_DEADBAND = """
  - name: telemetry
    match: factory/{site}/{line}/{device}/telemetry
    format: json
    topic: telemetry.{site}
    key: "{device}"
    timestamp: $.ts
    lane: bulk
    deadband: { field: $.v, abs: 2 }
"""
DEVICES = 20
BAND = 2.0


def loadgen_value(idx):
    """sluice-loadgen's value of message idx, as the JSON text it sends, parsed."""
    return float("%.3f" % (20.0 + 5.0 * math.sin(idx / 50.0)))


def replay(start, count, last):
    """Forwarded count of messages start..start+count-1 under the band, updating last
    (device -> last forwarded value) as sluice does."""
    n = 0
    for idx in range(start, start + count):
        dev, v = idx % DEVICES, loadgen_value(idx)
        if dev not in last or abs(v - last[dev]) > BAND:
            last[dev] = v
            n += 1
    return n


def test_deadband(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    cfg = h.sluice_config(wd, "deadband", mosq.url, kafka.bootstrap, routes=ROUTE_DEADBAND)
    last = {}
    want1 = replay(0, 2000, last)
    want2 = replay(2000, 2000, last)
    without_state = replay(2000, 2000, {})
    assert want2 != without_state, "the restart would not show missing persistence"
    h.log(f"deadband: expecting {want1} then {want2} forwarded of 2000 each "
          f"({without_state} without persisted state)")

    sl = h.Sluice(wd, cfg).start()
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=want1,
                      extra=["--linger-ms", "2000"])
    h.loadgen(mosq.url, 2000, devices=DEVICES, qos=1)
    res = check.result()
    assert res["distinct"] == want1 and res["lost"] == 0, res
    assert res["duplicates"] == 0 and res["keys"] == DEVICES, res
    wait_metric(sl, "sluice_deadband_suppressed_total", {"route": "telemetry"},
                2000 - want1)
    time.sleep(1)     # let the forwarder delete what Kafka acknowledged
    assert sl.kill() != 0

    sl.start()
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=want1 + want2,
                      extra=["--linger-ms", "3000"])
    h.loadgen(mosq.url, 2000, devices=DEVICES, qos=1, start=2000)
    res = check.result()
    assert res["distinct"] == want1 + want2 and res["lost"] == 0, res
    assert res["duplicates"] == 0 and res["reordered"] == 0, res
    wait_metric(sl, "sluice_deadband_suppressed_total", {"route": "telemetry"},
                2000 - want2)
    assert sl.metric("sluice_mqtt_messages_total", {"route": "telemetry"}) == want2
    assert sl.stop() == 0
    h.log(f"deadband: 4000 in, {want1 + want2} out")


ROUTE_STATE = """
  - name: telemetry
    match: factory/{site}/{line}/{device}/telemetry
    format: json
    topic: state.{site}
    key: "{device}"
    timestamp: $.ts
    lane: state
"""
LANES_STATE = """
  state: { priority: 5, compact: latest_per_key }
"""


def test_compact(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    kafka.cmd("down all")
    cfg = h.sluice_config(wd, "compact", mosq.url, kafka.bootstrap, routes=ROUTE_STATE,
                          lanes=LANES_STATE)
    sl = h.Sluice(wd, cfg).start()
    h.loadgen(mosq.url, 2000, devices=DEVICES, qos=1)
    wait_metric(sl, "sluice_compacted_total", {"lane": "state"}, 2000 - DEVICES)
    out = sl.spool_stats()
    assert out.returncode == 0 and any(
        line.split()[:2] == ["state", str(DEVICES)] for line in out.stdout.splitlines()), \
        out.stdout
    dump = wd.file("compact.jsonl")
    check = h.Checker(kafka.bootstrap, ["state.berlin"], expect=DEVICES,
                      extra=["--linger-ms", "3000", "--dump", dump])
    kafka.cmd("up all")
    res = check.result()
    assert res["total"] == DEVICES and res["distinct"] == DEVICES, res
    assert res["keys"] == DEVICES, res
    with open(dump) as f:
        recs = [json.loads(line) for line in f if line.startswith("{")]
    newest = {r["key"]: json.loads(r["value"])["seq"] for r in recs}
    assert newest == {"dev-%04d" % d: 2000 // DEVICES for d in range(DEVICES)}, newest
    assert sl.stop() == 0
    h.log(f"compact: 2000 in during the outage, {len(recs)} out")


def test_edge(wd):
    test_where(wd)
    test_deadband(wd)
    test_compact(wd)


if __name__ == "__main__":
    h.run(test_edge)
