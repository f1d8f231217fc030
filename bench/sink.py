#!/usr/bin/env python3
"""Counting sink for the benchmark: reads a Singer stream from stdin and does as little as
possible with it, so that it never limits the tap it measures.

It counts lines and bytes, optionally copies the bytes to --capture FILE (on tmpfs), and keeps
a timeline of (bytes received so far, arrival time) per read, from which bench/run later
derives when each stream's records arrived. Per-stream record counts are taken from the
capture after the run, not here (without --capture it only counts lines and bytes, which
costs it a fraction of the CPU: bench/run times the tap that way and takes the counts from a
second, captured run). At EOF it prints one JSON object on stdout.

usage: sink.py [--capture FILE] [--timeline FILE]
"""

import json
import os
import sys
import time


def main(argv):
    capture = timeline_path = None
    args = list(argv)
    while args:
        flag = args.pop(0)
        if flag == "--capture":
            capture = args.pop(0)
        elif flag == "--timeline":
            timeline_path = args.pop(0)
        else:
            print(f"sink.py: unknown argument {flag}", file=sys.stderr)
            return 2
    out = open(capture, "wb", buffering=0) if capture else None
    src = open(0, "rb", buffering=0, closefd=False)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    lines = total = reads = 0
    timeline = []
    first = None
    started = time.monotonic()
    while True:
        n = src.readinto(buf)
        if not n:
            break
        now = time.monotonic()
        if first is None:
            first = now
        reads += 1
        total += n
        lines += buf.count(b"\n", 0, n)
        if out is not None:
            out.write(view[:n])
        timeline.append((total, now))
    ended = time.monotonic()
    if out is not None:
        out.close()
    if timeline_path:
        with open(timeline_path, "w") as f:
            json.dump(timeline, f)
    cpu = os.times()
    json.dump(
        {
            "lines": lines,
            "bytes": total,
            "reads": reads,
            "started": started,
            "first_byte": first,
            "ended": ended,
            "cpu_seconds": cpu.user + cpu.system,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
