#!/usr/bin/env python3
"""Edge-rule benchmark: sluice's ingest rate with a plain route, with `where:` and with
`aggregate:`, all in one run, so the ratios between the variants are what to compare.

Each variant gets a fresh Mosquitto, mock Kafka cluster and sluice; sluice-loadgen
publishes N messages of 200-byte JSON from 100 devices at QoS 1 (v = 20 + 5 sin(i/50),
lines l1..l4, so the `where:` below keeps every message: it measures the cost of
evaluating the condition, not of sending less).

  plain      the integration tests' default telemetry route
  where      the same plus  where: '$.v > 0 and {line} != "l9"'
  aggregate  the same plus  aggregate: { window: 1s, fields: { n: count,
             v_avg: avg $.v, v_max: max $.v } }

Ingest rate: N / (time from starting the publisher to sluice's /metrics showing all N
processed). Processed = sluice_mqtt_messages_total + sluice_filtered_total +
sluice_deadband_suppressed_total + sluice_aggregate_late_total, summed over routes.
This is exact: src/ingest.c counts every message the route committed to the spool in
sluice_mqtt_messages_total, including the ones an aggregate route folded into an
accumulator (MAPPER_AGGREGATED); a message is counted once, after its commit, and
dropped ones (filtered / suppressed / late) in their own counters. /metrics is polled
every --poll seconds, so the end time is late by at most that much.
CPU: utime+stime of sluice (all threads) from /proc over the same interval.

Usage: bench/edge.py [--build DIR] [--count N] [--json FILE]
Not a test: meson test never runs it. See bench/run-edge.sh.
"""
import argparse
import json
import os
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import pipeline as pl  # noqa: E402  (its /proc helpers, loadgen wrapper and phase())

h = None

ROUTE = """
  - name: telemetry
    match: factory/{site}/{line}/{device}/telemetry
    format: json
    topic: telemetry.{site}
    key: "{device}"
    timestamp: $.ts
    lane: bulk
    headers: { line: "{line}" }
"""
VARIANTS = {
    "plain": ROUTE,
    "where": ROUTE + """    where: '$.v > 0 and {line} != "l9"'\n""",
    "aggregate": ROUTE + """    aggregate:
      window: 1s
      fields:
        n: { fn: count }
        v_avg: { fn: avg, field: $.v }
        v_max: { fn: max, field: $.v }
""",
}
PROCESSED = ("sluice_mqtt_messages_total", "sluice_filtered_total",
             "sluice_deadband_suppressed_total", "sluice_aggregate_late_total")


def metrics(url):
    """{metric name: value summed over labels} for the counters we need."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name.startswith("sluice_"):
            try:
                out[name] = out.get(name, 0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return out


def processed(m):
    return int(sum(m.get(k, 0) for k in PROCESSED))


def bench_variant(wd, name, n, opts):
    mosq = pl.mosquitto(wd)
    kafka = h.MockKafka(wd, topics=[f"{pl.TOPIC}:{opts.partitions}"])
    cfg = h.sluice_config(wd, f"edge-{name}", mosq.url, kafka.bootstrap,
                          routes=VARIANTS[name], http_listen=f"127.0.0.1:{h.free_port()}")
    sl = h.Sluice(wd, cfg).start()
    url = sl.http_url("/metrics")
    m0 = metrics(url)
    if processed(m0) != 0:
        raise AssertionError(f"sluice processed {processed(m0)} before publishing")
    pid = sl.proc.pid
    a = pl.Sample(pid)
    t0 = time.monotonic()
    pub = pl.start_loadgen(wd, mosq.url, n, 1, opts.phase_timeout)
    try:
        return measure(wd, name, n, opts, sl, url, pid, a, t0, pub)
    finally:
        if pub.poll() is None:      # the loadgen is not owned by the Workdir: stop it
            pub.kill()
            pub.wait(timeout=10)


def measure(wd, name, n, opts, sl, url, pid, a, t0, pub):
    deadline = t0 + opts.phase_timeout
    while True:
        m = metrics(url)
        got = processed(m)
        if got >= n:
            t1 = time.monotonic()
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: only {got}/{n} processed after "
                                 f"{opts.phase_timeout}s: {json.dumps(m)}")
        if sl.proc.poll() is not None:
            raise AssertionError(f"{name}: sluice exited {sl.proc.returncode}")
        time.sleep(opts.poll)
    b = pl.Sample(pid)
    lg = pl.loadgen_result(wd, pub, 30)
    rc = sl.stop()
    out = {"variant": name, "n": n, "processed": got, "seconds": t1 - t0,
           "rate": n / (t1 - t0), "publish_rate": lg.get("rate"), "exit": rc,
           "counters": {k: m.get(k, 0) for k in PROCESSED + (
               "sluice_aggregate_windows_total", "sluice_spool_appends_total",
               "sluice_kafka_delivered_total")}}
    d = pl.sluice_delta(a, b, n)
    out.update({k: d[k] for k in ("cpu_s", "cpu_s_per_100k", "threads_cpu_s",
                                  "peak_rss_mib")})
    return out


def report(r, opts):
    f = pl.fmt
    rows = [("variant", "msgs/s", "x plain", "cpu s/100k", "seconds", "publish/s",
             "spool appends", "agg windows", "bg CPUs")]
    base = r.get("plain", {}).get("rate")
    for v in VARIANTS:
        x = r.get(v)
        if x is None:
            continue
        if "error" in x:
            rows.append((v, "ERROR: " + x["error"][:70], "", "", "", "", "", "", ""))
            continue
        c = x["counters"]
        rows.append((v, f(x["rate"]), f(pl.ratio(x["rate"], base), ".2f"),
                     f(x["cpu_s_per_100k"], ".2f"), f(x["seconds"], ".2f"),
                     f(x["publish_rate"]), f(c["sluice_spool_appends_total"]),
                     f(c["sluice_aggregate_windows_total"]),
                     f(x.get("background_busy_cpus"), ".2f")))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    print()
    print(f"sluice edge-rule ingest benchmark: N={opts.count} per variant, QoS 1, "
          f"{pl.PAYLOAD}-byte JSON, 100 devices, {os.cpu_count()} CPUs, "
          f"{opts.partitions} partitions, loadgen --max-inflight {pl.MAX_INFLIGHT}")
    for i, row in enumerate(rows):
        print("  ".join(str(c).ljust(w) if j == 0 else str(c).rjust(w)
                        for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    summary = {}
    for v in ("where", "aggregate"):
        val = pl.ratio(r.get(v, {}).get("rate"), base)
        verdict = "n/a" if val is None else \
            f"target >= 0.9: {'PASS' if val >= 0.9 else 'MISS'}"
        print(f"{v + ' / plain (msgs/s)':<28} {f(val, '.2f'):>6}   {verdict}")
        summary[f"{v}/plain"] = val
    for v in VARIANTS:
        if "threads_cpu_s" in r.get(v, {}):
            print(f"{v} CPU by thread (s): {json.dumps(r[v]['threads_cpu_s'])}")
    return summary


def main():
    global h
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--count", type=int, default=30_000, help="messages per variant")
    ap.add_argument("--partitions", type=int, default=64)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--phase-timeout", type=int, default=120)
    ap.add_argument("--poll", type=float, default=0.05, help="/metrics poll interval, s")
    ap.add_argument("--max-inflight", type=int, default=100)
    ap.add_argument("--json", help="write all results here")
    opts = ap.parse_args()
    opts.build = os.path.abspath(opts.build)
    pl.MAX_INFLIGHT = opts.max_inflight
    os.environ["SLUICE_BUILD"] = opts.build
    os.environ["SLUICE_BIN"] = os.path.join(opts.build, "sluice")
    sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
    import harness
    h = pl.h = harness
    for exe in ("sluice", "tools/sluice-loadgen", "tools/sluice-mock-kafka"):
        if not os.access(os.path.join(opts.build, exe), os.X_OK):
            sys.exit(f"edge.py: {opts.build}/{exe} missing; build first")
    r = {}
    started = time.monotonic()
    for v in opts.variants.split(","):
        r[v] = pl.phase(f"edge-{v}", bench_variant, v, opts.count, opts)
    r["wall_seconds"] = time.monotonic() - started
    r["summary"] = report(r, opts)
    r["params"] = {"count": opts.count, "partitions": opts.partitions, "qos": 1,
                   "payload_bytes": pl.PAYLOAD, "devices": 100, "cpus": os.cpu_count(),
                   "max_inflight": pl.MAX_INFLIGHT}
    print(f"\nwall time {r['wall_seconds']:.0f} s")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(r, f, indent=2)
    return 1 if any(isinstance(x, dict) and "error" in x for x in r.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
