"""Integration harness: real mosquitto, librdkafka's mock cluster in its own process
(sluice-mock-kafka), the sluice binary, and the project's load generator and Kafka
checker. Every wait is a condition with a deadline; nothing sleeps blindly.

Environment (set by meson): SLUICE_BIN, SLUICE_BUILD, SLUICE_SOURCE.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD = os.environ.get("SLUICE_BUILD", "build")
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(BUILD, "sluice"))
TOOLS = os.path.join(BUILD, "tools")


def tool(name):
    return os.path.join(TOOLS, name)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_for(cond, timeout, what, interval=0.05):
    """Polls cond() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Workdir:
    def __init__(self, name):
        self.path = tempfile.mkdtemp(prefix=f"sluice-{name}-")
        self.owned = []          # things with stop(), stopped in reverse at the end

    def own(self, thing):
        self.owned.append(thing)
        return thing

    def stop_all(self):
        for thing in reversed(self.owned):
            try:
                thing.stop()
            except Exception as e:  # cleanup must go on
                log(f"cleanup: {type(thing).__name__}: {e}")

    def file(self, name):
        return os.path.join(self.path, name)

    def cleanup(self, ok):
        if ok and not os.environ.get("SLUICE_KEEP"):
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            log(f"work directory kept: {self.path}")


class Mosquitto:
    """A real broker on a free loopback port, persistence on, no queue limits (a
    persistent session must hold everything while sluice is away)."""

    def __init__(self, wd, port=None):
        self.wd = wd
        self.port = port or free_port()
        # Files per broker (by port): two brokers sharing a persistence file race on
        # its rename at autosave, and mosquitto 2.0.11 then crashes (double free).
        self.conf = wd.file(f"mosquitto-{self.port}.conf")
        self.data = wd.file(f"mosquitto-{self.port}-data")
        self.logpath = wd.file(f"mosquitto-{self.port}.log")
        os.makedirs(self.data, exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(
                f"listener {self.port} 127.0.0.1\n"
                "allow_anonymous true\n"
                "user root\n"
                "persistence true\n"
                f"persistence_location {self.data}/\n"
                "autosave_interval 1\n"
                "max_queued_messages 0\n"
                "max_queued_bytes 0\n"
                "max_inflight_messages 100\n"
                "set_tcp_nodelay true\n"
            )
        self.proc = None
        wd.own(self)

    @property
    def url(self):
        return f"tcp://127.0.0.1:{self.port}"

    def start(self):
        logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=logf,
                                     stderr=subprocess.STDOUT)
        wait_for(lambda: port_open(self.port) or self.proc.poll() is not None, 10,
                 "mosquitto to listen")
        assert self.proc.poll() is None, "mosquitto exited at start"
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=15)
        self.proc = None


class MockKafka:
    """librdkafka's mock cluster in its own process; faults are commands on stdin."""

    def __init__(self, wd, brokers=3, partitions=8, topics=()):
        wd.own(self)
        args = [tool("sluice-mock-kafka"), "--brokers", str(brokers), "--partitions",
                str(partitions)]
        for t in topics:
            args += ["--topic", t]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        line = self.proc.stdout.readline().strip()
        assert line.startswith("BOOTSTRAP "), f"mock kafka said {line!r}"
        self.bootstrap = line.split(" ", 1)[1]

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer != "ok":
            raise AssertionError(f"mock kafka: {line!r} -> {answer!r}")

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def sluice_config(wd, name, mqtt_url, bootstrap, extra_mqtt="", routes=None, lanes=None,
                  spool_extra="", http_listen="127.0.0.1:0", extra_kafka=""):
    """Writes a config for a test and returns its path. http_listen defaults to port 0
    (the kernel picks a free one, which sluice logs: see Sluice.http_url), so tests
    that run several bridges never collide on the default 9187."""
    routes = routes or """
  - name: telemetry
    match: factory/{site}/{line}/{device}/telemetry
    format: json
    topic: telemetry.{site}
    key: "{device}"
    timestamp: $.ts
    lane: bulk
    headers: { line: "{line}" }
"""
    lanes = lanes or """
  urgent: { priority: 0 }
  bulk: { priority: 9 }
"""
    path = wd.file(f"{name}.yaml")
    with open(path, "w") as f:
        f.write(f"""instance: {name}
mqtt:
  url: {mqtt_url}
  client_id: sluice-{name}
  clean_start: false
  session_expiry: 1d
  keepalive: 10s
{extra_mqtt}
kafka:
  bootstrap: {bootstrap}
{extra_kafka}
spool:
  path: {wd.file(name + '-spool/spool.db')}
{spool_extra}
lanes:{lanes}
http:
  listen: "{http_listen}"
log:
  level: info
routes:{routes}
""")
    return path


class Sluice:
    """The bridge under test, with its log in the work directory."""

    def __init__(self, wd, config, name="sluice"):
        self.wd = wd
        self.config = config
        self.logpath = wd.file(f"{name}.log")
        self.proc = None
        self.starts = 0
        wd.own(self)

    def start(self, wait_connected=True):
        self.logf = open(self.logpath, "ab")
        self.logf.write(f"---- start {self.starts} ----\n".encode())
        self.logf.flush()
        self.mark = os.path.getsize(self.logpath)
        self.proc = subprocess.Popen([SLUICE, "run", "-c", self.config], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        self.starts += 1
        if wait_connected:
            # The SUBACK, not the CONNACK: sluice logs "connected" before it subscribes,
            # and the broker drops, yet acknowledges to loadgen, what a test publishes
            # before the subscription exists (test_subscribe_ready).
            self.wait_log(r"ingest: subscribed", 20)
        return self

    def log_since_start(self):
        with open(self.logpath, "rb") as f:
            f.seek(self.mark)
            return f.read().decode(errors="replace")

    def log_text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, pattern, timeout):
        rx = re.compile(pattern)

        def seen():
            if self.proc.poll() is not None:
                raise AssertionError(f"sluice exited ({self.proc.returncode}) while waiting "
                                     f"for /{pattern}/:\n{self.log_since_start()[-3000:]}")
            return rx.search(self.log_since_start())
        return wait_for(seen, timeout, f"sluice log /{pattern}/")

    def http_url(self, path="", timeout=20):
        """The base URL of this run's /metrics, /healthz and /readyz, from its log."""
        m = self.wait_log(r"http: serving .* on (http://\S+)", timeout)
        return m.group(1) + path

    def metric(self, name, labels):
        """The value of one labelled sample of this run's /metrics, or None."""
        with urllib.request.urlopen(self.http_url("/metrics"), timeout=10) as r:
            body = r.read().decode()
        want = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
        for line in body.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return None

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("sluice did not stop within 30 s of SIGTERM")
        return self.proc.returncode if self.proc else None

    def spool_stats(self):
        out = subprocess.run([SLUICE, "spool", "stats", "-c", self.config],
                             capture_output=True, text=True, timeout=30)
        return out

    def spool_total(self):
        """The records waiting in the spool: the total row of `sluice spool stats`."""
        out = self.spool_stats()
        assert out.returncode == 0, out.stderr
        for line in out.stdout.splitlines():
            parts = line.split()
            if parts[:1] == ["total"]:
                return int(parts[1])
        raise AssertionError(f"no total in spool stats: {out.stdout!r}")


def is_sanitized(path):
    """True for an AddressSanitizer build, which uses far more memory."""
    with open(path, "rb") as f:
        return b"AddressSanitizer" in f.read()


def assert_delivered(res, total, duplicates=None):
    """A Checker's result: all `total` messages arrived, none reordered per key, each
    with its headers; `duplicates`, when given, is the exact count there must be."""
    assert res["lost"] == 0, res
    assert res["reordered"] == 0, res
    assert res["distinct"] == total, res
    assert res["missing_headers"] == 0, res
    if duplicates is not None:
        assert res["duplicates"] == duplicates, res


def assert_check_print_hides(config, secret):
    """`sluice check --print` succeeds, shows <redacted>, and never the secret."""
    printed = subprocess.run([SLUICE, "check", "-c", config, "--print"],
                             capture_output=True, text=True, timeout=30)
    assert printed.returncode == 0, printed.stderr
    assert secret not in printed.stdout + printed.stderr, "check --print shows the secret"
    assert "<redacted>" in printed.stdout, printed.stdout


class Checker:
    """sluice-kcheck consuming while production runs (the mock cluster keeps only the
    last few MiB per partition, so verification must be live)."""

    def __init__(self, bootstrap, topics, expect, timeout=120, extra=()):
        args = [tool("sluice-kcheck"), "--bootstrap", bootstrap, "--expect", str(expect),
                "--timeout", str(timeout), "--check-headers", "--check-timestamp",
                "--key-is-device"]
        for t in topics:
            args += ["--topic", t]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def result(self, timeout=300):
        out, err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise AssertionError(f"kcheck failed ({self.proc.returncode}): {err}")
        lines = [line for line in out.splitlines() if line.startswith("{")]
        assert lines, f"kcheck printed no summary: {out!r} {err!r}"
        res = json.loads(lines[-1])
        log(f"kcheck: {json.dumps(res)}")
        return res


def loadgen(url, count, devices=100, qos=1, rate=0, start=0, extra=(), background=False,
            wd=None):
    args = [tool("sluice-loadgen"), "--url", url, "--count", str(count), "--devices",
            str(devices), "--qos", str(qos), "--rate", str(rate), "--start", str(start)]
    args += list(extra)
    if background:
        out = open(wd.file("loadgen.out"), "ab") if wd else subprocess.DEVNULL
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise AssertionError(f"loadgen failed: {res.stdout} {res.stderr}")
    log(f"loadgen: {res.stdout.strip()}")
    return res.stdout


SKIP = 77     # meson's exit code for a skipped test


def run(test):
    """Runs one test function with a work directory; prints a plain result line.
    A test that cannot run here calls sys.exit(SKIP) with its reason printed."""
    name = test.__name__
    wd = Workdir(name)
    result = "0 passed, 1 failed"
    code = 1
    try:
        test(wd)
        result, code = "1 passed, 0 failed", 0
    except SystemExit as e:
        if e.code != SKIP:
            raise
        result, code = "0 passed, 0 failed, 1 skipped", SKIP
    finally:
        wd.stop_all()
        wd.cleanup(code != 1)
        print(f"{name}: {result}", flush=True)
    sys.exit(code)
