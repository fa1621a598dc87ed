"""A backlog drains at once even with a long linger.ms: records of a full window go
out without waiting for their batches to fill (forward.c, fw_wait_full).

linger.ms batches live traffic (config/factory.yaml ships 50 ms). During a drain the
forwarder's window of 4,000 records is spread over all partitions and never fills a
batch, so without the override every window would wait out linger.ms. Here linger.ms
is 5 s and the backlog 40,000 records over 64 partitions: waiting out linger once per
window would take 10 x 5 s = 50 s; the deadline is 25 s, and with the override the
drain takes about one linger (the last, partial window waits it out, as live traffic
does). Nothing lost, duplicated or reordered either way."""
import time

import harness as h

TOTAL = 40000
LINGER_MS = 5000


def test_linger_drain(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd, topics=["telemetry.berlin:64"])
    cfg = h.sluice_config(wd, "linger", mosq.url, kafka.bootstrap,
                          extra_kafka=f"  properties:\n    linger.ms: \"{LINGER_MS}\"\n")
    sl = h.Sluice(wd, cfg).start()
    kafka.cmd("down all")
    sl.wait_log(r"forward: kafka unreachable", 30)
    h.loadgen(mosq.url, TOTAL, devices=100, qos=1)

    h.wait_for(lambda: sl.spool_total() == TOTAL, 60, f"the spool to hold all {TOTAL}",
               interval=0.5)
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=TOTAL, timeout=120)
    kafka.cmd("up all")
    up = time.monotonic()
    sl.wait_log(r"forward: kafka reachable again", 30)
    h.wait_for(lambda: sl.spool_total() == 0, 25, "the backlog to drain despite linger.ms "
               f"{LINGER_MS}", interval=0.2)
    h.log(f"drained {TOTAL} with linger.ms {LINGER_MS} in {time.monotonic() - up:.1f} s")
    res = check.result()
    assert sl.stop() == 0
    h.assert_delivered(res, TOTAL, duplicates=0)


if __name__ == "__main__":
    h.run(test_linger_drain)
