"""Decompression bombs and a clean measurement of what decoding one costs (test + bench).

``png_bomb``: a valid PNG of zeros that declares W x H (20000 x 20000 gray: ~400 KB, 400 MB of
pixels once decoded). ``jpeg_bomb``: a small valid JPEG whose frame header (SOF0) is patched to
declare W x H. ``png_chunk_bomb``: a tiny PNG with a chunk that declares gigabytes.
``jpeg_scan_bomb``: a progressive JPEG of a few KB with hundreds of scans. ``measure`` decodes one such message as a CompressedImage in a fresh Python process
with a given copy of ``rba_core`` and reports the decode call's wall time and its extra peak RSS
(the kernel's high-water mark, reset just before the call via /proc/self/clear_refs).
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 8-bit gray PNG of zeros, built row block by row block (never W x H in memory)."""
    z = zlib.compressobj(9)
    rows = max(1, 20_000_000 // (width + 1))
    block = bytes((width + 1) * rows)  # filter byte 0 + width zero pixels, per row
    parts, left = [], height
    while left > 0:
        n = min(rows, left)
        parts.append(z.compress(block[: (width + 1) * n]))
        left -= n
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
            + _chunk(b"IEND", b""))


def jpeg_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A 64x48 baseline JPEG whose SOF0 declares ``width`` x ``height``."""
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    data = bytearray(cv2.imencode(".jpg", img)[1].tobytes())
    sof = data.index(b"\xff\xc0")
    assert struct.unpack(">HH", data[sof + 5:sof + 9]) == (48, 64)
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_chunk_bomb(length: int = 2**31 - 1) -> bytes:
    """A 8x8 PNG whose IDAT chunk declares ``length`` bytes (OpenCV allocates them)."""
    good = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    at = good.index(b"IDAT") - 4
    return good[:at] + struct.pack(">I", length) + good[at + 4:]


def jpeg_scan_bomb(side: int = 4096, extra_scans: int = 200) -> bytes:
    """A flat progressive JPEG whose last scan is repeated ``extra_scans`` times: each is a
    pass over all ``side`` x ``side`` pixels, for ~16 bytes."""
    img = np.full((side, side, 3), 128, np.uint8)
    data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    last = data[data.rindex(b"\xff\xda"):-2]  # the last scan, up to EOI
    return data[:-2] + last * extra_scans + data[-2:]


_PROBE = r"""
import json, sys, time
from types import SimpleNamespace
sys.path.insert(0, sys.argv[1])
from rba_core.pipeline.image_msgs import decode_image

def status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024  # MiB
    return out

msg = SimpleNamespace(format=sys.argv[3], data=open(sys.argv[2], "rb").read())
decode_image(SimpleNamespace(format="png", data=open(sys.argv[4], "rb").read()))  # warm up
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
before = status()["VmRSS"]
t0 = time.perf_counter()
try:
    decode_image(msg)
    outcome = "decoded"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {exc}"
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "extra_mb": status()["VmHWM"] - before, "outcome": outcome}))
"""


def measure(code_root: Path, image: Path, fmt: str, timeout: float = 300) -> dict:
    """Decode ``image`` (bytes of a CompressedImage, ``fmt``) with ``code_root``'s rba_core in a
    fresh process: {"seconds", "extra_mb", "outcome"} of the decode call alone."""
    small = image.with_name("warmup.png")
    cv2.imwrite(str(small), np.zeros((8, 8, 3), np.uint8))
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(code_root), str(image), fmt,
                           str(small)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"seconds": float("nan"), "extra_mb": float("nan"),
                "outcome": f"process died (exit {proc.returncode}): {proc.stderr[-300:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])
