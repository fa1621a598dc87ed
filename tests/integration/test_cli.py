"""The offline commands integrators use most: check, check --print, map, and the exit
codes SPEC.md promises (0, 1, 64, 65, 78)."""
import os
import subprocess

import harness as h

SRC = os.environ.get("SLUICE_SOURCE", ".")
DATA = os.path.join(SRC, "tests", "data", "cli")
FACTORY = os.path.join(SRC, "config", "factory.yaml")


def sluice(*args, env=None):
    r = subprocess.run([h.SLUICE, *args], capture_output=True, text=True, timeout=30,
                       env=env)
    return r.returncode, r.stdout, r.stderr


def test_cli(wd):
    rc, out, err = sluice("--version")
    assert rc == 0 and out.startswith("sluice "), (rc, out)
    rc, out, err = sluice("--help")
    assert rc == 0 and "sluice check" in out, (rc, out)
    rc, out, err = sluice("frobnicate", "-c", FACTORY)
    assert rc == 64, (rc, err)
    rc, out, err = sluice("check")
    assert rc == 64, (rc, err)

    # check: routes and the subscriptions they imply
    rc, out, err = sluice("check", "-c", FACTORY)
    assert rc == 0, (rc, out, err)
    assert "line-telemetry" in out and "alarms" in out, out
    assert "factory/+/+/+/telemetry" in out, out

    # three planted mistakes -> three located lines, exit 78
    bad = os.path.join(DATA, "three-mistakes.yaml")
    rc, out, err = sluice("check", "-c", bad)
    assert rc == 78, (rc, err)
    lines = [line for line in err.splitlines() if line.startswith(bad + ":")]
    assert len(lines) == 3, err
    assert ":6:" in lines[0] and "mqtt.keepalive" in lines[0], lines
    assert ":9:" in lines[1] and "max_bytes" in lines[1], lines      # did you mean
    assert ":14:" in lines[2] and "plant" in lines[2], lines

    # map: topic, key, event time from the payload, headers, value
    rc, out, err = sluice("map", "-c", FACTORY, "factory/berlin/l1/press-7/telemetry",
                          os.path.join(DATA, "payload.json"))
    assert rc == 0, (rc, out, err)
    assert "topic:     telemetry.berlin" in out, out
    assert "key:       press-7" in out, out
    assert "timestamp: 1714564800123" in out and "from payload" in out, out
    for hdr in ("mqtt.topic: factory/berlin/l1/press-7/telemetry", "mqtt.qos: 1",
                "mqtt.retained: false", "event.time: 1714564800123", "ingest.time: ",
                "sluice.instance: ", "line: l1"):
        assert hdr in out, (hdr, out)
    assert '"temp": 71.5' in out, out

    # no route -> 1; bad payload -> 65 (dead letter with the reason)
    rc, out, err = sluice("map", "-c", FACTORY, "nowhere/at/all")
    assert rc == 1 and "no route" in out, (rc, out)
    garbage = wd.file("garbage.json")
    with open(garbage, "w") as f:
        f.write("{not json")
    rc, out, err = sluice("map", "-c", FACTORY, "factory/berlin/l1/press-7/telemetry",
                          garbage)
    assert rc == 65 and "dead letter" in out and "sluice.dead-letter" in out, (rc, out)

    # --print: effective config with ${VAR}s resolved and secrets redacted
    secret = "s3cr3t-planted-value"
    cfg = wd.file("secret.yaml")
    with open(cfg, "w") as f:
        f.write("instance: ${SITE:-fallback}\nmqtt:\n  password: ${MQTT_PASSWORD}\n"
                f"spool:\n  path: {wd.file('spool.db')}\nroutes: []\n")
    env = dict(os.environ, MQTT_PASSWORD=secret, SITE="site-7")
    rc, out, err = sluice("check", "-c", cfg, "--print", env=env)
    assert rc == 0, (rc, out, err)
    assert "site-7" in out and secret not in out and secret not in err, out
    env.pop("MQTT_PASSWORD")
    rc, out, err = sluice("check", "-c", cfg, env=env)
    assert rc == 78 and "MQTT_PASSWORD" in err, (rc, err)


if __name__ == "__main__":
    h.run(test_cli)
