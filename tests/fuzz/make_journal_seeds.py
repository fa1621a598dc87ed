#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_journal (tests/fuzz/corpus/journal/) from the frame
format documented in include/sluice/journal.h, implemented here independently of
src/journal.c. Run from anywhere: python3 tests/fuzz/make_journal_seeds.py"""
import os
import struct
import zlib

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "journal")


def frame(gen, lane, topic, key, value, mqtt_topic, hdrs=b"", route=0, qos=1,
          retained=False, dead=False, event_ms=1700000000000, ingest_ms=1700000000100,
          seq=0):
    flags = ((1 if retained else 0) | (2 if dead else 0) | (4 if key is not None else 0) |
             (8 if seq else 0))
    body = struct.pack("<BBIqq", flags, qos, route, event_ms, ingest_ms)
    for f in (lane.encode() + b"\0", topic.encode(), key or b"", value,
              mqtt_topic.encode(), hdrs):
        body += struct.pack("<I", len(f)) + f
    if seq:
        body += struct.pack("<Q", seq)
    g = struct.pack("<Q", gen)
    return struct.pack("<II", len(body), zlib.crc32(g + body)) + g + body


def main():
    os.makedirs(OUT, exist_ok=True)
    a = frame(3, "default", "telemetry.berlin", b"press-7",
              b'{"ts":1700000000000,"temp":21.5}', "factory/berlin/l1/press-7/telemetry")
    b = frame(3, "urgent", "alarms", None, b"\x00\x01binary", "factory/berlin/alarm",
              hdrs=b"\x00\x05error\x00\x00\x00\x03bad", route=2, qos=2, retained=True,
              dead=True)
    c = frame(4, "default", "t", b"", b"", "x")
    d = frame(5, "default", "telemetry.berlin", b"press-7", b'{"temp":21.5}',
              "factory/berlin/l1/press-7/telemetry", seq=0x123456789A)
    e = frame(5, "bulk", "t", None, b"v", "x", seq=(1 << 48) - 1)
    seeds = {
        "one-frame": a,
        "two-frames": a + b,
        "generation-change": a + b + c,
        "torn-tail": a + b[:-7],
        "stale-after-current": c + a[len(c):] if len(a) > len(c) else c,
        "with-sequences": d + e,
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
