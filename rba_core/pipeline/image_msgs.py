"""sensor_msgs Image / CompressedImage <-> numpy, for rclpy and rosbags messages alike.

The one place where image messages are read and written:

- decode: ``decode_raw`` / ``decode_compressed`` / ``decode_image`` -> RGB uint8 (camera frames);
  ``image_array`` -> the pixels as stored (the node's own outputs, label masks);
- encode: ``image_fields`` (pixels already in the encoding), ``rgb_fields`` (RGB -> rgb8, bgr8,
  rgba8, bgra8, mono8), ``compressed_fields`` (RGB -> jpeg / png).

Raw images are read with rosbags-image (every common encoding: rgb8, bgr8, rgba8, bgra8,
mono8/16, yuv422/uyvy, yuyv, bayer_*, 32FC1, ...) after we remove row padding, which rosbags-image
ignores (``step`` > width * bytes per pixel). Compressed images (jpeg, png, tiff: the codecs of
sensor_msgs/CompressedImage) are decoded with OpenCV, but only after the size their header
declares passed ``max_pixels`` (a 400 KB PNG can declare 20000 x 20000 and would cost 2.3 GB and
seconds to decode); other formats are refused. Every malformed message raises
:class:`ImageDecodeError` with one line saying what is wrong.
"""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np

from ..errors import RbaError

DEFAULT_MAX_PIXELS = 16_777_216  # frames with more pixels are refused (the node's max_image_pixels)
MAX_PIXELS = 64_000_000  # the most max_image_pixels may be set to
UNSUPPORTED = {"nv12", "nv21"}  # planar: height counts only the luma plane
RGB_TO = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA,
          "bgra8": cv2.COLOR_RGB2BGRA, "mono8": cv2.COLOR_RGB2GRAY}  # rgb_fields' encodings


class ImageDecodeError(RbaError):
    """An image message cannot be read (or a frame cannot be encoded)."""


def _cvtype(encoding: str):
    """(bits per channel, channels) of a ROS encoding."""
    from rosbags.image.image import ImageFormatError, to_cvtype

    if encoding in UNSUPPORTED:
        raise ImageDecodeError(f"unsupported encoding {encoding!r}")
    try:
        depth, _, _, nchan = to_cvtype(encoding)
    except ImageFormatError:
        raise ImageDecodeError(f"unsupported encoding {encoding!r}") from None
    return depth, nchan


def _check_size(w: int, h: int, max_pixels: int, what: str = "") -> None:
    if h <= 0 or w <= 0:
        raise ImageDecodeError(f"empty image ({w}x{h}{what})")
    if h * w > max_pixels:
        raise ImageDecodeError(f"image too large ({w}x{h}{what} > max_image_pixels {max_pixels})")


def _compact(msg, camera: bool, max_pixels: int) -> SimpleNamespace:
    """Checked Image fields without row padding, for rosbags-image (which assumes step == row).

    ``camera``: only 8/16-bit images with 1 to 4 channels."""
    h, w, enc, step = int(msg.height), int(msg.width), str(msg.encoding), int(msg.step)
    _check_size(w, h, max_pixels)
    depth, nchan = _cvtype(enc)
    if camera and (nchan not in (1, 2, 3, 4) or depth not in (8, 16)):
        raise ImageDecodeError(f"encoding {enc!r} is not a camera image")
    row = w * nchan * depth // 8
    if step < row:
        raise ImageDecodeError(f"step {step} < width x bytes per pixel = {row} ({enc})")
    data = np.frombuffer(msg.data, np.uint8)
    need = step * (h - 1) + row
    if data.size < need:
        raise ImageDecodeError(f"data has {data.size} bytes, {w}x{h} {enc} with step {step} "
                               f"needs {need}")
    # rows of ``row`` bytes every ``step`` bytes (the last row's padding may be missing; a
    # huge step is never allocated)
    rows = np.lib.stride_tricks.as_strided(data, (h, row), (step, 1), writeable=False)
    compact = np.ascontiguousarray(rows).ravel()
    return SimpleNamespace(height=h, width=w, encoding=enc, step=row, data=compact,
                           is_bigendian=int(getattr(msg, "is_bigendian", 0)))


def decode_raw(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 [H, W, 3] (honours ``step``)."""
    from rosbags.image import image_to_cvimage
    from rosbags.image.image import ImageError

    shim = _compact(msg, True, max_pixels)
    try:
        rgb = image_to_cvimage(shim, "rgb8")
    except (ImageError, cv2.error) as exc:
        raise ImageDecodeError(f"cannot convert {shim.encoding} to rgb8: {exc}") from None
    return np.ascontiguousarray(rgb)


# -- compressed: the size from the header, before anything is decoded ----------------------------
# JPEG frame headers (SOFn) libjpeg may meet; the others (C4 DHT, C8 JPG, CC DAC) are segments
MAX_JPEG_SCANS = 64  # progressive JPEGs have ~10; 200 empty scans in 3 KB cost seconds
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
OTHER_FORMATS = [  # signatures of what else cv2.imdecode reads: named in the refusal
    (b"BM", "bmp"), (b"GIF8", "gif"), (b"RIFF", "webp"), (b"PF", "pfm"), (b"Pf", "pfm"),
    (b"P", "pnm"), (b"\x59\xa6\x6a\x95", "sun raster"), (b"\x76\x2f\x31\x01", "exr"),
    (b"#?", "hdr"), (b"\x00\x00\x00\x0cjP", "jpeg 2000"), (b"\xff\x4f\xff\x51", "jpeg 2000")]


def _jpeg_size(b: bytes) -> tuple[int, int]:
    """(width, height) of the first frame header, walking the markers the way libjpeg does
    (bytes between segments skipped, fill 0xFF skipped) up to the first SOFn."""
    i = 2
    while True:
        i = b.find(b"\xff", i)
        while 0 <= i < len(b) and b[i] == 0xFF:
            i += 1
        if i < 0 or i >= len(b):
            raise ImageDecodeError(f"truncated JPEG: no frame header in {len(b)} bytes")
        marker = b[i]
        i += 1
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stuffing, TEM, RSTn
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # SOI, EOI, SOS before any frame header
            raise ImageDecodeError(f"corrupt JPEG: marker 0xFF{marker:02X} before the frame header")
        if i + 2 > len(b):
            break
        length = int.from_bytes(b[i:i + 2], "big")
        if marker in JPEG_SOF:
            if length < 8 or i + 7 > len(b):
                break
            return int.from_bytes(b[i + 5:i + 7], "big"), int.from_bytes(b[i + 3:i + 5], "big")
        if length < 2:
            raise ImageDecodeError(f"corrupt JPEG: segment 0xFF{marker:02X} of length {length}")
        i += length
    raise ImageDecodeError(f"truncated JPEG: no frame header in {len(b)} bytes")


def _png_size(b: bytes) -> tuple[int, int]:
    """(width, height) from IHDR, after checking that every chunk fits in the data: OpenCV
    allocates a chunk's declared length before reading it (a 332-byte PNG claiming a 4 GB chunk
    costs 4 GB and seconds)."""
    if len(b) < 24 or b[12:16] != b"IHDR":  # libpng: IHDR is the first chunk
        raise ImageDecodeError(f"truncated PNG: no IHDR in {len(b)} bytes")
    i = 8
    while i + 8 <= len(b):
        length, kind = int.from_bytes(b[i:i + 4], "big"), b[i + 4:i + 8]
        if i + 12 + length > len(b):
            raise ImageDecodeError(f"truncated PNG: chunk {kind!r} at {i} declares {length} "
                                   f"bytes, {len(b) - i - 12} left")
        if kind == b"IEND":
            break
        i += 12 + length
    return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")


def _tiff_size(b: bytes) -> tuple[int, int]:
    """(width, height) of a TIFF's first page (Pillow reads only the directory)."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd tags and huge sizes
            with Image.open(io.BytesIO(b), formats=["TIFF"]) as im:
                return im.size
    except Image.DecompressionBombError:  # Pillow's own limit (hundreds of M pixels)
        raise ImageDecodeError("image too large (TIFF header)") from None
    except Exception as exc:  # noqa: BLE001 - every way Pillow rejects a header
        raise ImageDecodeError(f"corrupt TIFF header: {exc}") from None


def compressed_size(data) -> tuple[str, int, int]:
    """(format, width, height) a compressed image declares in its header (nothing decoded).

    jpeg, png and tiff are read; anything else raises :class:`ImageDecodeError`."""
    b = bytes(data)
    if b.startswith(b"\xff\xd8\xff"):
        size = _jpeg_size(b)
        if (scans := b.count(b"\xff\xda")) > MAX_JPEG_SCANS:  # entropy data never holds FFDA
            raise ImageDecodeError(f"JPEG with {scans} scans (at most {MAX_JPEG_SCANS}): each "
                                   "scan is a pass over the whole image")
        return ("jpeg", *size)
    if b.startswith(b"\x89PNG\r\n\x1a\n"):
        return ("png", *_png_size(b))
    if b[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return ("tiff", *_tiff_size(b))
    name = "avif" if b[4:8] == b"ftyp" else next(
        (n for magic, n in OTHER_FORMATS if b.startswith(magic)), "unknown format")
    raise ImageDecodeError(f"unsupported compressed image ({name}, starts {b[:8]!r}); "
                           "jpeg, png and tiff are read")


def _imdecode(msg, flags: int, max_pixels: int) -> np.ndarray:
    """CompressedImage bytes -> OpenCV image (``cv2.IMREAD_*`` flags): the one place compressed
    images are decoded, after the size in their header passed ``max_pixels``."""
    data = np.frombuffer(msg.data, np.uint8)
    if data.size == 0:
        raise ImageDecodeError("empty compressed image")
    fmt, w, h = compressed_size(data)
    _check_size(w, h, max_pixels, f" declared by the {fmt} header")
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error as exc:  # OpenCV's own checks
        raise ImageDecodeError(f"cannot decode {fmt} image ({data.size} bytes): "
                               f"{str(exc).strip().splitlines()[-1]}") from None
    if img is None:
        raise ImageDecodeError(f"cannot decode {fmt} image ({w}x{h}, {data.size} bytes)")
    _check_size(img.shape[1], img.shape[0], max_pixels)  # in case a decoder disagrees
    return img


def decode_compressed(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png, tiff) -> RGB uint8 [H, W, 3]."""
    img = _imdecode(msg, cv2.IMREAD_COLOR, max_pixels)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_image(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image or CompressedImage message -> RGB uint8 [H, W, 3]; ``max_pixels``: larger images
    are refused (compressed ones from their header, before decoding)."""
    if hasattr(msg, "format"):
        return decode_compressed(msg, max_pixels)
    return decode_raw(msg, max_pixels)


def image_array(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image or CompressedImage -> its pixels as stored: [H, W] or [H, W, C] in the encoding's
    dtype (mono8 class ids, 32FC1 scores, 16-bit label masks; native byte order)."""
    if hasattr(msg, "format"):
        return _imdecode(msg, cv2.IMREAD_UNCHANGED, max_pixels)
    from rosbags.image import image_to_cvimage

    return image_to_cvimage(_compact(msg, False, max_pixels)).copy()


def image_fields(array: np.ndarray, encoding: str) -> dict:
    """numpy pixels in ``encoding`` -> sensor_msgs/Image fields (height, width, encoding,
    is_bigendian, step, data), e.g. mono8 [H, W] uint8, rgb8 [H, W, 3] uint8, 32FC1 [H, W] float32.
    """
    from rosbags.image.image import to_cvtype

    arr = np.ascontiguousarray(array, dtype=np.dtype(to_cvtype(encoding)[2]))
    h, w = arr.shape[:2]
    return {"height": h, "width": w, "encoding": encoding, "is_bigendian": 0,
            "step": arr.strides[0], "data": arr.reshape(-1).view(np.uint8)}


def rgb_fields(rgb: np.ndarray, encoding: str) -> dict:
    """RGB uint8 [H, W, 3] -> Image fields in one of ``RGB_TO``'s encodings."""
    if encoding not in RGB_TO:
        raise ValueError(f"cannot encode {encoding}")
    code = RGB_TO[encoding]
    return image_fields(rgb if code is None else cv2.cvtColor(rgb, code), encoding)


def compressed_fields(rgb: np.ndarray, fmt: str, quality: int = 90) -> dict:
    """RGB uint8 [H, W, 3] -> CompressedImage fields (format, data): jpeg (``quality``) or png."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png",
                           cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageDecodeError(f"cannot encode a frame as {fmt}")
    return {"format": fmt, "data": buf.reshape(-1)}
