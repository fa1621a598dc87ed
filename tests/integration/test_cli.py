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

    # where: shown by check and check --print (which loads again), map prints the
    # verdict of a filtered message and exits 0: dropping it is the route's rule
    edge = wd.file("edge.yaml")
    with open(edge, "w") as f:
        f.write(f"spool:\n  path: {wd.file('edge-spool.db')}\nroutes:\n"
                "  - name: hot\n    match: plant/{line}/{device}\n    format: json\n"
                "    topic: hot\n    key: \"{device}\"\n"
                "    where: '$.quality == \"good\" and ($.temp > 80 or {line} == \"l9\")'\n"
                "    deadband: { field: $.temp, abs: 0.5 }\n")
    rc, out, err = sluice("check", "-c", edge)
    assert rc == 0, (rc, out, err)
    assert 'where:  $.quality == "good" and ($.temp > 80 or {line} == "l9")' in out, out
    rc, out, err = sluice("check", "-c", edge, "--print")
    assert rc == 0 and "where: " in out, (rc, out, err)
    printed = wd.file("edge-printed.yaml")
    with open(printed, "w") as f:
        f.write(out)
    rc, out2, err = sluice("check", "-c", printed)
    assert rc == 0 and "($.temp > 80 or" in out2, (rc, out2, err)
    hot, cold = wd.file("hot.json"), wd.file("cold.json")
    with open(hot, "w") as f:
        f.write('{"quality":"good","temp":81}')
    with open(cold, "w") as f:
        f.write('{"quality":"good","temp":79}')
    rc, out, err = sluice("map", "-c", edge, "plant/l1/d1", hot)
    assert rc == 0 and "topic:     hot" in out and "filtered" not in out, (rc, out, err)
    rc, out, err = sluice("map", "-c", edge, "plant/l1/d1", cold)
    assert rc == 0, (rc, out, err)
    assert out.startswith('filtered: where $.quality == "good" and ($.temp > 80 or '
                          '{line} == "l9") is false (route hot;'), out
    rc, out, err = sluice("map", "-c", edge, "plant/l9/d1", cold)
    assert rc == 0 and "topic:     hot" in out, (rc, out, err)
    assert "deadband:  forwarded: $.temp = 79 is the first value of this key" in out, out
    assert "deadband: $.temp moved more than max(abs 0.5, 0% of the last" in \
        sluice("check", "-c", edge)[1]

    # deadband verdicts against the last values a spool holds (read only)
    import sqlite3
    import struct
    db = sqlite3.connect(wd.file("edge-spool.db"))
    db.execute("CREATE TABLE route_state (route TEXT NOT NULL, key BLOB NOT NULL,"
               " value BLOB NOT NULL, PRIMARY KEY (route, key)) WITHOUT ROWID")
    db.execute("INSERT INTO route_state VALUES ('deadband/hot', ?, ?)",
               (b"d1", struct.pack("<d", 80.75)))
    db.commit()
    db.close()
    rc, out, err = sluice("map", "-c", edge, "plant/l1/d1", hot)
    assert rc == 0, (rc, out, err)
    assert out.startswith("suppressed: deadband: $.temp = 81 is within 0.5 of the last "
                          "forwarded 80.75"), out
    rc, out, err = sluice("map", "-c", edge, "plant/l1/d2", hot)
    assert rc == 0 and "is the first value of this key" in out, (rc, out, err)
    with open(hot, "w") as f:
        f.write('{"quality":"good","temp":81.5}')
    rc, out, err = sluice("map", "-c", edge, "plant/l1/d1", hot)
    assert rc == 0 and "moved past 0.5 of the last forwarded 80.75" in out, (rc, out, err)

    # sparkplug: a route without a key gets {group}/{edge_node}/{device}
    spcfg = wd.file("sparkplug.yaml")
    with open(spcfg, "w") as f:
        f.write(f"spool: {{ path: {wd.file('sp.db')} }}\nroutes:\n  - name: sp\n"
                "    match: spBv1.0/#\n    format: sparkplug\n    topic: sparkplug.{group}\n")
    rc, out, err = sluice("map", "-c", spcfg, "spBv1.0/G1/DDATA/E1/D1",
                          os.path.join(SRC, "tests", "data", "sparkplug", "ddata.bin"))
    assert rc == 0 and "key:       G1/E1/D1" in out and "topic:     sparkplug.G1" in out, out

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
