"""MQTT over TLS against a real mosquitto TLS listener.

Certificates are made with the openssl CLI in the work directory: a CA, a server
certificate for 127.0.0.1/localhost (subjectAltName), a client certificate (mutual
TLS), an expired server certificate, one from a CA sluice does not trust, and one for
another host name. One broker serves them all on separate listeners
(per_listener_settings):

  plain     anonymous, plain TCP: sluice-loadgen publishes here (it has no TLS options)
  good      TLS, require_certificate, password_file: the bridge under test
  expired / untrusted / wronghost   TLS with the bad certificates

Checks: the good bridge (CA verification on by default, client certificate, password
from password_file) connects and every message reaches Kafka; a bridge pointed at
each bad listener is refused with a log line naming the certificate problem, keeps
running and keeps retrying; the planted password appears in no log and not in
`sluice check --print`.
"""
import os
import re
import secrets
import subprocess

import harness as h

# Paho checks the host name itself after the handshake (X509_check_host, then
# X509_check_ip_asc) and fails with "TCP/TLS connect failure" without anything on
# OpenSSL's error queue, so ingest's ssl_error_cb never fires and sluice's log names
# no reason of its own for a wrong-host certificate. ingest_connect_failed now logs
# the likely one ("certificate may not match host H ... hostname verification
# failed?") when a TLS connect fails with nothing from OpenSSL; False would accept
# the bare refusal again.
WRONGHOST_REASON_LOGGED = True


def openssl(wd, *args):
    res = subprocess.run(["openssl", *args], cwd=wd.path, capture_output=True, text=True,
                         timeout=60)
    if res.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)}: {res.stderr}")
    return res.stdout


def make_ca(wd, name):
    openssl(wd, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_cert(wd, name, ca, san, client=False, expired=False):
    """A key and a certificate signed by ca. Expired certificates need `openssl ca`
    (OpenSSL 3.0's `x509 -req` cannot set dates in the past)."""
    openssl(wd, "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
    usage = "clientAuth" if client else "serverAuth"
    ext = wd.file(f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n")
        if san:
            f.write(f"subjectAltName={san}\n")
    if not expired:
        openssl(wd, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey",
                f"{ca}.key", "-CAcreateserial", "-days", "2", "-sha256", "-extfile", ext,
                "-out", f"{name}.crt")
        return
    db = wd.file(f"{name}-ca")
    os.makedirs(db, exist_ok=True)
    open(os.path.join(db, "index.txt"), "w").close()
    with open(os.path.join(db, "serial"), "w") as f:
        f.write("1000\n")
    cnf = wd.file(f"{name}-ca.cnf")
    with open(cnf, "w") as f:
        f.write(f"""[ ca ]
default_ca = here
[ here ]
dir = {db}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir
certificate = {wd.file(ca + '.crt')}
private_key = {wd.file(ca + '.key')}
default_md = sha256
policy = anything
copy_extensions = none
[ anything ]
commonName = supplied
""")
    openssl(wd, "ca", "-batch", "-config", cnf, "-in", f"{name}.csr", "-out", f"{name}.crt",
            "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
            "-extfile", ext, "-notext")


class TlsMosquitto(h.Mosquitto):
    """The harness broker, with a plain listener for the publisher and TLS listeners
    each serving one certificate."""

    def __init__(self, wd, tls_listeners, password_file):
        super().__init__(wd)
        self.tls_ports = {}
        with open(self.conf) as f:
            base = f.read()
        # Every listener block carries its own auth settings.
        base = base.replace(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n", "")
        lines = ["per_listener_settings true", base,
                 f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        for name, (cert, mtls) in tls_listeners.items():
            port = h.free_port()
            self.tls_ports[name] = port
            lines += [f"listener {port} 127.0.0.1",
                      f"cafile {wd.file('ca.crt')}",
                      f"certfile {wd.file(cert + '.crt')}",
                      f"keyfile {wd.file(cert + '.key')}",
                      "tls_version tlsv1.2"]
            if mtls:
                lines += ["require_certificate true", "use_identity_as_username false",
                          f"password_file {password_file}", "allow_anonymous false"]
            else:
                lines += ["allow_anonymous true"]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        super().start()
        for name, port in self.tls_ports.items():
            h.wait_for(lambda: h.port_open(port), 10, f"mosquitto TLS listener {name}")
        return self

    def log_text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def connections_on(self, port):
        return len(re.findall(rf"New connection from \S+ on port {port}\.", self.log_text()))


def tls_config(wd, name, port, kafka, client=True, extra=""):
    tls = f"""  username: bridge
  password_file: {wd.file('mqtt-password')}
  tls:
    ca_file: {wd.file('ca.crt')}
"""
    if client:
        tls += f"""    cert_file: {wd.file('client.crt')}
    key_file: {wd.file('client.key')}
"""
    return h.sluice_config(wd, name, f"ssl://127.0.0.1:{port}", kafka.bootstrap,
                           extra_mqtt=tls + extra, http_listen="")


def test_tls(wd):
    password = "pw-" + secrets.token_hex(12)     # planted: must never be printed
    make_ca(wd, "ca")
    make_ca(wd, "rogue-ca")
    make_cert(wd, "server", "ca", "IP:127.0.0.1,DNS:localhost")
    make_cert(wd, "client", "ca", None, client=True)
    make_cert(wd, "expired", "ca", "IP:127.0.0.1,DNS:localhost", expired=True)
    make_cert(wd, "untrusted", "rogue-ca", "IP:127.0.0.1,DNS:localhost")
    make_cert(wd, "wronghost", "ca", "DNS:other.example,IP:10.9.9.9")
    dates = openssl(wd, "x509", "-in", "expired.crt", "-noout", "-enddate")
    assert "2020" in dates, dates

    with open(wd.file("mqtt-password"), "w") as f:
        f.write(password + "\n")
    os.chmod(wd.file("mqtt-password"), 0o600)
    pwfile = wd.file("mosquitto.passwd")
    res = subprocess.run(["mosquitto_passwd", "-c", "-b", pwfile, "bridge", password],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr

    mosq = TlsMosquitto(wd, {"good": ("server", True), "expired": ("expired", False),
                             "untrusted": ("untrusted", False),
                             "wronghost": ("wronghost", False)}, pwfile).start()
    kafka = h.MockKafka(wd)

    # The good bridge, at debug level so that any slip of the password would show.
    good_cfg = tls_config(wd, "good", mosq.tls_ports["good"], kafka)
    with open(good_cfg) as f:
        text = f.read().replace("level: info", "level: debug")
    with open(good_cfg, "w") as f:
        f.write(text)
    h.assert_check_print_hides(good_cfg, password)

    good = h.Sluice(wd, good_cfg, name="good").start()
    total = 3000
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=total, timeout=120)
    h.loadgen(mosq.url, total, devices=50, qos=1)
    res = check.result()
    assert res["lost"] == 0 and res["distinct"] == total, res

    # Without a client certificate the mTLS listener refuses: sluice says so and retries.
    nocert = h.Sluice(wd, tls_config(wd, "nocert", mosq.tls_ports["good"], kafka,
                                     client=False), name="nocert").start(wait_connected=False)

    # The three bad servers, one bridge each, all at once.
    bad = {}
    for name in ("expired", "untrusted", "wronghost"):
        bad[name] = h.Sluice(wd, tls_config(wd, name, mosq.tls_ports[name], kafka),
                             name=name).start(wait_connected=False)
    reasons = {
        "expired": r"(?i)certificate.*(expired|verify)|verify.*certificate",
        "untrusted": r"(?i)certificate.*(verify|unknown|issuer|self.signed)|verify.*certificate",
        "wronghost": r"(?i)(hostname|ip address|certificate|verify).*(mismatch|verify|fail)",
    }
    for name, sl in bad.items():
        if name == "wronghost" and not WRONGHOST_REASON_LOGGED:
            m = sl.wait_log(r"cannot connect to ssl://\S+ \(TCP/TLS connect failure\)", 30)
            h.log(f"KNOWN GAP: wronghost refused without a reason: {m.group(0)!r}")
        else:
            m = sl.wait_log(reasons[name], 30)
            h.log(f"{name}: {m.group(0)!r}")
        # Still retrying: the broker sees a second handshake attempt, and sluice lives.
        port = mosq.tls_ports[name]
        h.wait_for(lambda: mosq.connections_on(port) >= 2 or sl.proc.poll() is not None, 30,
                   f"a second connection attempt to the {name} listener")
        assert sl.proc.poll() is None, f"sluice exited on the {name} certificate"
        assert not re.search(r"ingest: (connected|subscribed)", sl.log_since_start()), \
            f"sluice connected to the {name} listener"
    m = nocert.wait_log(r"cannot connect to ssl://\S+ \([^)]*\)", 30)
    h.log(f"nocert: {m.group(0)!r}")
    assert not re.search(r"ingest: (connected|subscribed)", nocert.log_since_start())

    # Every bridge still stops cleanly, and no log carries the password.
    for sl in [good, nocert, *bad.values()]:
        assert sl.stop() == 0, f"{sl.logpath}: unclean stop"
        assert password not in sl.log_text(), f"{sl.logpath} shows the password"
    for name, sl in bad.items():
        line = next((l for l in sl.log_text().splitlines() if re.search(reasons[name], l)),
                    "(no reason logged)")
        h.log(f"{name} refused: {line.strip()[:200]}")


if __name__ == "__main__":
    h.run(test_tls)
