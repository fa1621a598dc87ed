"""Helpers shared by the edge buffer policy tests (lanes, drop_oldest, backpressure,
disk_full, dead_letters): routes for three lanes, the drop log lines, the metrics."""
import json
import os
import re
import subprocess
import urllib.error
import urllib.request

import harness as h

DEVICES = 100

ROUTES_3 = """
  - name: telemetry
    match: factory/{site}/{line}/{device}/telemetry
    format: json
    topic: %(bulk)s
    key: "{device}"
    timestamp: $.ts
    lane: bulk
  - name: status
    match: factory/{site}/{line}/{device}/status
    format: json
    topic: %(normal)s
    key: "{device}"
    timestamp: $.ts
    lane: normal
  - name: alarms
    match: factory/{site}/{line}/{device}/alarm
    format: json
    topic: %(urgent)s
    key: "{device}"
    timestamp: $.ts
    lane: urgent
"""

LANES_3 = """
  urgent: { priority: 0 }
  normal: { priority: 5 }
  bulk: { priority: 9 }
"""


def routes(bulk, normal, urgent):
    return ROUTES_3 % {"bulk": bulk, "normal": normal, "urgent": urgent}


def fmt(kind):
    return ["--topic-fmt", "factory/berlin/l{line}/{device}/" + kind]


def index(rec):
    """The loadgen message index of a dumped record: (seq - 1) * D + device."""
    v = json.loads(rec["value"])
    return (v["seq"] - 1) * DEVICES + int(v["device"].split("-")[1])


def read_dump(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def drops(log_text, reason="spool full"):
    """Sum of the aggregate drop lines, per lane."""
    out = {}
    for m in re.finditer(r"spool: dropped (\d+) records \(%s, lane (\S+)\)" % re.escape(reason),
                         log_text):
        out[m.group(2)] = out.get(m.group(2), 0) + int(m.group(1))
    return out


def spool_stats(sl):
    """{lane: records} from `sluice spool stats`."""
    res = sl.spool_stats()
    assert res.returncode == 0, res.stderr
    lanes = {}
    for line in res.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[0] not in ("total", "file"):
            lanes[parts[0]] = int(parts[1])
    return lanes


def metric(url, name):
    """The sum of a metric's samples on /metrics (labels ignored), or None."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def readyz(base):
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def dead_letters(sl):
    res = subprocess.run([h.SLUICE, "spool", "dead-letters", "-c", sl.config],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()[1:]
