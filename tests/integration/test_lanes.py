"""Lanes and forward.max_rate during a catch-up.

Kafka is down while three lanes fill (bulk first, then normal, then urgent). All
three routes write to ONE topic with ONE partition, so the partition's offsets are
the global order in which Kafka appended the records. With Kafka back and
forward.max_rate 1MiB:
  - every backlog urgent record is appended before any normal one, and every normal
    one before any bulk one, although bulk was spooled first;
  - urgent records published live during the drain arrive within 1 s (sluice's
    ingest.time header to the consumer's clock);
  - the uplink rate (sluice_forward_bytes_total over 10 s) is within 10% of 1 MiB/s."""
import time

import harness as h
import policy as p

RATE = 1024 * 1024
N_BULK, N_NORMAL, N_URGENT, N_LIVE = 36000, 2000, 1000, 100
S_NORMAL, S_URGENT, S_LIVE = 500_000, 1_000_000, 2_000_000


def kind(rec):
    i = p.index(rec)
    if i >= S_LIVE:
        return "live"
    if i >= S_URGENT:
        return "urgent"
    if i >= S_NORMAL:
        return "normal"
    return "bulk"


def test_lanes(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd, topics=["all.events:1"])
    kafka.cmd("down all")
    cfg = h.sluice_config(wd, "lanes", mosq.url, kafka.bootstrap,
                          routes=p.routes("all.events", "all.events", "all.events"),
                          lanes=p.LANES_3)
    with open(cfg, "a") as f:
        f.write("forward:\n  max_rate: 1MiB\n")
    sl = h.Sluice(wd, cfg).start()
    base = sl.http_url()
    h.loadgen(mosq.url, N_BULK, devices=p.DEVICES, extra=p.fmt("telemetry"))
    h.loadgen(mosq.url, N_NORMAL, devices=p.DEVICES, start=S_NORMAL, extra=p.fmt("status"))
    h.loadgen(mosq.url, N_URGENT, devices=p.DEVICES, start=S_URGENT, extra=p.fmt("alarm"))
    backlog = N_BULK + N_NORMAL + N_URGENT
    h.wait_for(lambda: p.metric(base + "/metrics", "sluice_spool_appends_total") >= backlog,
               30, "the backlog in the spool")
    dump = wd.file("dump.jsonl")
    check = h.Checker(kafka.bootstrap, ["all.events"], expect=backlog + N_LIVE, timeout=60,
                      extra=["--dump", dump])
    kafka.cmd("up all")
    h.wait_for(lambda: p.metric(base + "/metrics", "sluice_forward_bytes_total") > 0, 15,
               "the drain to start")
    live = h.loadgen(mosq.url, N_LIVE, devices=p.DEVICES, start=S_LIVE, rate=20,
                     extra=p.fmt("alarm"), background=True, wd=wd)
    # The rate over 10 s, after the first second (the token bucket's 200 ms burst).
    t0 = time.monotonic()
    h.wait_for(lambda: time.monotonic() - t0 >= 1, 2, "warm-up")
    b1, t1 = p.metric(base + "/metrics", "sluice_forward_bytes_total"), time.monotonic()
    h.wait_for(lambda: time.monotonic() - t1 >= 10, 12, "10 s of drain")
    b2, t2 = p.metric(base + "/metrics", "sluice_forward_bytes_total"), time.monotonic()
    rate = (b2 - b1) / (t2 - t1)
    assert live.wait(timeout=30) == 0
    res = check.result()
    assert sl.stop() == 0
    assert res["distinct"] == backlog + N_LIVE and res["lost"] == 0, res

    recs = sorted(p.read_dump(dump), key=lambda r: r["offset"])
    off = {}
    for r in recs:
        off.setdefault(kind(r), []).append(r["offset"])
    lat = sorted(r["consumed_ms"] - int(r["headers"]["ingest.time"])
                 for r in recs if kind(r) == "live")
    h.log(f"offsets: urgent {min(off['urgent'])}..{max(off['urgent'])}, normal "
          f"{min(off['normal'])}..{max(off['normal'])}, bulk {min(off['bulk'])}.."
          f"{max(off['bulk'])}; live urgent latency ms: median {lat[len(lat) // 2]}, "
          f"max {lat[-1]}; uplink {rate / 1024:.0f} KiB/s (max_rate 1024 KiB/s)")
    assert max(off["urgent"]) < min(off["normal"]), "a normal record overtook urgent"
    assert max(off["normal"]) < min(off["bulk"]), "a bulk record overtook normal"
    live_in_drain = [o for o in off["live"] if o < max(off["bulk"])]
    h.log(f"{len(live_in_drain)} of {N_LIVE} live urgent records were appended before the "
          f"end of the bulk backlog")
    assert lat[-1] < 1000, f"live urgent latency {lat[-1]} ms during the drain"
    assert abs(rate - RATE) <= 0.10 * RATE, f"uplink {rate:.0f} B/s, max_rate {RATE}"


if __name__ == "__main__":
    h.run(test_lanes)
