#!/usr/bin/env python3
"""crash_loop.py - soak: SIGKILL sluice at random moments during a long QoS 1 run.

    tests/soak/crash_loop.py [--build DIR] [--kills 20] [--messages 200000]
                             [--rate 5000] [--devices 200] [--flaps 0]
                             [--flap-period 3] [--rtt-ms 0] [--errors 0] [--seed S]

sluice-loadgen publishes --messages QoS 1 messages at --rate; meanwhile sluice is
killed --kills times at random moments (uniform over the expected run time) and
restarted each time. Kafka flap mode (--flaps N): the mock cluster goes `down all`
and `up all` N times, --flap-period seconds down, the same up. Latency mode
(--rtt-ms 3000): every broker answers with that much added round-trip time for the
whole run. Produce errors (--errors N): the first N produce requests fail with
NOT_ENOUGH_REPLICAS (retriable). sluice-kcheck consumes live and reports lost (must be
0), duplicates and reordered per key; every 200 ms the sluice process of the moment
is sampled for VmHWM (peak_rss_mib: the largest of all its lives). The result is one
JSON line on stdout, exit 0 when nothing was lost and nothing reordered, 1 otherwise.

Every wait has a deadline. Run it from a build: --build (default $SLUICE_BUILD or
./build) has sluice and tools/.
"""
import argparse
import json
import os
import random
import sys
import threading
import time

PARTITIONS = 16
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.environ.get("SLUICE_BUILD", "build"))
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--messages", type=int, default=200000)
    p.add_argument("--rate", type=float, default=5000)
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--flaps", type=int, default=0)
    p.add_argument("--flap-period", type=float, default=3.0)
    p.add_argument("--rtt-ms", type=int, default=0)
    p.add_argument("--errors", type=int, default=0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def setup_env(build):
    build = os.path.abspath(build)
    os.environ.setdefault("SLUICE_BUILD", build)
    os.environ.setdefault("SLUICE_BIN", os.path.join(build, "sluice"))


def crash_loop(wd, h, kills=20, messages=200000, rate=5000, devices=200, flaps=0,
               flap_period=3.0, rtt_ms=0, errors=0, seed=None):
    """Runs one soak in wd with the harness module h; returns the summary dict."""
    rnd = random.Random(seed)
    mosq = h.Mosquitto(wd).start()
    # The mock cluster keeps only 5 MiB per partition and drops the oldest beyond that;
    # a checker that falls behind during an outage would then miss records that Kafka
    # did take. 16 partitions give it 80 MiB of room (auto-created topics get 4).
    kafka = h.MockKafka(wd, topics=[f"telemetry.berlin:{PARTITIONS}"])
    cfg = h.sluice_config(wd, "soak", mosq.url, kafka.bootstrap, http_listen="")
    sl = h.Sluice(wd, cfg).start()
    if rtt_ms:
        kafka.cmd(f"rtt all {rtt_ms}")
    if errors:
        kafka.cmd(f"errors Produce {errors} NOT_ENOUGH_REPLICAS")
    # Outages and latency slow the drain: give the checker time for all of it.
    expected_s = messages / rate if rate > 0 else messages / 10000
    check_timeout = int(120 + expected_s * 3 + flaps * flap_period * 2 + rtt_ms / 100)
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=messages,
                      timeout=check_timeout)
    t0 = time.monotonic()
    pub = h.loadgen(mosq.url, messages, devices=devices, qos=1, rate=rate, background=True,
                    wd=wd)

    sampler_done = threading.Event()
    peak_kib = [0]

    def sampler():
        while not sampler_done.wait(0.2):
            proc = sl.proc
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak_kib[0] = max(peak_kib[0], int(line.split()[1]))
            except (OSError, ValueError):
                pass            # between a kill and the restart
    st = threading.Thread(target=sampler, daemon=True)
    st.start()

    flapper_done = threading.Event()
    flap_count = [0]
    flap_error = []

    def flapper():
        try:
            for _ in range(flaps):
                if flapper_done.wait(flap_period):
                    return
                kafka.cmd("down all")
                flapper_done.wait(flap_period)
                kafka.cmd("up all")
                flap_count[0] += 1
        except Exception as e:      # reported by the main thread
            flap_error.append(e)
    ft = threading.Thread(target=flapper, daemon=True)
    if flaps:
        ft.start()

    # Kill moments: uniform over the publisher's expected run time, sorted.
    moments = sorted(rnd.uniform(0.3, max(0.6, expected_s * 0.95)) for _ in range(kills))
    done_kills = 0
    for at in moments:
        if pub.poll() is not None:
            break
        h.wait_for(lambda: time.monotonic() - t0 >= at or pub.poll() is not None,
                   expected_s + 120, "the next kill moment")
        if pub.poll() is not None:
            break
        sl.kill()
        done_kills += 1
        sl.start()
    rc = pub.wait(timeout=expected_s * 4 + 300)
    assert rc == 0, f"loadgen failed ({rc})"
    if flaps:
        ft.join(timeout=flaps * flap_period * 2 + 30)
        flapper_done.set()
        if flap_error:
            raise flap_error[0]
        # Whatever the flapper did last, Kafka must be up for the drain.
        kafka.cmd("up all")
    if rtt_ms:
        kafka.cmd("rtt all 0")
    res = check.result(timeout=check_timeout + 60)
    sampler_done.set()
    st.join(timeout=5)
    stop_rc = sl.stop()
    summary = {
        "messages": messages, "kills": done_kills, "kills_planned": kills,
        "flaps": flap_count[0], "rtt_ms": rtt_ms, "errors": errors, "lost": res["lost"],
        "distinct": res["distinct"], "duplicates": res["duplicates"],
        "reordered": res["reordered"], "seq_collisions": res["seq_collisions"],
        "seconds": round(time.monotonic() - t0, 1),
        "stop_rc": stop_rc, "seed": seed, "peak_rss_mib": round(peak_kib[0] / 1024, 1),
    }
    h.log(f"soak: {json.dumps(summary)}")
    return summary


def main(argv=None):
    a = parse_args(argv)
    setup_env(a.build)
    if a.keep:
        os.environ["SLUICE_KEEP"] = "1"
    import harness as h
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 30)
    wd = h.Workdir("soak")
    ok = False
    try:
        s = crash_loop(wd, h, kills=a.kills, messages=a.messages, rate=a.rate,
                       devices=a.devices, flaps=a.flaps, flap_period=a.flap_period,
                       rtt_ms=a.rtt_ms, errors=a.errors, seed=seed)
        print(json.dumps(s), flush=True)
        ok = (s["lost"] == 0 and s["reordered"] == 0 and s["seq_collisions"] == 0 and
              s["distinct"] == a.messages)
    finally:
        wd.stop_all()
        wd.cleanup(ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
