#!/usr/bin/env python3
"""End-to-end pipeline benchmark: sluice against the baselines, all in one run.

Everything shares this machine (publisher, Mosquitto, the bridge, the Kafka mock and
the checker), so absolute numbers say little; the ratios between phases of the same
run are what to compare. Every phase gets a fresh Mosquitto and a fresh mock Kafka
cluster (the checker reads from the beginning of the topic).

Phases (N messages of 200-byte JSON from 100 devices, sluice-loadgen defaults):
  bare-q1, bare-q0   bench/bare_sub (a bare Paho MQTTAsync subscriber) at QoS 1 / 0
  naive              mosquitto_sub -v -q 1 -t 'factory/#' | kcat -P -K ' ' (no spool)
  sluice-q1/-q0      sluice, durable spool, counted by sluice-kcheck
  backlog            Kafka down, BACKLOG records into the spool, Kafka up, drain rate

The five rate phases run --rounds times, round after round; ratios are the median of
the per-round ratios. Rates are end to end: from starting the publisher to the
consumer (bare_sub, or sluice-kcheck with --linger-ms 0) having seen all N. The drain
is timed from `up all` to sluice_kafka_delivered_total reaching BACKLOG; the consumer
checks the records afterwards (--drain-check during: beside the drain, timed by it).
CPU is utime+stime from /proc (sluice: delta over the phase; naive: mosquitto_sub +
kcat, bare: bare_sub, from wait4 rusage). Disk bytes are /proc/<sluice>/io
write_bytes.

Usage: bench/pipeline.py [--build DIR] [--count N] [--backlog N] [--json FILE] ...
Not a test: meson test never runs it. See bench/run-pipeline.sh.
"""
import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAYLOAD = 200          # sluice-loadgen's default --size: payloads are exactly this long
TOPIC = "telemetry.berlin"

h = None               # the integration harness, imported once SLUICE_BUILD is set


# ---- /proc helpers ----------------------------------------------------------------

def proc_cpu(pid):
    """utime+stime of a process (all its threads), seconds; None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_threads(pid):
    """{tid: (comm, cpu seconds)} for every thread of pid."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
            comm = s[s.index("(") + 1:s.rindex(")")]
            fields = s.rsplit(")", 1)[1].split()
            out[int(tid)] = (comm, (int(fields[11]) + int(fields[12])) / CLK_TCK)
        except (OSError, ValueError):
            pass
    return out


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_io(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            return {k: int(v) for k, v in (line.split(":") for line in f)}
    except OSError:
        return {}


def ctx_switches(pid):
    return (proc_status(pid, "voluntary_ctxt_switches") or 0) + \
        (proc_status(pid, "nonvoluntary_ctxt_switches") or 0)


def wait4_deadline(proc, timeout):
    """Reaps proc with wait4 (its rusage: CPU of all its threads) within timeout;
    kills it at the deadline. Returns (returncode, cpu seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru.ru_utime + ru.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise AssertionError(f"{proc.args[0]} did not exit within {timeout}s")
        time.sleep(0.01)


# ---- processes --------------------------------------------------------------------

class Lines:
    """Reads a child's stdout on a thread; each line is stamped with its arrival time."""

    def __init__(self, stream):
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.t.start()

    def _run(self, stream):
        for line in stream:
            self.q.put((time.monotonic(), line.rstrip("\n")))
        self.q.put((time.monotonic(), None))

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            try:
                t, line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"output ended while waiting for {what}")
            if pred(line):
                return t, line


class Proc:
    """A Popen owned by a Workdir: stopped (TERM, then KILL) at the end of the phase."""

    def __init__(self, wd, args, **kw):
        self.p = subprocess.Popen(args, **kw)
        wd.own(self)

    def stop(self):
        if self.p.returncode is None and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class TimedChecker:
    """sluice-kcheck with --linger-ms 0, its summary line time-stamped on arrival."""

    def __init__(self, wd, bootstrap, expect, timeout, sluice_checks):
        args = [h.tool("sluice-kcheck"), "--bootstrap", bootstrap, "--topic", TOPIC,
                "--expect", str(expect), "--timeout", str(timeout), "--linger-ms", "0"]
        if sluice_checks:
            args += ["--check-headers", "--check-timestamp", "--key-is-device"]
        self.errf = open(wd.file("kcheck.err"), "w")
        self.proc = Proc(wd, args, stdout=subprocess.PIPE, stderr=self.errf, text=True)
        self.lines = Lines(self.proc.p.stdout)
        self.timeout = timeout

    def result(self):
        t, line = self.lines.wait(lambda l: l.startswith("{"), self.timeout + 30,
                                  "the kcheck summary")
        return t, json.loads(line)


def mosquitto(wd, log_subscribe=False):
    m = h.Mosquitto(wd)
    if log_subscribe:
        with open(m.conf, "a") as f:
            f.write("".join(f"log_type {t}\n" for t in
                            ("error", "warning", "notice", "information", "subscribe")))
    return m.start()


MAX_INFLIGHT = 100


def start_loadgen(wd, url, n, qos, timeout):
    return h.loadgen(url, n, devices=100, qos=qos, background=True, wd=wd,
                     extra=("--timeout", str(timeout), "--max-inflight", str(MAX_INFLIGHT)))


def loadgen_result(wd, pub, timeout):
    rc = pub.wait(timeout=timeout)
    with open(wd.file("loadgen.out")) as f:
        text = f.read()
    if rc != 0:
        raise AssertionError(f"loadgen exited {rc}: {text}")
    kv = dict(tok.split("=", 1) for line in text.splitlines()
              if line.startswith("published=") for tok in line.split())
    return {k: float(v) for k, v in kv.items()}


def cpu_jiffies():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]                 # idle + iowait
    return sum(v[:8]) - idle, sum(v[:8])


def background_busy(window=1.0):
    """CPUs' worth of work done by others just before a phase (nothing of ours runs):
    0.0 on a quiet machine, up to os.cpu_count()."""
    b0, t0 = cpu_jiffies()
    time.sleep(window)
    b1, t1 = cpu_jiffies()
    return (b1 - b0) / max(1, t1 - t0) * os.cpu_count()


def phase(name, fn, *a):
    wd = h.Workdir(f"bench-{name}")
    ok = False
    h.log(f"== {name}")
    load = background_busy()       # other work on the machine skews every number
    try:
        res = fn(wd, *a)
        res["background_busy_cpus"] = load
        ok = True
        h.log(f"{name}: {json.dumps(res)}")
        return res
    except Exception as e:
        h.log(f"{name} FAILED: {e}")
        return {"error": str(e)}
    finally:
        wd.stop_all()
        wd.cleanup(ok)


# ---- phases -----------------------------------------------------------------------

def bench_bare(wd, n, qos, opts):
    mosq = mosquitto(wd)
    sub = Proc(wd, [os.path.join(opts.build, "bench", "bare_sub"), mosq.url, "factory/#",
                    str(qos), str(n), str(opts.phase_timeout)],
               stdout=subprocess.PIPE, text=True)
    lines = Lines(sub.p.stdout)
    lines.wait(lambda l: l == "subscribed", 20, "bare_sub to subscribe")
    t0 = time.monotonic()
    pub = start_loadgen(wd, mosq.url, n, qos, opts.phase_timeout)
    t1, line = lines.wait(lambda l: l.startswith("received="), opts.phase_timeout + 10,
                          "bare_sub's result")
    got = int(line.split()[0].split("=")[1])
    lg = loadgen_result(wd, pub, 30)
    _, cpu = wait4_deadline(sub.p, 30)
    return {"n": n, "qos": qos, "received": got, "seconds": t1 - t0,
            "rate": got / (t1 - t0), "publish_rate": lg.get("rate"),
            "cpu_s": cpu, "cpu_s_per_100k": cpu * 1e5 / n, "bare_sub": line}


def bench_naive(wd, n, opts):
    mosq = mosquitto(wd, log_subscribe=True)
    kafka = h.MockKafka(wd, topics=[f"{TOPIC}:{opts.partitions}"])
    check = TimedChecker(wd, kafka.bootstrap, n, opts.phase_timeout, sluice_checks=False)
    cid = f"bench-naive-{os.getpid()}"
    sub = Proc(wd, ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mosq.port), "-i", cid,
                    "-v", "-q", "1", "-t", "factory/#", "-C", str(n)],
               stdout=subprocess.PIPE)
    kcat_err = open(wd.file("kcat.err"), "w")
    kcat = Proc(wd, ["kcat", "-P", "-b", kafka.bootstrap, "-t", TOPIC, "-K", " "],
                stdin=sub.p.stdout, stderr=kcat_err)
    sub.p.stdout.close()       # kcat alone holds the pipe: it sees EOF when the sub exits
    logpath = mosq.logpath
    h.wait_for(lambda: f"{cid} 1 factory/#" in open(logpath, errors="replace").read(), 20,
               "mosquitto_sub to subscribe")
    cpu0 = (proc_cpu(sub.p.pid) or 0) + (proc_cpu(kcat.p.pid) or 0)
    t0 = time.monotonic()
    pub = start_loadgen(wd, mosq.url, n, 1, opts.phase_timeout)
    t1, res = check.result()
    lg = loadgen_result(wd, pub, 30)
    rc_sub, cpu_sub = wait4_deadline(sub.p, 30)
    rc_kcat, cpu_kcat = wait4_deadline(kcat.p, 30)
    cpu = cpu_sub + cpu_kcat - cpu0
    return {"n": n, "seconds": t1 - t0, "rate": res["distinct"] / (t1 - t0),
            "lost": res["lost"], "duplicates": res["duplicates"],
            "reordered": res["reordered"], "cpu_s": cpu, "cpu_s_per_100k": cpu * 1e5 / n,
            "cpu_mosquitto_sub_s": cpu_sub, "cpu_kcat_s": cpu_kcat,
            "publish_rate": lg.get("rate"), "exit": [rc_sub, rc_kcat]}


KAFKA_PROPS = {}      # --kafka-prop K=V: kafka.properties for every sluice phase


def sluice_setup(wd, name, mosq, kafka):
    extra = ""
    if KAFKA_PROPS:
        extra = "  properties:\n" + "".join(f"    {k}: \"{v}\"\n"
                                            for k, v in KAFKA_PROPS.items())
    cfg = h.sluice_config(wd, name, mosq.url, kafka.bootstrap,
                          http_listen=f"127.0.0.1:{h.free_port()}", extra_kafka=extra)
    return h.Sluice(wd, cfg).start()


class Sample:
    """What /proc says about sluice at one moment."""

    def __init__(self, pid):
        self.pid = pid
        self.t = time.monotonic()
        self.cpu = proc_cpu(pid)
        self.threads = proc_threads(pid)
        self.io = proc_io(pid)
        self.ctx = ctx_switches(pid)
        self.hwm_kib = proc_status(pid, "VmHWM")
        self.rss_kib = proc_status(pid, "VmRSS")
        self.rss_split_mib = {k: round((proc_status(pid, k) or 0) / 1024, 1)
                              for k in ("RssAnon", "RssFile", "RssShmem")}

    def thread_split(self, before, pid):
        """CPU seconds per thread over [before, self], summed by thread name
        (sluice-forward, sluice-flusher, MQTTAsync_rcv, rdk:...). 'main' is the
        process's first thread; threads left unnamed are 'sluice#1', 'sluice#2' ...
        in creation (tid) order."""
        out = {}
        k = 0
        for tid in sorted(self.threads):
            comm, cpu = self.threads[tid]
            if tid == pid:
                comm = "main"
            elif comm == "sluice":
                k += 1
                comm = f"sluice#{k}"
            d = cpu - before.threads.get(tid, (comm, 0.0))[1]
            out[comm] = out.get(comm, 0.0) + d
        return dict(sorted(((k, round(v, 2)) for k, v in out.items()),
                           key=lambda kv: -kv[1]))


def sluice_delta(a, b, n):
    cpu = b.cpu - a.cpu
    wb = b.io.get("write_bytes", 0) - a.io.get("write_bytes", 0)
    return {"cpu_s": cpu, "cpu_s_per_100k": cpu * 1e5 / n,
            "threads_cpu_s": b.thread_split(a, b.pid),
            "ctx_switches_per_msg": (b.ctx - a.ctx) / n,
            "write_bytes": wb, "disk_bytes_per_payload_byte": wb / (n * PAYLOAD),
            "syscw_per_msg": (b.io.get("syscw", 0) - a.io.get("syscw", 0)) / n,
            "peak_rss_mib": b.hwm_kib / 1024 if b.hwm_kib else None,
            "rss_split_mib_at_end": b.rss_split_mib}


def spool_files(sl):
    """Sizes of the spool database and its WAL / shared-memory index, bytes."""
    base = sl.config.replace(".yaml", "-spool/spool.db")
    return {os.path.basename(p): os.path.getsize(p)
            for p in (base, base + "-wal", base + "-shm") if os.path.exists(p)}


def bench_sluice(wd, n, qos, opts):
    mosq = mosquitto(wd)
    kafka = h.MockKafka(wd, topics=[f"{TOPIC}:{opts.partitions}"])
    sl = sluice_setup(wd, f"bench-q{qos}", mosq, kafka)
    pid = sl.proc.pid
    check = TimedChecker(wd, kafka.bootstrap, n, opts.phase_timeout, sluice_checks=True)
    a = Sample(pid)
    t0 = time.monotonic()
    pub = start_loadgen(wd, mosq.url, n, qos, opts.phase_timeout)
    t1, res = check.result()
    b = Sample(pid)
    files = spool_files(sl)
    skipped = metric_total(sl, "sluice_spool_skipped_total")
    lg = loadgen_result(wd, pub, 30)
    rc = sl.stop()
    out = {"n": n, "qos": qos, "seconds": t1 - t0, "rate": res["distinct"] / (t1 - t0),
           "lost": res["lost"], "duplicates": res["duplicates"],
           "reordered": res["reordered"], "missing_headers": res["missing_headers"],
           "bad_timestamp": res["bad_timestamp"], "key_mismatch": res["key_mismatch"],
           "publish_rate": lg.get("rate"), "exit": rc, "spool_files": files,
           "skipped_sqlite": skipped}
    out.update(sluice_delta(a, b, n))
    return out


def spool_total(sl):
    out = sl.spool_stats()
    for line in out.stdout.splitlines():
        if line.startswith("total"):
            return int(line.split()[1])
    raise AssertionError(f"spool stats: no total row: {out.stdout!r} {out.stderr!r}")


def metric_total(sl, name):
    """A metric summed over its samples (labels ignored), from sluice's /metrics."""
    with urllib.request.urlopen(sl.http_url("/metrics"), timeout=10) as r:
        body = r.read().decode()
    return sum(float(line.split()[-1]) for line in body.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def delivered_total(sl):
    """sluice_kafka_delivered_total summed over routes: records Kafka acknowledged."""
    return metric_total(sl, "sluice_kafka_delivered_total")


def drain_slices(timeline, width=0.5):
    """The acknowledged rate in consecutive slices of `width` seconds after the first
    acknowledgement: where a drain's average falls short of its steady rate."""
    start = next((i for i, (_, d) in enumerate(timeline) if d > 0), None)
    if start is None:
        return []
    out, (t0, d0) = [], timeline[start]
    for t, d in timeline[start + 1:]:
        if t - t0 >= width:
            out.append(round((d - d0) / (t - t0)))
            t0, d0 = t, d
    return out


def bench_backlog(wd, n, opts):
    mosq = mosquitto(wd)
    # The mock cluster keeps only ~5 MiB per partition: the consumer that checks the
    # backlog after the drain needs room for all of it (1M x ~450 B in 256 x 5 MiB).
    parts = opts.backlog_partitions if opts.drain_check == "after" else opts.partitions
    kafka = h.MockKafka(wd, topics=[f"{TOPIC}:{parts}"])
    sl = sluice_setup(wd, "bench-backlog", mosq, kafka)
    pid = sl.proc.pid
    kafka.cmd("down all")
    a = Sample(pid)
    t0 = time.monotonic()
    pub = start_loadgen(wd, mosq.url, n, 1, opts.backlog_timeout)
    lg = loadgen_result(wd, pub, opts.backlog_timeout + 10)
    t_pub = time.monotonic()
    # `sluice spool stats` costs ~0.5 s of CPU on a 1M-row spool: poll every 2 s, so
    # the poll itself takes little from the bridge (t_spooled is late by <= 2 s).
    h.wait_for(lambda: spool_total(sl) >= n, opts.backlog_timeout, "the spool to hold all",
               interval=2.0)
    t_spooled = time.monotonic()
    b = Sample(pid)
    files_full = spool_files(sl)
    spool = sl.spool_stats().stdout
    h.log(f"spool:\n{spool}")
    kafka.cmd("up all")
    t_up = time.monotonic()
    busy_up = cpu_jiffies()
    mock_up = proc_cpu(kafka.proc.pid) or 0.0
    # The drain is the spool emptying into Kafka: timed by sluice's own count of
    # records Kafka acknowledged (sluice_kafka_delivered_total), polled every 50 ms.
    # The consumer that proves them complete and in order reads afterwards, so it does
    # not take the CPU the drain is measured on (--drain-check during puts it back
    # beside the drain, as an end-to-end rate).
    check = None
    if opts.drain_check == "during":
        check = TimedChecker(wd, kafka.bootstrap, n, opts.backlog_timeout,
                             sluice_checks=True)
    first = [None]
    timeline = []     # (seconds since `up all`, records acknowledged), every poll

    def acked():
        d = delivered_total(sl)
        now = time.monotonic()
        timeline.append((now - t_up, d))
        if d > 0 and first[0] is None:
            first[0] = now
        return d >= n
    h.wait_for(acked, opts.backlog_timeout, "Kafka to acknowledge the backlog",
               interval=0.05)
    t_acked = time.monotonic()
    busy_acked = cpu_jiffies()
    mock_acked = proc_cpu(kafka.proc.pid) or 0.0
    c = Sample(pid)
    if check is None:
        check = TimedChecker(wd, kafka.bootstrap, n, opts.backlog_timeout,
                             sluice_checks=True)
    t_end, res = check.result()
    if opts.drain_check == "after":
        t_end = t_acked
    files_end = spool_files(sl)
    rc = sl.stop()
    out = {"n": n, "ingest_seconds": t_spooled - t0, "ingest_rate": n / (t_spooled - t0),
           "publish_rate": lg.get("rate"), "publish_seconds": t_pub - t0,
           "drain_check": opts.drain_check, "acked_seconds": t_acked - t_up,
           "drain_seconds": t_end - t_up, "drain_rate": res["distinct"] / (t_end - t_up),
           "lost": res["lost"], "duplicates": res["duplicates"],
           "reordered": res["reordered"], "missing_headers": res["missing_headers"],
           "exit": rc, "spool_stats": spool, "spool_files_full": files_full,
           "spool_files_drained": files_end}
    if first[0] is not None and t_acked > first[0]:
        out["reconnect_wait_s"] = first[0] - t_up
        out["drain_rate_after_first_send"] = n / (t_acked - first[0])
    # What the whole machine and the mock cluster spent while Kafka drained the
    # backlog: near os.cpu_count() busy CPUs, the drain is bound by the machine.
    out["drain_busy_cpus"] = ((busy_acked[0] - busy_up[0]) /
                              max(1, busy_acked[1] - busy_up[1]) * os.cpu_count())
    out["drain_mock_cpu_s"] = mock_acked - mock_up
    out["drain_timeline"] = drain_slices(timeline)
    ing = sluice_delta(a, b, n)
    drn = sluice_delta(b, c, n)
    out["ingest"] = ing
    out["drain"] = drn
    out["peak_rss_mib"] = c.hwm_kib / 1024 if c.hwm_kib else None
    return out


# ---- report -----------------------------------------------------------------------

def fmt(v, spec=".0f"):
    return "-" if v is None else format(v, spec)


def ratio(a, b):
    return a / b if a is not None and b else None


def report(r, opts):
    g = lambda ph, k: r.get(ph, {}).get(k)     # noqa: E731
    rows = [("phase", "msgs/s", "lost", "dup", "reord", "cpu s/100k", "peak RSS MiB",
             "disk B/payload B", "bg CPUs")]
    for ph in ("bare-q1", "bare-q0", "naive", "sluice-q1", "sluice-q0"):
        if ph not in r:
            continue
        if "error" in r[ph]:
            rows.append((ph, "ERROR: " + r[ph]["error"][:60], "", "", "", "", "", "", ""))
            continue
        rows.append((ph, fmt(g(ph, "rate")), fmt(g(ph, "lost"), "d"),
                     fmt(g(ph, "duplicates"), "d"), fmt(g(ph, "reordered"), "d"),
                     fmt(g(ph, "cpu_s_per_100k"), ".2f"), fmt(g(ph, "peak_rss_mib"), ".1f"),
                     fmt(g(ph, "disk_bytes_per_payload_byte"), ".2f"),
                     fmt(g(ph, "background_busy_cpus"), ".2f")))
    bl = r.get("backlog")
    if bl and "error" not in bl:
        rows.append(("backlog ingest", fmt(bl["ingest_rate"]), "", "", "",
                     fmt(bl["ingest"]["cpu_s_per_100k"], ".2f"),
                     fmt(bl["ingest"]["peak_rss_mib"], ".1f"),
                     fmt(bl["ingest"]["disk_bytes_per_payload_byte"], ".2f"),
                     fmt(bl.get("background_busy_cpus"), ".2f")))
        rows.append(("backlog drain", fmt(bl["drain_rate"]), fmt(bl["lost"], "d"),
                     fmt(bl["duplicates"], "d"), fmt(bl["reordered"], "d"),
                     fmt(bl["drain"]["cpu_s_per_100k"], ".2f"), fmt(bl["peak_rss_mib"], ".1f"),
                     fmt(bl["drain"]["disk_bytes_per_payload_byte"], ".2f"), ""))
    elif bl:
        rows.append(("backlog", "ERROR: " + bl["error"][:60], "", "", "", "", "", "", ""))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    print()
    print(f"sluice pipeline benchmark: N={opts.count} x {opts.rounds} rounds "
          f"(each phase's median round shown; lost/dup/reord summed over rounds), "
          f"backlog {opts.backlog}, "
          f"{PAYLOAD}-byte JSON, 100 devices, {os.cpu_count()} CPUs, "
          f"{opts.partitions} partitions, loadgen --max-inflight {MAX_INFLIGHT}")
    for i, row in enumerate(rows):
        print("  ".join(str(c).ljust(w) if j == 0 else str(c).rjust(w)
                        for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))

    drain = bl.get("drain_rate") if bl else None
    peak = max([v for v in (g("sluice-q1", "peak_rss_mib"), g("sluice-q0", "peak_rss_mib"),
                            bl.get("peak_rss_mib") if bl else None) if v is not None],
               default=None)
    rounds = r.get("rounds", [r])

    def per_round(a, ka, b, kb):
        """The ratio a/b of every round that has both phases: each pair ran minutes
        apart at most, so the machine's mood is shared."""
        return [ratio(x.get(a, {}).get(ka), x.get(b, {}).get(kb)) for x in rounds
                if ratio(x.get(a, {}).get(ka), x.get(b, {}).get(kb)) is not None]

    def med(v):
        v = sorted(v)
        return None if not v else v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] +
                                                                      v[len(v) // 2]) / 2
    spreads = {}

    def rr(name, a, ka, b, kb):
        v = per_round(a, ka, b, kb)
        if len(v) > 1:
            spreads[name] = v
        return med(v)
    checks = [
        ("QoS1 sluice / naive pipeline (msgs/s)",
         rr("QoS1 sluice / naive pipeline (msgs/s)", "sluice-q1", "rate", "naive", "rate"),
         ">=", 0.9),
        ("QoS0 sluice / bare Paho QoS0 (msgs/s)",
         rr("QoS0 sluice / bare Paho QoS0 (msgs/s)", "sluice-q0", "rate", "bare-q0", "rate"),
         ">=", 0.8),
        ("QoS1 sluice / bare Paho QoS1 (msgs/s)",
         rr("QoS1 sluice / bare Paho QoS1 (msgs/s)", "sluice-q1", "rate", "bare-q1", "rate"),
         None, None),
        ("backlog drain / sluice QoS1 ingest", ratio(drain, g("sluice-q1", "rate")),
         ">=", 10),
        ("CPU s per 100k: sluice QoS1 / naive",
         rr("CPU s per 100k: sluice QoS1 / naive", "sluice-q1", "cpu_s_per_100k", "naive",
            "cpu_s_per_100k"), "<=", 1.3),
        ("peak RSS MiB (max of sluice phases)", peak, "<=", 32),
        ("disk bytes per payload byte (QoS1)", g("sluice-q1", "disk_bytes_per_payload_byte"),
         None, None),
    ]
    print("(bg CPUs: CPUs' worth of other work on the machine in the second before the "
          "phase; well above 0, something else competed and the rates are low)")
    print()
    summary = {}
    for what, v, op, target in checks:
        if v is None:
            verdict = "n/a"
        elif op is None:
            verdict = ""
        else:
            good = v >= target if op == ">=" else v <= target
            verdict = f"target {op} {target}: {'PASS' if good else 'MISS'}"
        extra = ""
        if what in spreads:
            extra = (f"   (median of {len(spreads[what])} rounds: "
                     f"{', '.join(format(x, '.2f') for x in spreads[what])})")
        print(f"{what:<40} {fmt(v, '.2f'):>8}   {verdict}{extra}")
        summary[what] = {"value": v, "op": op, "target": target,
                         "rounds": spreads.get(what)}
    for ph in ("sluice-q1", "sluice-q0"):
        if ph in r and "threads_cpu_s" in r[ph]:
            print(f"{ph} CPU by thread (s): {json.dumps(r[ph]['threads_cpu_s'])}")
            print(f"{ph} RSS at end (MiB): {json.dumps(r[ph]['rss_split_mib_at_end'])}; "
                  f"spool files (bytes): {json.dumps(r[ph]['spool_files'])}")
    if bl and "drain" in bl:
        print(f"backlog ingest CPU by thread (s): {json.dumps(bl['ingest']['threads_cpu_s'])}")
        print(f"backlog drain CPU by thread (s): {json.dumps(bl['drain']['threads_cpu_s'])}")
        print(f"backlog RSS (MiB) when full: {json.dumps(bl['ingest']['rss_split_mib_at_end'])}"
              f", drained: {json.dumps(bl['drain']['rss_split_mib_at_end'])}")
        print(f"backlog spool files (bytes) full: {json.dumps(bl['spool_files_full'])}, "
              f"drained: {json.dumps(bl['spool_files_drained'])}")
        print(f"backlog drain: {bl['drain_busy_cpus']:.2f} of {os.cpu_count()} CPUs busy "
              f"(whole machine); mock cluster {bl['drain_mock_cpu_s']:.2f} CPU s, sluice "
              f"{bl['drain']['cpu_s']:.2f} CPU s")
        if "reconnect_wait_s" in bl:
            print(f"backlog: {bl['reconnect_wait_s']:.1f} s from `up all` to the first "
                  f"acknowledged record; drain rate after it "
                  f"{bl['drain_rate_after_first_send']:.0f}/s")
        if bl.get("drain_timeline"):
            print("backlog drain rate per 0.5 s after the first acknowledgement (/s): "
                  + " ".join(str(x) for x in bl["drain_timeline"]))
        print(f"backlog drain timed {'by acknowledgements, checked after' if bl.get('drain_check') == 'after' else 'by the consumer, running beside it'}")
    return summary


def main():
    global h
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--count", type=int, default=100_000, help="messages per phase")
    ap.add_argument("--backlog", type=int, default=1_000_000,
                    help="records for the backlog drain (0 = skip)")
    ap.add_argument("--partitions", type=int, default=64, help=f"partitions of {TOPIC}")
    ap.add_argument("--phases", default="bare-q1,bare-q0,naive,sluice-q1,sluice-q0,backlog")
    ap.add_argument("--rounds", type=int, default=3,
                    help="times the rate phases run, one round after another; ratios "
                         "are medians over rounds (these machines are noisy)")
    ap.add_argument("--phase-timeout", type=int, default=120,
                    help="seconds any one measured phase may take")
    ap.add_argument("--backlog-timeout", type=int, default=300)
    ap.add_argument("--backlog-partitions", type=int, default=256,
                    help=f"partitions of {TOPIC} in the backlog phase with --drain-check "
                         "after (the mock keeps ~5 MiB per partition)")
    ap.add_argument("--drain-check", choices=("after", "during"), default="after",
                    help="when the consumer checking the drained backlog runs: after "
                         "Kafka acknowledged it all (the drain is timed by sluice's "
                         "delivered counter), or during the drain (timed by the "
                         "consumer, which then competes for the CPU)")
    ap.add_argument("--max-inflight", type=int, default=100,
                    help="sluice-loadgen --max-inflight; its default of 1000 makes Paho "
                         "publish QoS 1 5-10x slower on this machine (publisher-bound)")
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--kafka-prop", action="append", default=[], metavar="K=V",
                    help="a kafka.properties entry for sluice (repeatable), e.g. linger.ms=50")
    opts = ap.parse_args()
    for kv in opts.kafka_prop:
        k, sep, v = kv.partition("=")
        if not sep:
            ap.error(f"--kafka-prop {kv!r}: want K=V")
        KAFKA_PROPS[k] = v
    opts.build = os.path.abspath(opts.build)
    global MAX_INFLIGHT
    MAX_INFLIGHT = opts.max_inflight

    os.environ["SLUICE_BUILD"] = opts.build
    os.environ["SLUICE_BIN"] = os.path.join(opts.build, "sluice")
    sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
    import harness
    h = harness
    for exe in ("sluice", "tools/sluice-loadgen", "tools/sluice-kcheck",
                "tools/sluice-mock-kafka", "bench/bare_sub"):
        if not os.access(os.path.join(opts.build, exe), os.X_OK):
            sys.exit(f"pipeline.py: {opts.build}/{exe} missing; build first")

    phases = opts.phases.split(",")
    n = opts.count
    r = {}
    started = time.monotonic()
    # The rate phases run --rounds times, round after round, so every ratio has a
    # baseline measured minutes apart at most; the table shows each phase's median
    # round and the verdicts use the median of the per-round ratios.
    rounds = []
    for k in range(opts.rounds):
        x = {}
        if "bare-q1" in phases:
            x["bare-q1"] = phase("bare-q1", bench_bare, n, 1, opts)
        if "bare-q0" in phases:
            x["bare-q0"] = phase("bare-q0", bench_bare, n, 0, opts)
        if "naive" in phases:
            x["naive"] = phase("naive", bench_naive, n, opts)
        if "sluice-q1" in phases:
            x["sluice-q1"] = phase("sluice-q1", bench_sluice, n, 1, opts)
        if "sluice-q0" in phases:
            x["sluice-q0"] = phase("sluice-q0", bench_sluice, n, 0, opts)
        rounds.append(x)
    for ph in ("bare-q1", "bare-q0", "naive", "sluice-q1", "sluice-q0"):
        got = [x[ph] for x in rounds if ph in x]
        ok = sorted((y for y in got if "error" not in y), key=lambda y: y["rate"])
        if ok:
            r[ph] = dict(ok[len(ok) // 2] if len(ok) % 2 else ok[len(ok) // 2 - 1])
            for key in ("lost", "duplicates", "reordered"):   # every round's, summed
                if key in r[ph]:
                    r[ph][key] = sum(y.get(key, 0) for y in ok)
            if len(ok) < len(got):
                r[ph]["error"] = f"{len(got) - len(ok)} of {len(got)} rounds failed"
        elif got:
            r[ph] = got[0]
    r["rounds"] = rounds
    if "backlog" in phases and opts.backlog > 0:
        r["backlog"] = phase("backlog", bench_backlog, opts.backlog, opts)
    r["wall_seconds"] = time.monotonic() - started
    r["summary"] = report(r, opts)
    r["params"] = {"count": n, "backlog": opts.backlog, "partitions": opts.partitions,
                   "payload_bytes": PAYLOAD, "devices": 100, "cpus": os.cpu_count(),
                   "max_inflight": MAX_INFLIGHT}
    print(f"\nwall time {r['wall_seconds']:.0f} s")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(r, f, indent=2)
    failed = [k for k, v in r.items() if isinstance(v, dict) and "error" in v] + \
        [k for x in rounds for k, v in x.items() if "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
