"""Hostile image messages: decompression bombs refused from the header, and 12,000 fuzzed messages.

Bombs are measured in a fresh process (decode call alone: wall time, peak RSS from the kernel's
high-water mark). The header parser is checked against what OpenCV actually decodes, on images
built to trip a naive parser. The fuzz expectations come from ``fuzz_images`` (numpy references,
the encoded pixels, Pillow), never from the decoder.
"""
import array
import struct
import time
from collections import Counter
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from bombs import jpeg_bomb, jpeg_scan_bomb, measure, png_bomb, png_chunk_bomb
from conftest import REPO
from fuzz_images import LIMIT, check, compressed_bases, compressed_case, raw_case
from rba_core.pipeline.image_msgs import (DEFAULT_MAX_PIXELS, ImageDecodeError, compressed_size,
                                         decode_image, image_array)


def compressed(data: bytes, fmt: str = "jpeg"):
    return SimpleNamespace(format=fmt, data=data)


# -- bombs -----------------------------------------------------------------------------------------
BOMBS = {  # name: (format, bytes, refusal); main: seconds and gigabytes for each
    "png 20000x20000": ("png", lambda: png_bomb(20000, 20000), "image too large (20000x20000"),
    "jpeg 20000x20000": ("jpeg", lambda: jpeg_bomb(20000, 20000), "image too large (20000x20000"),
    "png 2 GB chunk": ("png", png_chunk_bomb, "truncated PNG: chunk b'IDAT'"),
    "jpeg 200 scans": ("jpeg", lambda: jpeg_scan_bomb(4096, 200), "JPEG with 210 scans"),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_bomb_is_refused_from_its_header_fast_and_without_memory(name, tmp_path):
    """Each bomb is < 500 KB; main decoded them (seconds, up to 2.3 GB) before refusing."""
    fmt, make, refusal = BOMBS[name]
    data = make()
    assert len(data) < 500_000
    path = tmp_path / f"bomb.{fmt}"
    path.write_bytes(data)
    r = measure(REPO, path, fmt)
    assert r["outcome"].startswith(f"ImageDecodeError: {refusal}"), r
    assert r["seconds"] < 0.05 and r["extra_mb"] < 50, r


def tiff(width: int, height: int, pixels: bytes) -> bytes:
    """A minimal uncompressed 8-bit gray TIFF (little endian, one strip), built by hand."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
            (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, len(pixels))]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHII" if t == 4 else "<HHIHH", tag, t, 1, value, *([] if t == 4 else [0]))
        for tag, t, value in tags) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8 + len(pixels)) + pixels + ifd


@pytest.mark.parametrize("name, data", [
    ("jpeg 65500x65500", jpeg_bomb(65500, 65500)),  # main: a bare cv2.error, not ours
    ("png 2^31-1 wide",
     png_bomb(8, 8)[:16] + struct.pack(">II", 2**31 - 1, 8) + png_bomb(8, 8)[24:]),
    ("tiff 20000x20000", tiff(20000, 20000, bytes(64))),
])
def test_other_bombs_are_refused_as_too_large(name, data):
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(compressed(data))


def test_limit_is_max_image_pixels_at_the_boundary():
    img = np.random.default_rng(0).integers(0, 255, (50, 80, 3), dtype=np.uint8)
    for ext, fmt in ((".png", "png"), (".jpg", "jpeg"), (".tiff", "tiff")):
        msg = compressed(cv2.imencode(ext, img)[1].tobytes(), fmt)
        assert decode_image(msg, max_pixels=4000).shape == (50, 80, 3)
        with pytest.raises(ImageDecodeError, match=r"too large \(80x50 declared by the"):
            decode_image(msg, max_pixels=3999)
    assert DEFAULT_MAX_PIXELS == 4096 * 4096  # the node's documented default


# -- the header parser agrees with what OpenCV decodes ---------------------------------------
def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def tricky_jpegs():
    """JPEGs (64x48) that a parser searching for the first 0xFFC0 would misread."""
    img = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 255, (48, 64, 3), np.uint8),
                           (5, 5), 0)
    plain = cv2.imencode(".jpg", img)[1].tobytes()
    yield "baseline", plain, (64, 48)
    progressive = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    yield "progressive", progressive, (64, 48)
    thumb = jpeg_bomb(20000, 20000)  # an EXIF thumbnail whose own SOF declares 20000x20000
    exif = _segment(0xE1, b"Exif\x00\x00" + thumb)
    yield "exif thumbnail", plain[:2] + exif + plain[2:], (64, 48)
    yield "fill bytes", plain[:2] + b"\xff\xff\xff" + plain[2:], (64, 48)
    yield "comment with a fake SOF", plain[:2] + _segment(0xFE, b"\xff\xc0\x00\x11\x08\x4e\x20") \
        + plain[2:], (64, 48)
    # bytes between segments are skipped by libjpeg (with a warning), 0xFF00 included
    yield "garbage between segments", plain[:20] + b"\x00\x12\xff\x00junk" + plain[20:], (64, 48)
    # ... so a frame header hidden in such garbage is the one libjpeg uses
    sof = plain.index(b"\xff\xc0")
    hidden = plain[sof:sof + 19]
    hidden = hidden[:5] + struct.pack(">HH", 96, 128) + hidden[9:]
    yield "frame header in garbage", plain[:20] + b"\x00junk" + hidden + plain[20:sof] \
        + plain[sof + 19:], (128, 96)


@pytest.mark.parametrize("case", list(tricky_jpegs()), ids=lambda c: c[0])
def test_jpeg_size_is_the_one_libjpeg_reads(case):
    _, data, (w, h) = case
    assert compressed_size(data) == ("jpeg", w, h)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # OpenCV alone
    assert decoded is not None and decoded.shape == (h, w, 3)
    assert decode_image(compressed(data)).shape == (h, w, 3)
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(compressed(data), max_pixels=w * h - 1)


def test_tiff_and_png_sizes_and_pixels():
    pixels = bytes(range(7 * 5))
    data = tiff(7, 5, pixels)
    assert compressed_size(data) == ("tiff", 7, 5)
    gray = np.frombuffer(pixels, np.uint8).reshape(5, 7)
    assert np.array_equal(decode_image(compressed(data, "tiff")), np.repeat(gray[..., None], 3, 2))
    assert compressed_size(png_bomb(300, 7)) == ("png", 300, 7)
    assert np.array_equal(image_array(compressed(png_bomb(30, 7), "png")), np.zeros((7, 30)))


@pytest.mark.parametrize("ext, name", [(".bmp", "bmp"), (".webp", "webp"), (".ppm", "pnm"),
                                       (".gif", "gif"), (".sr", "sun raster")])
def test_other_formats_are_refused_by_name(ext, name):
    data = cv2.imencode(ext, np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    with pytest.raises(ImageDecodeError, match=f"unsupported compressed image \\({name}"):
        decode_image(compressed(data))


def test_raw_image_with_a_huge_step_allocates_nothing():
    """One row, step 2^32-1 (uint32 max): main padded the row to 4 GB before slicing it."""
    msg = SimpleNamespace(height=1, width=10, encoding="mono8", is_bigendian=0,
                          step=2**32 - 1, data=bytes(range(10)))
    assert decode_image(msg)[0, :, 0].tolist() == list(range(10))


# -- fuzz ------------------------------------------------------------------------------------------
N_RAW, N_COMPRESSED = 7000, 5000


def test_fuzzed_messages_raise_only_our_error_and_valid_ones_decode_right():
    """12,000 generated messages through decode_image (and image_array): only ImageDecodeError,
    valid ones equal to the reference, nothing over the pixel limit."""
    rng = np.random.default_rng(2024)
    bases = compressed_bases(rng)
    cases = [raw_case(rng) for _ in range(N_RAW)] + \
        [compressed_case(rng, bases) for _ in range(N_COMPRESSED)]
    outcomes, wrong = Counter(), []
    t0 = time.perf_counter()
    for i, (fields, expect) in enumerate(cases):
        if i % 3 == 0:  # rclpy hands over array.array('B')
            fields = {**fields, "data": array.array("B", fields["data"])}
        msg = SimpleNamespace(**fields)
        try:
            out = decode_image(msg, max_pixels=LIMIT)
        except ImageDecodeError as exc:
            outcomes[f"{expect[0]}: refused"] += 1
            if expect[0] in ("ok", "close") or (expect[0] == "error"
                                                 and expect[1] not in str(exc)):
                wrong.append((i, expect[0], f"ImageDecodeError: {exc}"))
        except Exception as exc:  # noqa: BLE001 - what this test is about
            wrong.append((i, expect[0], f"{type(exc).__name__}: {exc}"))
        else:
            outcomes[f"{expect[0]}: decoded"] += 1
            if (problem := check(out, expect)) is not None:
                wrong.append((i, expect[0], problem))
        try:  # label masks / node outputs: pixels as stored
            arr = image_array(msg, max_pixels=LIMIT)
            assert arr.shape[0] * arr.shape[1] <= LIMIT, arr.shape
        except ImageDecodeError:
            pass
        except Exception as exc:  # noqa: BLE001
            wrong.append((i, "image_array", f"{type(exc).__name__}: {exc}"))
    seconds = time.perf_counter() - t0
    print(f"\n{len(cases)} messages in {seconds:.1f} s: {dict(sorted(outcomes.items()))}")
    assert not wrong, f"{len(wrong)} wrong, e.g. {wrong[:5]}"
    # the generator really covers both sides
    assert outcomes["ok: decoded"] >= 2000 and outcomes["close: decoded"] >= 200, outcomes
    assert outcomes["error: refused"] >= 3000, outcomes
    assert outcomes["shape: decoded"] >= 100 and outcomes["shape: refused"] >= 500, outcomes
