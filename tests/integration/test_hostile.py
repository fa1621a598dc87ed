"""Hostile MQTT input through mosquitto into a json route, interleaved with normal
traffic: a 2 MB payload, a 64 KB topic (routed and unrouted), invalid UTF-8, JSON
nested 100,000 deep, and 100,000 distinct topics and keys published as fast as the
broker takes them.

Checks: sluice never crashes; its memory stays bounded (VmHWM from /proc, bound
below); every undecodable payload becomes exactly one dead letter with an `error`
header; the normal records keep flowing with exact counts (0 lost, all distinct).
The broker is configured to take 3 MiB packets (mosquitto's default max_packet_size
is unlimited, but be explicit: the test must not depend on a distro default).
"""
import json
import os
import subprocess
import threading

import harness as h

RSS_BOUND_MIB = 80          # VmHWM of sluice over the whole run (measured 43-54 MiB)
ROUNDS = 3                  # hostile rounds, spread over the normal traffic
NORMAL = 20000              # normal records on telemetry.berlin
WIDE = 100000               # one message per distinct topic/key on telemetry.wide


class RssWatch(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.max_rss_kib = 0
        self.hwm_kib = 0
        self.done = threading.Event()

    def read(self):
        vals = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    vals[k] = int(v.split()[0])
        return vals

    def run(self):
        while not self.done.wait(0.1):
            try:
                v = self.read()
            except OSError:
                return
            self.max_rss_kib = max(self.max_rss_kib, v.get("VmRSS", 0))
            self.hwm_kib = max(self.hwm_kib, v.get("VmHWM", 0))


def mqtt_pub(port, topic, payload_file, qos=1):
    res = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", str(qos),
                          "-i", f"hostile-{os.getpid()}", "-t", topic, "-f", payload_file],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"mosquitto_pub {topic[:60]}: {res.stderr}"


def test_hostile(wd):
    mosq = h.Mosquitto(wd)
    with open(mosq.conf, "a") as f:
        f.write("max_packet_size 3145728\n")
    mosq.start()
    kafka = h.MockKafka(wd)
    sl = h.Sluice(wd, h.sluice_config(wd, "hostile", mosq.url, kafka.bootstrap,
                                      http_listen="")).start()
    watch = RssWatch(sl.proc.pid)
    watch.start()

    # The hostile payloads (files, so mosquitto_pub sends them byte for byte).
    files = {}

    def payload(name, data):
        files[name] = wd.file(name)
        with open(files[name], "wb") as f:
            f.write(data)
    payload("big-json", json.dumps({"pad": "x" * (2 << 20)}).encode())
    payload("bad-utf8", b'{"device":"x","v":"\xff\xfe\xc0\xaf\xed\xa0\x80"}')
    payload("deep", b"[" * 100000 + b"]" * 100000)
    payload("small", b'{"v":1}')
    long_dev = "d" * 65000
    hostile = [  # (topic, file, outcome)
        ("factory/berlin/l1/big/telemetry", "big-json", "dead"),     # Kafka: too large
        ("factory/berlin/l1/utf8/telemetry", "bad-utf8", "dead"),    # decode
        ("factory/berlin/l1/deep/telemetry", "deep", "dead"),        # decode: depth
        (f"factory/berlin/l1/{long_dev}/telemetry", "small", "other"),  # 64 KB key
        ("nomatch/" + "x" * 65000, "small", "dropped"),              # no route
    ]
    n_dead = ROUNDS * sum(1 for t in hostile if t[2] == "dead")
    n_other = ROUNDS * sum(1 for t in hostile if t[2] == "other")

    dump = wd.file("kafka-dump.jsonl")
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin", "sluice.dead-letter"],
                      expect=NORMAL, timeout=240,
                      extra=["--dump", dump, "--linger-ms", "3000"])
    wide_check = h.Checker(kafka.bootstrap, ["telemetry.wide"], expect=WIDE, timeout=240)
    normal = h.loadgen(mosq.url, NORMAL, devices=100, qos=1, rate=2000, background=True,
                       wd=wd)
    wide = subprocess.Popen([h.tool("sluice-loadgen"), "--url", mosq.url, "--count", str(WIDE),
                             "--devices", str(WIDE), "--qos", "1", "--rate", "0",
                             "--client-id", "wide", "--max-inflight", "1000",
                             "--topic-fmt", "factory/wide/l{line}/{device}/telemetry"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for r in range(ROUNDS):
        for topic, name, _ in hostile:
            mqtt_pub(mosq.port, topic, files[name])
            assert sl.proc.poll() is None, f"sluice died after {name}"
        h.log(f"hostile round {r + 1} sent")
    out, _ = wide.communicate(timeout=300)
    assert wide.returncode == 0, f"wide loadgen: {out}"
    h.log(f"wide loadgen: {out.strip()}")
    assert normal.wait(timeout=120) == 0, "normal loadgen failed"

    res = check.result()
    wres = wide_check.result()
    assert sl.proc.poll() is None, "sluice died"
    watch.done.set()
    watch.join(timeout=5)
    final = watch.read()
    hwm_mib = max(watch.hwm_kib, final["VmHWM"]) / 1024
    assert sl.stop() == 0, "unclean stop"

    assert res["lost"] == 0 and res["distinct"] == NORMAL, res
    assert wres["lost"] == 0 and wres["distinct"] == WIDE and wres["keys"] == WIDE, wres

    dead, other = [], 0
    with open(dump) as f:
        for line in f:
            rec = json.loads(line)
            if rec["topic"] == "sluice.dead-letter":
                dead.append(rec)
            elif "seq" not in rec["value"]:
                other += 1
    reasons = sorted({d["headers"].get("error", "<none>")[:80] for d in dead})
    h.log(f"dead letters: {len(dead)} (expected {n_dead}); reasons: {reasons}")
    h.log(f"other records on telemetry.berlin: {other} (expected {n_other})")
    assert all(d["headers"].get("error") for d in dead), "a dead letter without error header"
    assert len(dead) == n_dead, f"{len(dead)} dead letters, expected {n_dead}"
    assert other == n_other, f"{other} 64 KB-key records, expected {n_other}"

    # ASan keeps freed memory in a quarantine (256 MiB by default), so under `make asan`
    # the figure says little: only a runaway is caught there.
    bound = RSS_BOUND_MIB * (8 if h.is_sanitized(h.SLUICE) else 1)
    h.log(f"sluice VmHWM {hwm_mib:.1f} MiB, max sampled VmRSS "
          f"{watch.max_rss_kib / 1024:.1f} MiB (bound {bound} MiB)")
    assert hwm_mib < bound, f"VmHWM {hwm_mib:.1f} MiB over the {bound} MiB bound"


if __name__ == "__main__":
    h.run(test_hostile)
