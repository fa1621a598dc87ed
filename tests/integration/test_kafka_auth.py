"""Kafka security settings reach librdkafka, fail loudly, and lose nothing.

librdkafka 2.0.2's mock cluster answers neither SaslHandshake nor TLS (its handler
table has no SASL APIs and its listeners are plain TCP), so a successful SASL or TLS
session cannot be tested here. What can be, and is:

1. `kafka.properties` with security.protocol SASL_PLAINTEXT + SCRAM-SHA-256 and a
   planted sasl.password: sluice starts, takes every message into the spool, and logs
   the SASL failure against the broker (proof that the settings reached librdkafka);
   sluice_kafka_connected stays 0 and the forwarder says Kafka is unreachable (/readyz
   stays 200: buffering is normal, SPEC.md); the password appears in no log line, not in
   /metrics and not in `sluice check --print`.
2. The same with security.protocol SSL and a CA file: the TLS handshake against the
   plain listener fails, logged, records stay spooled.
3. `enable.ssl.certificate.verification: false` without `kafka.insecure: true` is
   refused by `sluice check` (exit 78) and by `sluice run`.
4. Restarted with the plain protocol on the same spool: everything taken in steps 1
   and 2 reaches Kafka, 0 lost, 0 duplicated, order per key kept.
"""
import re
import secrets
import subprocess
import urllib.request

import harness as h

PER_STEP = 1500


def test_kafka_auth(wd):
    password = "kpw-" + secrets.token_hex(12)   # planted: must never be printed
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)

    sasl = f"""  properties:
    security.protocol: SASL_PLAINTEXT
    sasl.mechanisms: SCRAM-SHA-256
    sasl.username: bridge
    sasl.password: {password}
"""
    cfg = h.sluice_config(wd, "auth", mosq.url, kafka.bootstrap, extra_kafka=sasl)
    with open(cfg) as f:
        text = f.read().replace("level: info", "level: debug")
    with open(cfg, "w") as f:
        f.write(text)

    h.assert_check_print_hides(cfg, password)

    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=2 * PER_STEP,
                      timeout=240)

    # 1. SASL/SCRAM against brokers that do not speak SASL.
    sl = h.Sluice(wd, cfg, name="auth").start()
    h.loadgen(mosq.url, PER_STEP, devices=30, qos=1, start=0)
    h.wait_for(lambda: sl.spool_total() == PER_STEP, 60, f"{PER_STEP} records spooled")
    m = sl.wait_log(r"(?i)kafka: .*sasl.*", 60)
    h.log(f"SASL refusal logged: {m.group(0)[:200]}")
    metrics_url = sl.http_url("/metrics")

    def kafka_connected():
        body = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
        assert password not in body, "/metrics shows the password"
        m = re.search(r"^sluice_kafka_connected (\S+)$", body, re.M)
        assert m, "no sluice_kafka_connected in /metrics"
        return float(m.group(1))
    # Given time to connect (FW_GRACE_MS and more), it never counts as connected.
    sl.wait_log(r"forward: kafka unreachable", 30)
    assert kafka_connected() == 0, "sluice_kafka_connected is 1 while SASL fails"
    assert sl.stop() == 0
    assert sl.spool_total() == PER_STEP, "records left the spool although nothing was delivered"

    # 2. TLS against plain listeners.
    ssl_cfg = h.sluice_config(wd, "auth", mosq.url, kafka.bootstrap, extra_kafka=f"""  properties:
    security.protocol: SSL
    ssl.ca.location: {wd.file('none-ca.pem')}
""")
    with open(wd.file("none-ca.pem"), "w") as f:
        f.write(open("/etc/ssl/certs/ca-certificates.crt").read())
    sl = h.Sluice(wd, ssl_cfg, name="auth").start()
    h.loadgen(mosq.url, PER_STEP, devices=30, qos=1, start=PER_STEP)
    h.wait_for(lambda: sl.spool_total() == 2 * PER_STEP, 60, f"{2 * PER_STEP} records spooled")
    m = sl.wait_log(r"(?i)kafka: .*(ssl|handshake).*", 60)
    h.log(f"TLS failure logged: {m.group(0)[:200]}")
    assert sl.stop() == 0
    assert sl.spool_total() == 2 * PER_STEP

    # 3. Turning off certificate verification needs kafka.insecure.
    bad_cfg = h.sluice_config(wd, "insecure", mosq.url, kafka.bootstrap, extra_kafka="""  properties:
    security.protocol: SSL
    enable.ssl.certificate.verification: false
""")
    res = subprocess.run([h.SLUICE, "check", "-c", bad_cfg], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 78, (res.returncode, res.stderr)
    assert "kafka.insecure" in res.stderr, res.stderr
    res = subprocess.run([h.SLUICE, "run", "-c", bad_cfg], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 78, (res.returncode, res.stderr)

    # 4. The plain protocol on the same spool: everything arrives, once, in order.
    plain_cfg = h.sluice_config(wd, "auth", mosq.url, kafka.bootstrap)
    sl = h.Sluice(wd, plain_cfg, name="auth").start()
    res = check.result()
    h.wait_for(lambda: sl.spool_total() == 0, 60, "spool drained")
    assert sl.stop() == 0
    assert res["lost"] == 0 and res["distinct"] == 2 * PER_STEP, res
    assert res["duplicates"] == 0, res
    assert res["reordered"] == 0, res

    log = sl.log_text()
    assert password not in log, "the log shows the password"
    assert re.search(r"<redacted>|sasl", log, re.I), "nothing about SASL in the debug log"


if __name__ == "__main__":
    h.run(test_kafka_auth)
