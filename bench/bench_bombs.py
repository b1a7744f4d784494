#!/usr/bin/env python3
"""Decompression bombs: time and peak memory to refuse one, this tree vs an older revision.

Each bomb is sent as a CompressedImage to ``decode_image`` in a fresh process (one per bomb and
code version), so the peak RSS is the decode call's alone (VmHWM reset just before it):

- png: a valid ~400 KB PNG of zeros declaring 20000 x 20000 (400 M pixels);
- jpeg: a 64x48 JPEG whose frame header declares 20000 x 20000;
- jpeg-max: the same declaring 65500 x 65500;
- png-chunk: an 8x8 PNG (~100 bytes) whose IDAT chunk declares 2^31 - 1 bytes;
- jpeg-scans: a 4096 x 4096 flat progressive JPEG with 200 extra scans (~30 KB).

``--before`` names the older revision (default ``main``); its ``rba_core`` is taken with
``git archive``, so both versions run side by side in one run on the same machine load.

    python bench/bench_bombs.py                     # this tree vs main
    python bench/bench_bombs.py --before f696e3a --size 12000x12000
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))

from bombs import jpeg_bomb, jpeg_scan_bomb, measure, png_bomb, png_chunk_bomb  # noqa: E402


def checkout(rev: str, dest: Path) -> Path:
    """``rba_core`` of git revision ``rev`` under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "src.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), rev, "rba_core"],
                   check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", default="main", help="older git revision to compare with")
    p.add_argument("--size", default="20000x20000", help="WxH the png and jpeg bombs declare")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = checkout(args.before, tmp / "before")
        bombs = {"png": ("png", png_bomb(w, h)), "jpeg": ("jpeg", jpeg_bomb(w, h)),
                 "jpeg-max": ("jpeg", jpeg_bomb(65500, 65500)),
                 "png-chunk": ("png", png_chunk_bomb()),
                 "jpeg-scans": ("jpeg", jpeg_scan_bomb(4096, 200))}
        print(f"{'bomb':9} {'bytes':>8} {'code':8} {'seconds':>9} {'extra MB':>9}  outcome")
        for name, (fmt, data) in bombs.items():
            path = tmp / f"{name}.{fmt}"
            path.write_bytes(data)
            for label, root in ((args.before, old), ("this", REPO)):
                r = measure(root, path, fmt)
                print(f"{name:9} {len(data):8d} {label[:8]:8} {r['seconds']:9.4f} "
                      f"{r['extra_mb']:9.1f}  {r['outcome'][:90]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
