"""Kafka down, spool.max_bytes 1 MiB, when_full: drop_oldest. The spool file stays
within max_bytes plus one eviction step, the bulk lane is evicted before the urgent
one, every drop is counted in the aggregate log lines, and what survives is the
newest, delivered once Kafka is back."""
import harness as h
import policy as p

MAX = 1024 * 1024
SLACK = 64 * 1024 + 16 * 1024   # one eviction step (SPOOL_EVICT_SLACK) + a few pages


def test_drop_oldest(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd, partitions=4)
    kafka.cmd("down all")
    cfg = h.sluice_config(wd, "drop", mosq.url, kafka.bootstrap,
                          routes=p.routes("bulk.t", "normal.t", "urgent.t"), lanes=p.LANES_3,
                          spool_extra="  max_bytes: 1MiB\n  when_full: drop_oldest\n")
    sl = h.Sluice(wd, cfg).start()
    db = wd.file("drop-spool/spool.db")
    n_bulk, n_urgent = 20000, 500
    h.loadgen(mosq.url, n_urgent, devices=p.DEVICES, start=1_000_000, extra=p.fmt("alarm"))
    pub = h.loadgen(mosq.url, n_bulk, devices=p.DEVICES, extra=p.fmt("telemetry"),
                    background=True, wd=wd)
    peak = [0]

    def published():
        peak[0] = max(peak[0], p.file_size(db))    # sampled every 50 ms meanwhile
        return pub.poll() is not None
    h.wait_for(published, 60, "loadgen to finish")
    assert pub.returncode == 0
    biggest = peak[0]
    base = sl.http_url()
    total_in = n_bulk + n_urgent
    h.wait_for(lambda: (p.metric(base + "/metrics", "sluice_spool_appends_total") or 0)
               >= total_in, 30, "every message spooled")
    biggest = max(biggest, p.file_size(db))
    wal = p.file_size(db + "-wal")
    metr_dropped = p.metric(base + "/metrics", "sluice_dropped_total")
    assert sl.stop() == 0
    dropped = p.drops(sl.log_text())
    left = p.spool_stats(sl)
    h.log(f"spool file peak {biggest} bytes (max_bytes {MAX}), WAL {wal} bytes; "
          f"dropped {dropped}; left {left}; metrics dropped {metr_dropped}")
    assert biggest <= MAX + SLACK, f"spool file {biggest} > {MAX} + {SLACK}"
    assert "urgent" not in dropped, dropped
    assert left.get("urgent") == n_urgent, left
    assert dropped.get("bulk", 0) + left.get("bulk", 0) == n_bulk, (dropped, left)
    assert dropped.get("bulk", 0) > n_bulk // 2, dropped

    # Kafka back: the survivors are delivered, and they are the newest bulk records.
    survivors = left["bulk"]
    dump = wd.file("dump.jsonl")
    check = h.Checker(kafka.bootstrap, ["bulk.t", "urgent.t"], expect=survivors + n_urgent,
                      timeout=60, extra=["--dump", dump])
    kafka.cmd("up all")
    sl.start()
    res = check.result()
    assert sl.stop() == 0
    assert res["distinct"] == survivors + n_urgent, res
    bulk = sorted(p.index(r) for r in p.read_dump(dump) if r["topic"] == "bulk.t")
    assert bulk == list(range(n_bulk - survivors, n_bulk)), \
        f"survivors are not the newest: first {bulk[:3]} last {bulk[-3:]}"
    h.log(f"drop_oldest: {n_bulk} bulk into 1 MiB: kept the newest {survivors}, "
          f"dropped {dropped['bulk']} (counted exactly); {n_urgent} urgent all kept")


if __name__ == "__main__":
    h.run(test_drop_oldest)
