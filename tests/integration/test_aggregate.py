"""aggregate: 60,000 samples of 20 devices over 45 s of event time (sluice-loadgen
--ts-start/--ts-step: message i has ts = T0 + (i / 20) * 15 ms, v = 20 + 5 sin(i / 50)
with three decimals) through a route with `aggregate: { window: 15s, fields: ... }`
become exactly 60 records, one per device and window, whose count, sum, avg, min,
max, first and last are the ones Python computes from the same formula.

Halfway through (in the middle of the second window, every message of the first half
committed), sluice is SIGKILLed and restarted: the open windows continue from the
accumulators persisted in the spool, so nothing is lost and nothing counted twice.
Windows 0 and 1 close by the watermark (the first record of the next window); window
2 has no successor and closes after a window length of wall time without records
(which is why the window is 15 s and not a minute: the test waits for it).
Kafka may see a record twice (produced, not yet deleted at the kill): any copies must
be identical.
"""
import json
import math
import signal
import subprocess
import time

import harness as h

DEVICES = 20
COUNT = 60000
T0 = 1700000040000            # a whole minute
STEP = 15                     # 3000 steps per device x 15 ms = 45 s
WINDOW = 15000

ROUTE = """
  - name: agg
    match: factory/{site}/{line}/{device}/telemetry
    format: json
    topic: agg.{site}
    key: "{device}"
    timestamp: $.ts
    lane: bulk
    aggregate:
      window: 15s
      late: drop
      fields:
        n:      { fn: count }
        v_sum:  { fn: sum, field: $.v }
        v_avg:  { fn: avg, field: $.v }
        v_min:  { fn: min, field: $.v }
        v_max:  { fn: max, field: $.v }
        v_first: { fn: first, field: $.v }
        v_last: { fn: last, field: $.v }
"""


def expected():
    """(device key, window start) -> the fields sluice must send."""
    acc = {}
    for i in range(COUNT):
        dev = "dev-%04d" % (i % DEVICES)
        ts = T0 + (i // DEVICES) * STEP
        start = ts - ts % WINDOW
        v = float("%.3f" % (20.0 + 5.0 * math.sin(i / 50.0)))
        a = acc.setdefault((dev, start), [])
        a.append(v)
    out = {}
    for k, vs in acc.items():
        out[k] = {"window_start": k[1], "window_end": k[1] + WINDOW, "n": len(vs),
                  "v_sum": sum(vs), "v_avg": sum(vs) / len(vs), "v_min": min(vs),
                  "v_max": max(vs), "v_first": vs[0], "v_last": vs[-1]}
    return out


def test_aggregate(wd):
    want = expected()
    assert len(want) == 60
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    cfg = h.sluice_config(wd, "agg", mosq.url, kafka.bootstrap, routes=ROUTE)
    dump = wd.file("agg.jsonl")
    check = subprocess.Popen([h.tool("sluice-kcheck"), "--bootstrap", kafka.bootstrap,
                              "--topic", "agg.berlin", "--timeout", "400", "--dump", dump],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sl = h.Sluice(wd, cfg).start()
    ts_args = ["--ts-start", str(T0), "--ts-step", str(STEP)]
    half = COUNT // 2
    h.loadgen(mosq.url, half, devices=DEVICES, qos=1, extra=ts_args)
    h.wait_for(lambda: sl.metric("sluice_mqtt_messages_total", {"route": "agg"}) == half,
               120, "the first half committed")
    assert sl.metric("sluice_aggregate_windows_total", {"route": "agg"}) == DEVICES
    time.sleep(1)    # the acknowledgements reach the broker
    assert sl.kill() != 0
    h.log("aggregate: SIGKILL in the middle of the second window")

    sl.start()
    h.loadgen(mosq.url, COUNT - half, devices=DEVICES, qos=1, start=half, extra=ts_args)
    h.wait_for(lambda: sl.metric("sluice_mqtt_messages_total", {"route": "agg"}) ==
               COUNT - half, 120, "the second half committed")
    assert sl.metric("sluice_aggregate_windows_total", {"route": "agg"}) == DEVICES
    # The third window has no successor: a window of wall time closes it.
    h.wait_for(lambda: sl.metric("sluice_aggregate_windows_total", {"route": "agg"}) ==
               2 * DEVICES, 120, "the quiet windows closed", interval=1)
    h.wait_for(lambda: (sl.metric("sluice_kafka_delivered_total", {"route": "agg"}) or 0)
               >= 2 * DEVICES, 60, "the last windows delivered", interval=0.5)
    time.sleep(3)
    check.send_signal(signal.SIGTERM)
    check.communicate(timeout=60)
    assert sl.metric("sluice_aggregate_late_total", {"route": "agg"}) in (0, None)
    assert sl.stop() == 0

    got = {}
    with open(dump) as f:
        recs = [json.loads(line) for line in f if line.startswith("{")]
    for r in recs:
        v = json.loads(r["value"])
        k = (r["key"], v["window_start"])
        assert r["headers"]["window.start"] == str(v["window_start"]), r
        assert r["headers"]["window.end"] == str(v["window_end"]), r
        assert r["timestamp"] == v["window_end"], r
        if k in got:
            assert got[k] == v, f"two different records for {k}: {got[k]} {v}"
        got[k] = v
    assert sorted(got) == sorted(want), (len(got), sorted(set(want) - set(got))[:5])
    for k, w in want.items():
        g = got[k]
        for f in ("window_start", "window_end", "n", "v_min", "v_max", "v_first", "v_last"):
            assert g[f] == w[f], (k, f, g[f], w[f])
        for f in ("v_sum", "v_avg"):
            assert abs(g[f] - w[f]) <= 1e-9 * max(1.0, abs(w[f])), (k, f, g[f], w[f])
    h.log(f"aggregate: {COUNT} in, {len(got)} windows out ({len(recs)} records read), "
          "exact across a SIGKILL")


if __name__ == "__main__":
    h.run(test_aggregate)
