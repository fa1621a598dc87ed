"""/metrics, /healthz and /readyz against a real run.

Every scrape must pass `promtool check metrics` (when promtool is installed) and a
strict parser of the text format 0.0.4, and its values must equal what the run did:
  - a route removed while sluice was away: the K messages the broker still queues for
    the old subscription are dropped as no_route, exactly K;
  - N messages published: delivered{telemetry} == mqtt_messages{telemetry} == N, and
    the latency histogram counted N;
  - Kafka down, M more published: the spool holds exactly M, kafka_connected 0, and
    /readyz stays 200 (buffering is normal); Kafka up: all N + M delivered, spool empty;
  - mosquitto stopped: /readyz 503 with mqtt "disconnected", /healthz still 200,
    `sluice health` exits 1;
  - a second bridge on the same http.listen fails fast with exit 1;
  - the MQTT password (from ${VAR}) never appears in any scrape or in the log.
"""
import math
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request

import harness as h

SECRET = "canary-pw-5c1f2e-never-print-me"
PROMTOOL = shutil.which("promtool")
SCRAPES = []      # every body we saw, for the secret check

ROUTE_TELEMETRY = """
  - name: telemetry
    match: factory/{site}/{line}/{device}/telemetry
    format: json
    topic: telemetry.{site}
    key: "{device}"
    timestamp: $.ts
    lane: bulk
    headers: { line: "{line}" }
"""
ROUTE_LEGACY = """
  - name: legacy
    match: legacy/{device}
    topic: legacy
    key: "{device}"
    lane: urgent
"""

# No proxy from the environment: the endpoints are on loopback.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url):
    try:
        with OPENER.open(url, timeout=10) as r:
            body = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        status = e.code
    SCRAPES.append(body)
    return status, body


# ---- a strict parser of the Prometheus text format 0.0.4 -------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE_RE = re.compile(rf"^({NAME})(?:\{{(.*)\}})? (\S+)(?: (-?\d+))?$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_value(s):
    if s in ("+Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s), f"bad value {s!r}"
    return float(s)


def parse_labels(s, line):
    labels, pos = {}, 0
    while pos < len(s):
        m = LABEL_RE.match(s, pos)
        assert m, f"bad labels at {pos} in {line!r}"
        assert m.group(1) not in labels, f"duplicate label in {line!r}"
        labels[m.group(1)] = re.sub(r"\\(.)", lambda x: "\n" if x.group(1) == "n"
                                    else x.group(1), m.group(2))
        pos = m.end()
        if pos < len(s):
            assert s[pos] == ",", f"expected ',' at {pos} in {line!r}"
            pos += 1
    return labels


def parse(text):
    """Returns {name: {frozenset(labels.items()): value}}. Fails on anything the
    format does not allow: samples outside the block of their family, a family
    declared twice, TYPE after samples, duplicate series, bad escapes, and histograms
    that are not cumulative or whose +Inf bucket differs from _count."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    types, helps, done, out = {}, set(), set(), {}
    current = None
    for line in text[:-1].split("\n"):
        assert line != "", "empty line in the exposition"
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(NAME, name) and name not in helps, f"HELP {name} twice"
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            assert len(parts) == 4 and parts[3] in TYPES, f"bad TYPE line {line!r}"
            name = parts[2]
            assert name not in types and name not in done, f"TYPE {name} twice or late"
            assert name in helps, f"TYPE {name} without HELP first"
            if current:
                done.add(current)
            types[name], current = parts[3], name
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.group(1), parse_labels(m.group(2) or "", line), m.group(3)
        family = name
        if current and types[current] == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                if name == current + suffix:
                    family = current
        assert family == current, f"sample {name} outside its family block ({current})"
        key = frozenset(labels.items())
        series = out.setdefault(name, {})
        assert key not in series, f"duplicate series {line!r}"
        series[key] = parse_value(value)
    for name, t in types.items():
        if t != "histogram":
            continue
        buckets = sorted(((float(dict(k)["le"].replace("Inf", "inf")), v)
                          for k, v in out.get(name + "_bucket", {}).items()))
        assert buckets and math.isinf(buckets[-1][0]), f"{name}: no +Inf bucket"
        assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), f"{name}: not cumulative"
        assert buckets[-1][1] == out[name + "_count"][frozenset()], f"{name}: +Inf != _count"
    return out


def value(m, name, **labels):
    return m.get(name, {}).get(frozenset(labels.items()))


def total(m, name):
    return sum(m.get(name, {}).values())


def scrape(sl):
    status, body = get(sl.http_url("/metrics"))
    assert status == 200, (status, body)
    if PROMTOOL:
        res = subprocess.run([PROMTOOL, "check", "metrics"], input=body, text=True,
                             capture_output=True, timeout=30)
        assert res.returncode == 0, f"promtool check metrics: {res.stdout}{res.stderr}"
    return parse(body)


def wait_metrics(sl, cond, timeout, what):
    last = {}

    def ok():
        last["m"] = scrape(sl)
        return cond(last["m"])
    try:
        h.wait_for(ok, timeout, what, interval=0.25)
    except AssertionError:
        m = last.get("m", {})
        h.log("last scrape: " + ", ".join(f"{n}={dict(s)}" for n, s in sorted(m.items())
                                          if not n.endswith("_bucket")))
        raise
    return last["m"]


def mosquitto_pub(mosq, topic, count):
    lines = "".join(f"{i}\n" for i in range(count))
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosq.port), "-q", "1",
                    "-V", "mqttv5", "-t", topic, "-l"], input=lines, text=True, check=True,
                   timeout=30)


def test_metrics(wd):
    if PROMTOOL:
        h.log(f"checking every scrape with {PROMTOOL} and the strict parser")
    else:
        h.log("promtool not found (Debian package prometheus): strict parser only")
    os.environ["SLUICE_METRICS_PW"] = SECRET
    creds = "  username: sluice\n  password: ${SLUICE_METRICS_PW}\n"
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)

    # 1. A bridge with a legacy route; prove its subscription is live, then stop it.
    cfg = h.sluice_config(wd, "metrics", mosq.url, kafka.bootstrap, extra_mqtt=creds,
                          routes=ROUTE_TELEMETRY + ROUTE_LEGACY)
    sl = h.Sluice(wd, cfg).start()
    mosquitto_pub(mosq, "legacy/dev-0", 1)
    wait_metrics(sl, lambda m: value(m, "sluice_mqtt_messages_total", route="legacy") == 1,
                 30, "the legacy route to count its probe message")
    assert sl.stop() == 0

    # 2. The legacy route is gone; the broker's session still holds its subscription and
    # queues K messages for it, which the new config drops as no_route, exactly K.
    k = 7
    mosquitto_pub(mosq, "legacy/dev-1", k)
    h.sluice_config(wd, "metrics", mosq.url, kafka.bootstrap, extra_mqtt=creds,
                    routes=ROUTE_TELEMETRY)
    sl.start()
    base = sl.http_url()
    m = wait_metrics(sl, lambda m: value(m, "sluice_dropped_total", reason="no_route") == k,
                     30, f"{k} no_route drops")
    assert value(m, "sluice_build_info", version=re.search(
        r"sluice (\S+) starting", sl.log_since_start()).group(1)) == 1
    assert set(dict(s).get("route") for s in m["sluice_mqtt_messages_total"]) == {"telemetry"}

    # 3. Ready and healthy; a second bridge on the same port fails fast.
    h.wait_for(lambda: get(base + "/readyz")[0] == 200, 30, "/readyz 200")
    status, body = get(base + "/readyz")
    assert status == 200 and '"mqtt":"connected"' in body and '"spool":"ok"' in body, body
    assert get(base + "/healthz") == (200, "ok\n")
    assert get(base + "/nope")[0] == 404
    hostport = base[len("http://"):]
    other = h.sluice_config(wd, "clash", mosq.url, kafka.bootstrap, http_listen=hostport)
    res = subprocess.run([h.SLUICE, "run", "-c", other], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert "address already in use" in res.stderr.lower(), res.stderr
    # `sluice health -c` reads http.listen: the clash config names the real port.
    res = subprocess.run([h.SLUICE, "health", "-c", other], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0 and '"mqtt":"connected"' in res.stdout, res
    res = subprocess.run([h.SLUICE, "health", "--url", base + "/healthz"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout == "ok\n", res

    # 4. N messages: counted in, delivered, timed.
    n = 500
    h.loadgen(mosq.url, n, devices=20, qos=1)
    m = wait_metrics(sl, lambda m:
                     value(m, "sluice_kafka_delivered_total", route="telemetry") == n and
                     total(m, "sluice_spool_records") == 0, 60, f"{n} delivered")
    assert value(m, "sluice_mqtt_messages_total", route="telemetry") == n
    assert value(m, "sluice_delivery_latency_seconds_count") == n
    assert value(m, "sluice_delivery_latency_seconds_sum") >= 0
    assert value(m, "sluice_forward_bytes_total") > 0
    assert value(m, "sluice_kafka_connected") == 1 and value(m, "sluice_mqtt_connected") == 1
    assert value(m, "sluice_spool_appends_total") == n
    assert value(m, "sluice_dropped_total", reason="no_route") == k
    assert total(m, "sluice_dead_letter_total") == 0
    assert value(m, "sluice_config_reload_failures_total") == 0
    assert {dict(s)["lane"] for s in m["sluice_spool_records"]} >= {"bulk", "urgent"}

    # 5. Kafka down: the next M wait in the spool; readiness does not depend on Kafka.
    kafka.cmd("down all")
    mm = 300
    h.loadgen(mosq.url, mm, devices=20, qos=1, start=n)
    m = wait_metrics(sl, lambda m: total(m, "sluice_spool_records") == mm and
                     value(m, "sluice_kafka_connected") == 0, 60,
                     f"{mm} records spooled and kafka_connected 0")
    assert value(m, "sluice_spool_records", lane="bulk") == mm
    assert value(m, "sluice_mqtt_messages_total", route="telemetry") == n + mm
    assert value(m, "sluice_kafka_delivered_total", route="telemetry") == n
    assert value(m, "sluice_spool_bytes") > 0
    assert value(m, "sluice_spool_oldest_age_seconds", lane="bulk") >= 0
    eta = value(m, "sluice_spool_drain_eta_seconds")
    assert eta == -1 or eta > 0, eta
    status, body = get(base + "/readyz")
    assert status == 200 and '"kafka":"disconnected"' in body, (status, body)

    # 6. Kafka back: everything delivered, the spool empty again.
    kafka.cmd("up all")
    m = wait_metrics(sl, lambda m:
                     value(m, "sluice_kafka_delivered_total", route="telemetry") == n + mm and
                     total(m, "sluice_spool_records") == 0 and
                     value(m, "sluice_kafka_connected") == 1, 120, f"{n + mm} delivered")
    assert value(m, "sluice_delivery_latency_seconds_count") == n + mm
    assert value(m, "sluice_spool_oldest_age_seconds", lane="bulk") == 0
    assert value(m, "sluice_spool_drain_eta_seconds") == 0

    # 7. A SIGHUP with a broken config is counted; a good one afterwards is not.
    with open(cfg, "a") as f:
        f.write("no_such_section: 1\n")
    sl.proc.send_signal(signal.SIGHUP)
    wait_metrics(sl, lambda m: value(m, "sluice_config_reload_failures_total") == 1, 30,
                 "one reload failure")
    h.sluice_config(wd, "metrics", mosq.url, kafka.bootstrap, extra_mqtt=creds,
                    routes=ROUTE_TELEMETRY)
    sl.proc.send_signal(signal.SIGHUP)
    sl.wait_log(r"reload done", 30)
    m = scrape(sl)
    assert value(m, "sluice_config_reload_failures_total") == 1
    assert value(m, "sluice_kafka_delivered_total", route="telemetry") == n + mm

    # 8. MQTT gone: not ready, still alive.
    mosq.stop()
    h.wait_for(lambda: get(base + "/readyz")[0] == 503, 30, "/readyz 503")
    status, body = get(base + "/readyz")
    assert '"mqtt":"disconnected"' in body and '"spool":"ok"' in body, body
    assert get(base + "/healthz") == (200, "ok\n")
    assert value(scrape(sl), "sluice_mqtt_connected") == 0
    res = subprocess.run([h.SLUICE, "health", "-c", other], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 1 and '"mqtt":"disconnected"' in res.stdout, res

    assert sl.stop() == 0
    # 9. The secret was in use (the config resolved it) but never shown.
    assert subprocess.run([h.SLUICE, "check", "-c", cfg], capture_output=True,
                          timeout=30).returncode == 0
    assert all(SECRET not in body for body in SCRAPES), "the password leaked into a scrape"
    assert SECRET not in sl.log_text(), "the password leaked into the log"
    h.log(f"{len(SCRAPES)} responses checked; drops, deliveries and spool gauges exact")


if __name__ == "__main__":
    h.run(test_metrics)
