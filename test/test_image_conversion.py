"""sensor_msgs Image / CompressedImage -> RGB for every common encoding, with row padding.

Inputs are built independently of the decoder: OpenCV's RGB -> X conversions (the inverse of what
the decoder does), a hand-made Bayer mosaic, and rows padded with garbage bytes up to ``step``.
"""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from rba_core.pipeline.image_msgs import (RGB_TO, ImageDecodeError, compressed_fields, decode_image,
                                         image_array, rgb_fields)

H, W = 24, 32
PAD_BYTE = 0xAB


def smooth_rgb() -> np.ndarray:
    """A smooth colour image (demosaicing and 4:2:2 chroma are near-lossless on it)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    r = 40 + 5 * x
    g = 30 + 6 * y
    b = 200 - 3 * x - 2 * y
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def raw_msg(pixels: np.ndarray, encoding: str, pad: int = 0):
    """An Image-like message; ``pad`` garbage bytes after every row."""
    h = pixels.shape[0]
    rows = np.ascontiguousarray(pixels).reshape(h, -1).view(np.uint8)
    data = np.full((h, rows.shape[1] + pad), PAD_BYTE, np.uint8)
    data[:, : rows.shape[1]] = rows
    return SimpleNamespace(height=h, width=pixels.shape[1], encoding=encoding, is_bigendian=0,
                           step=data.shape[1], data=data.tobytes())


def bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Mosaic: pattern 'rggb' = row 0: R G, row 1: G B (as in the ROS encoding names)."""
    idx = {"r": 0, "g": 1, "b": 2}
    out = np.zeros(rgb.shape[:2], rgb.dtype)
    for k, ch in enumerate(pattern):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, idx[ch]]
    return out


CASES = {  # encoding -> (RGB -> message pixels, max allowed mean abs error)
    "rgb8": (lambda im: im, 0),
    "bgr8": (lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2BGR), 0),
    "rgba8": (lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2RGBA), 0),
    "bgra8": (lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2BGRA), 0),
    "yuv422": (lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2YUV_UYVY), 3),
    "uyvy": (lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2YUV_UYVY), 3),
    "yuyv": (lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2YUV_YUYV), 3),
    "yuv422_yuy2": (lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2YUV_YUY2), 3),
    "bayer_rggb8": (lambda im: bayer(im, "rggb"), 4),
    "bayer_bggr8": (lambda im: bayer(im, "bggr"), 4),
    "bayer_gbrg8": (lambda im: bayer(im, "gbrg"), 4),
    "bayer_grbg8": (lambda im: bayer(im, "grbg"), 4),
    "rgb16": (lambda im: im.astype(np.uint16) * 257, 1),
    "bgr16": (lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257, 1),
}


@pytest.mark.parametrize("pad", [0, 7])
@pytest.mark.parametrize("encoding", sorted(CASES))
def test_colour_encodings_round_trip(encoding, pad):
    rgb = smooth_rgb()
    forward, tol = CASES[encoding]
    out = decode_image(raw_msg(forward(rgb), encoding, pad))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    inner = (slice(2, -2), slice(2, -2))  # demosaicing is approximate at the border
    err = np.abs(out[inner].astype(int) - rgb[inner].astype(int))
    assert err.mean() <= tol + 0.01, f"{encoding}: mean abs error {err.mean():.2f}"
    # channel order must be right: swapping R and B would be off by ~100 on this image
    assert err.max() <= max(3 * tol, 1) + 8


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_becomes_grey_rgb(encoding, pad):
    grey = cv2.cvtColor(smooth_rgb(), cv2.COLOR_RGB2GRAY)
    pixels = grey if encoding == "mono8" else grey.astype(np.uint16) * 257
    out = decode_image(raw_msg(pixels, encoding, pad))
    assert out.shape == (H, W, 3)
    for c in range(3):
        assert np.abs(out[..., c].astype(int) - grey).max() <= 1


def test_padding_bytes_are_ignored():
    """The same image with and without padding decodes identically (padding = 0xAB garbage)."""
    rgb = smooth_rgb()
    assert np.array_equal(decode_image(raw_msg(rgb, "rgb8", 0)),
                          decode_image(raw_msg(rgb, "rgb8", 13)))


def test_last_row_may_omit_its_padding():
    msg = raw_msg(smooth_rgb(), "rgb8", 4)
    msg.data = msg.data[:-4]  # step * (h - 1) + row bytes: valid
    assert np.array_equal(decode_image(msg), smooth_rgb())


@pytest.mark.parametrize("fmt, ext, tol", [("jpeg", ".jpg", 4), ("png", ".png", 0)])
def test_compressed(fmt, ext, tol):
    rgb = smooth_rgb()
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    out = decode_image(SimpleNamespace(format=fmt, data=buf.tobytes()))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() <= tol + 0.01


def _bad_messages():
    rgb = smooth_rgb()
    good = raw_msg(rgb, "rgb8")
    ok, jpg = cv2.imencode(".jpg", rgb)
    yield "unknown encoding", SimpleNamespace(**{**vars(good), "encoding": "rgb9"}), "unsupported"
    yield "planar nv12", SimpleNamespace(**{**vars(good), "encoding": "nv12"}), "unsupported"
    yield "float image", SimpleNamespace(**{**vars(good), "encoding": "32FC1"}), "not a camera"
    yield "step too small", SimpleNamespace(**{**vars(good), "step": W * 3 - 1}), "step"
    yield "truncated data", SimpleNamespace(**{**vars(good), "data": good.data[:-10]}), "needs"
    yield "empty", SimpleNamespace(**{**vars(good), "height": 0}), "empty"
    yield "huge", SimpleNamespace(**{**vars(good), "height": 100_000, "width": 100_000}), "large"
    yield "truncated jpeg", SimpleNamespace(format="jpeg", data=jpg.tobytes()[:200]), "decode"
    yield "empty jpeg", SimpleNamespace(format="jpeg", data=b""), "empty"
    yield "garbage png", SimpleNamespace(format="png", data=bytes(range(256)) * 4), "unsupported"


@pytest.mark.parametrize("case", list(_bad_messages()), ids=lambda c: c[0])
def test_bad_messages_raise_one_clear_error(case):
    _, msg, words = case
    with pytest.raises(ImageDecodeError, match=words):
        decode_image(msg)


def test_rclpy_messages_decode_too():
    """The node hands rclpy messages (array.array data) straight to the decoder."""
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    rgb = smooth_rgb()
    ref = raw_msg(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), "bgr8", 3)
    msg = sensor_msgs.Image(height=ref.height, width=ref.width, encoding="bgr8",
                            step=ref.step, data=ref.data)
    assert np.array_equal(decode_image(msg), rgb)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cmsg = sensor_msgs.CompressedImage(format="png", data=png.tobytes())
    assert np.array_equal(decode_image(cmsg), rgb)


@pytest.mark.parametrize("pad", [0, 5])
def test_image_array_reads_outputs_and_masks_as_stored(pad):
    """mono8 class ids, 32FC1 scores, big-endian mono16 and 16-bit png label masks."""
    ids = (np.arange(H * W) % 251).astype(np.uint8).reshape(H, W)
    assert np.array_equal(image_array(raw_msg(ids, "mono8", pad)), ids)
    scores = np.linspace(-3, 3, H * W, dtype=np.float32).reshape(H, W)
    out = image_array(raw_msg(scores, "32FC1", pad))
    assert out.dtype == np.float32 and np.array_equal(out, scores)
    labels = (np.arange(H * W) * 37 % 65536).astype(np.uint16).reshape(H, W)
    big = raw_msg(labels.astype(">u2"), "mono16", pad)
    big.is_bigendian = 1
    out = image_array(big)
    assert out.dtype == np.uint16 and np.array_equal(out, labels)
    ok, png = cv2.imencode(".png", labels)
    assert np.array_equal(image_array(SimpleNamespace(format="png", data=png.tobytes())), labels)
    rgb = smooth_rgb()
    assert np.array_equal(image_array(raw_msg(rgb, "rgb8", pad)), rgb)


@pytest.mark.parametrize("encoding", sorted(RGB_TO))
def test_encoded_frames_decode_back(encoding):
    rgb = smooth_rgb()
    want = rgb if encoding != "mono8" else np.repeat(
        cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    assert np.array_equal(decode_image(SimpleNamespace(**rgb_fields(rgb, encoding))), want)


@pytest.mark.parametrize("fmt, tol", [("jpeg", 4), ("png", 0)])
def test_compressed_frames_decode_back(fmt, tol):
    rgb = smooth_rgb()
    msg = SimpleNamespace(**compressed_fields(rgb, fmt))
    assert msg.format == fmt
    assert np.abs(decode_image(msg).astype(int) - rgb.astype(int)).mean() <= tol + 0.01
