"""Generated hostile image messages, each with what the decoder must make of it.

``raw_case(rng)`` / ``compressed_case(rng, bases)`` -> (fields, expect): the fields of a
sensor_msgs Image / CompressedImage and one of

- ("ok", rgb): a valid message; ``rgb`` is its RGB uint8 [H, W, 3] exactly, computed here with
  numpy (raw) or from the pixels a lossless image was encoded from, never with the decoder under
  test; ("close", rgb): a valid JPEG and Pillow's decoding of it (another libjpeg build);
- ("error", regex): the decoder must raise its ImageDecodeError, with a message matching ``regex``;
- ("shape", (h, w)): an error, or an RGB uint8 image of exactly that size (e.g. a corrupt body
  behind a valid header: libjpeg fills the rest grey);
- ("any", None): an error, or an RGB uint8 image within the pixel limit.

``LIMIT`` is the default ``max_pixels`` the cases are made for (small: huge claims stay cheap).
"""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from PIL import Image  # an independent JPEG decoder for the references

LIMIT = 128 * 128

# encoding -> (channels, bytes per channel, channel order) for the numpy reference
REFERENCE = {"rgb8": (3, 1, "rgb"), "bgr8": (3, 1, "bgr"), "rgba8": (4, 1, "rgb"),
             "bgra8": (4, 1, "bgr"), "mono8": (1, 1, "mono"), "mono16": (1, 2, "mono"),
             "rgb16": (3, 2, "rgb"), "bgr16": (3, 2, "bgr"), "rgba16": (4, 2, "rgb"),
             "bgra16": (4, 2, "bgr")}
OTHER = {"yuv422": 2, "uyvy": 2, "yuyv": 2, "yuv422_yuy2": 2, "bayer_rggb8": 1,
         "bayer_gbrg16": 2, "8UC1": 1, "8UC3": 3, "8UC4": 4, "16UC1": 2, "16UC3": 6, "8SC3": 3,
         "16SC1": 2, "32FC1": 4, "64FC3": 24}  # known to ROS, no reference: bytes per pixel
UNSUPPORTED = ["nv12", "nv21", "foo", "", "RGB8", "rgb8\x00", "jpeg", "rgb8 ", "mono1"]
HUGE_STEP = 2**32 - 1  # sensor_msgs/Image step is uint32


def _bpp(enc: str) -> int:
    if enc in REFERENCE:
        return REFERENCE[enc][0] * REFERENCE[enc][1]
    return OTHER.get(enc, 3)


def reference_rgb(data: bytes, h: int, w: int, enc: str, step: int, bigendian: int):
    """RGB uint8 of a valid raw image, by hand: rows at ``step``, 16 bit scaled by 255 / 65535."""
    nchan, size, order = REFERENCE[enc]
    buf = np.frombuffer(data, np.uint8)
    rows = np.stack([buf[i * step:i * step + w * nchan * size] for i in range(h)])
    px = rows.view((">u2" if bigendian else "<u2") if size == 2 else np.uint8)
    px = px.reshape(h, w, nchan)
    if size == 2:
        px = px.astype(np.uint32) * 255 // 65535  # full scale to full scale, truncated
    px = px.astype(np.uint8)
    if order == "mono":
        return np.repeat(px, 3, axis=2)
    px = px[..., :3]
    return px[..., ::-1] if order == "bgr" else px


def raw_case(rng, uint_fields: bool = False, limit: int = LIMIT):
    """One sensor_msgs/Image as a dict, and its expectation for ``max_pixels=limit``.
    ``uint_fields``: only values an rclpy message can hold (no negative sizes)."""
    pick = rng.random()
    enc = (str(rng.choice(list(REFERENCE))) if pick < 0.6 else
           str(rng.choice(list(OTHER))) if pick < 0.85 else str(rng.choice(UNSUPPORTED)))
    h, w = (int(v) for v in rng.integers(1, 25, 2))
    size = rng.random()
    if size < 0.05:
        h = 0 if rng.random() < 0.5 else h
        w = 0 if h else w
    elif size < 0.08 and not uint_fields:
        h, w = -int(rng.integers(1, 100)), w
    elif size < 0.12:
        h, w = [(100_000, 100_000), (1, limit + 1), (limit + 1, 1), (2**31, 2)][
            int(rng.integers(0, 4))]
    elif size < 0.15:
        side = int(limit**0.5)
        h, w = (1, limit) if rng.random() < 0.5 else (side, limit // side)  # at the limit
    row = max(w, 0) * _bpp(enc)
    kind = rng.random()
    step = (row if kind < 0.45 else row + int(rng.integers(1, 10)) if kind < 0.7 else
            max(row - int(rng.integers(1, 4)), 0) if kind < 0.8 else
            int(rng.integers(0, 300)) if kind < 0.93 else HUGE_STEP)
    need = step * (h - 1) + row if h > 0 else 0
    kind = rng.random()
    n = (step * h if kind < 0.5 else need if kind < 0.6 else
         need - int(rng.integers(1, 20)) if kind < 0.75 else 0 if kind < 0.8 else
         int(rng.integers(0, 4000)) if kind < 0.9 else need + int(rng.integers(1, 50)))
    n = int(min(max(n, 0), 200_000))
    data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    bigendian = int(rng.integers(0, 2))
    fields = {"height": h, "width": w, "encoding": enc, "is_bigendian": bigendian,
              "step": step, "data": data}
    if h <= 0 or w <= 0:
        return fields, ("error", "empty")
    if h * w > limit:
        return fields, ("error", "too large")
    if enc in UNSUPPORTED:
        return fields, ("error", "unsupported")
    if step < row or n < need:
        return fields, ("error", "")
    if enc in REFERENCE:
        return fields, ("ok", reference_rgb(data, h, w, enc, step, bigendian))
    return fields, ("shape", (h, w))


# -- compressed ------------------------------------------------------------------------------------
def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def compressed_bases(rng) -> list[dict]:
    """Valid images: {"fmt", "data", "rgb" (reference), "size" (h, w), "header" (bytes that hold
    the size), "dims_at" (offset of the size fields)}."""
    bases = []
    for h, w in [(8, 8), (17, 23), (31, 40), (48, 64)]:
        y, x = np.mgrid[0:h, 0:w]
        smooth = np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (w + h)], -1)
        bgr = smooth.astype(np.uint8)
        noisy = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for q in (50, 95):
            params = [cv2.IMWRITE_JPEG_QUALITY, q, cv2.IMWRITE_JPEG_PROGRESSIVE, int(q == 50)]
            data = cv2.imencode(".jpg", bgr, params)[1].tobytes()
            ref = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            sof = next(data.index(m) for m in (b"\xff\xc0", b"\xff\xc2") if m in data)
            bases.append({"fmt": "jpeg", "data": data, "rgb": ref, "size": (h, w),
                          "dims_at": sof + 5, "header_end": sof + 2 + (data[sof + 2] << 8)
                          + data[sof + 3]})
        sixteen = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)
        gray = noisy[..., 0]
        bgra = np.dstack([noisy, rng.integers(0, 256, (h, w), dtype=np.uint8)])
        for px, rgb in [(noisy, noisy[..., ::-1]), (gray, np.repeat(gray[..., None], 3, 2)),
                        (bgra, noisy[..., ::-1]),
                        (sixteen, (sixteen >> 8).astype(np.uint8)[..., ::-1])]:
            data = cv2.imencode(".png", px)[1].tobytes()
            bases.append({"fmt": "png", "data": data, "rgb": np.ascontiguousarray(rgb),
                          "size": (h, w), "dims_at": 16, "header_end": 33})
        data = cv2.imencode(".tiff", noisy)[1].tobytes()
        bases.append({"fmt": "tiff", "data": data, "rgb": noisy[..., ::-1].copy(), "size": (h, w),
                      "dims_at": None, "header_end": 8})
    return bases


def _with_size(base: dict, w: int, h: int, fix_crc: bool) -> bytes:
    data = bytearray(base["data"])
    at = base["dims_at"]
    if base["fmt"] == "jpeg":
        data[at:at + 4] = struct.pack(">HH", h, w)
    else:
        data[at:at + 8] = struct.pack(">II", w, h)
        if fix_crc:
            data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


FORMAT_STRINGS = ["jpeg", "png", "tiff", "", "rgb8; jpeg compressed bgr8", "bgr8; png", "h264",
                  "16UC1; compressedDepth png", "\x00"]
OTHER_CODECS = [".bmp", ".webp", ".ppm", ".sr", ".hdr", ".gif"]


def compressed_case(rng, bases: list[dict], limit: int = LIMIT):
    """One sensor_msgs/CompressedImage as a dict, and its expectation for ``max_pixels=limit``."""
    base = bases[int(rng.integers(0, len(bases)))]
    data, h, w = base["data"], *base["size"]
    fmt = str(rng.choice(FORMAT_STRINGS))  # the decoder reads the bytes, not this field
    kind = rng.random()
    if kind < 0.2:
        expect = ("close" if base["fmt"] == "jpeg" else "ok", base["rgb"])
    elif kind < 0.35:
        data = data[:int(rng.integers(1, len(data)))]
        expect = ("shape", (h, w))
    elif kind < 0.55 and base["dims_at"] is not None:
        nw, nh = (int(v) if rng.random() < 0.8 else int(rng.choice([0, 65535]))
                  for v in rng.integers(1, 300, 2))
        if base["fmt"] == "png" and rng.random() < 0.2:
            nw = 2**31 - 1
        data = _with_size(base, nw, nh, fix_crc=rng.random() < 0.5)
        expect = (("error", "empty") if nw * nh == 0 else ("error", "too large")
                  if nw * nh > limit else ("shape", (nh, nw)))
    elif kind < 0.7:  # a valid header, a corrupt body
        buf = bytearray(data)
        start = base["header_end"]
        for i in rng.integers(start, len(buf), int(rng.integers(1, 20))):
            buf[i] = int(rng.integers(0, 256))
        data = bytes(buf)
        expect = ("shape", (h, w)) if base["fmt"] != "tiff" else ("any", None)
    elif kind < 0.8:  # garbage, sometimes behind a real signature
        data = rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes()
        data = (b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*",
                b"\xff\xd8\xff\xc0\x00\x11\x08")[int(rng.integers(0, 6))] + data
        expect = ("any", None)
    elif kind < 0.88:  # the header of one image, the body of another
        other = bases[int(rng.integers(0, len(bases)))]["data"]
        cut = int(rng.integers(1, len(data)))
        data = data[:cut] + other[int(rng.integers(0, len(other))):]
        expect = ("any", None)
    elif kind < 0.95:
        ext = str(rng.choice(OTHER_CODECS))
        px = base["rgb"].astype(np.float32) if ext == ".hdr" else base["rgb"]
        data = cv2.imencode(ext, px)[1].tobytes()
        expect = ("error", "unsupported")
    else:
        data = b""
        expect = ("error", "empty")
    return {"format": fmt, "data": data}, expect


def check(out, expect, limit: int = LIMIT) -> str | None:
    """None when a decoded image ``out`` fits ``expect``, else what is wrong."""
    what, ref = expect
    if not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 3
            and out.shape[2] == 3):
        return f"not an RGB uint8 image: {type(out)} {getattr(out, 'shape', '')}"
    if what == "error":
        return f"decoded {out.shape}, expected an error matching {ref!r}"
    if what == "shape" and out.shape[:2] != ref:
        return f"decoded {out.shape}, expected {ref} or an error"
    if what == "any" and out.shape[0] * out.shape[1] > limit:
        return f"decoded {out.shape}, over the limit {limit}"
    if what in ("ok", "close"):
        if out.shape != ref.shape:
            return f"decoded {out.shape}, expected {ref.shape}"
        diff = np.abs(out.astype(int) - ref.astype(int))
        if what == "ok" and diff.max() > 0 or diff.mean() > 1.0 or diff.max() > 16:
            return f"pixels differ from the reference (mean {diff.mean():.2f}, max {diff.max()})"
    return None
