#!/usr/bin/env python3
"""Opens the report in a real headless Chromium: takes a screenshot, checks it is not blank
(more than a few colours, some dark pixels) and that the page logged no console message.

  check_report.py REPORT.html SHOT.png
Exit 0 ok, 1 failed, 2 skipped (chromium is not installed; says so).
"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib


def png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB/RGBA PNG, unfiltered."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            if depth != 8 or ctype not in (2, 6):
                raise ValueError(f"unsupported PNG (depth {depth}, colour type {ctype})")
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def main():
    report, shot = sys.argv[1], sys.argv[2]
    chromium = shutil.which("chromium")
    if not chromium:
        # Installing it is .ci/setup's job (root, Debian's packages), not this check's.
        print("check_report: SKIPPED: chromium is not installed (as root: .ci/setup, or "
              "apt-get install chromium), so the report was not opened in a browser", file=sys.stderr)
        return 2
    profile = tempfile.mkdtemp(prefix="chromium-")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
           "--window-size=800,1200", f"--screenshot={os.path.abspath(shot)}",
           "file://" + os.path.abspath(report)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if p.returncode != 0 or not os.path.exists(shot):
        print(f"check_report: chromium exited {p.returncode} without a screenshot: {p.stderr[-500:]}", file=sys.stderr)
        return 1
    # Chromium logs every console message of the page as a CONSOLE line on stderr.
    console = [line for line in p.stderr.splitlines() if "CONSOLE" in line]
    w, h, bpp, rows = png_pixels(shot)
    colours = set()
    dark = 0
    for row in rows[::4]:
        for x in range(0, w * bpp, bpp * 4):
            px = row[x:x + 3]
            colours.add(px)
            dark += sum(px) < 200
    problems = []
    if console:
        problems.append(f"{len(console)} console message(s): {console[:3]}")
    if len(colours) < 8 or dark < 50:
        problems.append(f"the screenshot looks blank ({len(colours)} colours, {dark} dark pixels sampled)")
    for msg in problems:
        print(f"check_report: FAIL {msg}", file=sys.stderr)
    if not problems:
        print(f"check_report: ok: {w}x{h} screenshot with {len(colours)} colours, no console messages "
              f"({shot})", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
