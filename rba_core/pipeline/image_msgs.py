"""sensor_msgs Image / CompressedImage <-> numpy, for rclpy and rosbags messages alike.

The one place where image messages are read and written:

- decode: ``decode_raw`` / ``decode_compressed`` / ``decode_image`` -> RGB uint8 (camera frames);
  ``image_array`` -> the pixels as stored (the node's own outputs, label masks);
- encode: ``image_fields`` (pixels already in the encoding), ``rgb_fields`` (RGB -> rgb8, bgr8,
  rgba8, bgra8, mono8), ``compressed_fields`` (RGB -> jpeg / png).

Raw images are read with rosbags-image (every common encoding: rgb8, bgr8, rgba8, bgra8,
mono8/16, yuv422/uyvy, yuyv, bayer_*, 32FC1, ...) after we remove row padding, which rosbags-image
ignores (``step`` > width * bytes per pixel). Compressed images (jpeg, png) are decoded with OpenCV.
Every malformed message raises :class:`ImageDecodeError` with one line saying what is wrong.
"""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np

from ..errors import RbaError

MAX_PIXELS = 64_000_000  # refuse absurd sizes instead of allocating them
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


def _compact(msg, camera: bool) -> SimpleNamespace:
    """Checked Image fields without row padding, for rosbags-image (which assumes step == row).

    ``camera``: only 8/16-bit images with 1 to 4 channels."""
    h, w, enc, step = int(msg.height), int(msg.width), str(msg.encoding), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageDecodeError(f"empty image ({w}x{h})")
    if h * w > MAX_PIXELS:
        raise ImageDecodeError(f"image too large ({w}x{h} > {MAX_PIXELS} pixels)")
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
    if data.size < step * h:  # the last row's padding may be missing
        data = np.concatenate([data, np.zeros(step * h - data.size, np.uint8)])
    compact = np.ascontiguousarray(data[: step * h].reshape(h, step)[:, :row]).ravel()
    return SimpleNamespace(height=h, width=w, encoding=enc, step=row, data=compact,
                           is_bigendian=int(getattr(msg, "is_bigendian", 0)))


def decode_raw(msg) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 [H, W, 3] (honours ``step``)."""
    from rosbags.image import image_to_cvimage
    from rosbags.image.image import ImageError

    shim = _compact(msg, camera=True)
    try:
        rgb = image_to_cvimage(shim, "rgb8")
    except (ImageError, cv2.error) as exc:
        raise ImageDecodeError(f"cannot convert {shim.encoding} to rgb8: {exc}") from None
    return np.ascontiguousarray(rgb)


def _imdecode(msg, flags: int) -> np.ndarray:
    """CompressedImage bytes -> OpenCV image (``cv2.IMREAD_*`` flags), size-checked."""
    data = np.frombuffer(msg.data, np.uint8)
    if data.size == 0:
        raise ImageDecodeError("empty compressed image")
    img = cv2.imdecode(data, flags)
    if img is None:
        fmt = getattr(msg, "format", "") or "unknown format"
        raise ImageDecodeError(f"cannot decode compressed image ({fmt}, {data.size} bytes)")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageDecodeError(f"image too large ({img.shape[1]}x{img.shape[0]})")
    return img


def decode_compressed(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png) -> RGB uint8 [H, W, 3]."""
    return cv2.cvtColor(_imdecode(msg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def decode_image(msg) -> np.ndarray:
    """Image or CompressedImage message -> RGB uint8 [H, W, 3]."""
    return decode_compressed(msg) if hasattr(msg, "format") else decode_raw(msg)


def image_array(msg) -> np.ndarray:
    """Image or CompressedImage -> its pixels as stored: [H, W] or [H, W, C] in the encoding's
    dtype (mono8 class ids, 32FC1 scores, 16-bit label masks; native byte order)."""
    if hasattr(msg, "format"):
        return _imdecode(msg, cv2.IMREAD_UNCHANGED)
    from rosbags.image import image_to_cvimage

    return image_to_cvimage(_compact(msg, camera=False)).copy()


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
