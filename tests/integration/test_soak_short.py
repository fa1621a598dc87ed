"""The crash-loop soak (tests/soak/crash_loop.py), short: 8 SIGKILLs at random moments
during a 30,000-message QoS 1 run while Kafka flaps twice. Nothing lost, nothing
reordered per key; duplicates stay within what one kill can re-send (the in-flight
window, the intake journal, the acknowledgements not yet deleted) per kill and flap."""
import os
import sys

import harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "soak"))
import crash_loop  # noqa: E402

# What a kill can re-send: include/sluice/forward.h FORWARD_WINDOW (records produced,
# not yet acknowledged), src/spool.c SPOOL_JOURNAL_ROWS (acknowledged on the live path
# before the intake journal was merged: replayed) and src/forward.c FW_PEND_MAX
# (acknowledged, not yet deleted: held for whole-run deletes, at most FORWARD_WINDOW).
RESEND_PER_KILL = 4000 + 4000 + 4000


def test_soak_short(wd):
    s = crash_loop.crash_loop(wd, h, kills=8, messages=30000, rate=1500, devices=100,
                              flaps=2, flap_period=2.0, seed=int(os.environ.get("SOAK_SEED", "7")))
    assert s["kills"] >= 6, s
    assert s["flaps"] == 2, s
    assert s["lost"] == 0, s
    assert s["distinct"] == 30000, s
    assert s["reordered"] == 0, s
    assert s["seq_collisions"] == 0, s
    assert s["duplicates"] <= (s["kills"] + s["flaps"]) * RESEND_PER_KILL, s
    assert s["stop_rc"] == 0, s


if __name__ == "__main__":
    h.run(test_soak_short)
