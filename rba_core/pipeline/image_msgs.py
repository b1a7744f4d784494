"""sensor_msgs Image / CompressedImage <-> numpy, for rclpy and rosbags messages alike (duck typing).

Raw images are converted with rosbags-image (every common encoding: rgb8, bgr8, rgba8, bgra8,
mono8/16, yuv422/uyvy, yuyv, bayer_*) after we remove row padding, which rosbags-image ignores
(``step`` > width * bytes per pixel). Compressed images (jpeg, png) are decoded with OpenCV.
Every malformed message raises :class:`ImageDecodeError` with one line saying what is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import RbaError

MAX_PIXELS = 64_000_000  # refuse absurd sizes instead of allocating them
UNSUPPORTED = {"nv12", "nv21"}  # planar: height counts only the luma plane


class ImageDecodeError(RbaError):
    """A message cannot be turned into an RGB image."""


@dataclass
class _Compact:
    """Image fields with unpadded data, for rosbags-image."""
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


def _cvtype(encoding: str):
    from rosbags.image.image import ImageFormatError, to_cvtype

    if encoding in UNSUPPORTED:
        raise ImageDecodeError(f"unsupported encoding {encoding!r}")
    try:
        depth, _, _, nchan = to_cvtype(encoding)
    except ImageFormatError:
        raise ImageDecodeError(f"unsupported encoding {encoding!r}") from None
    return depth, nchan


def decode_raw(msg) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 [H, W, 3] (honours ``step``)."""
    from rosbags.image import image_to_cvimage
    from rosbags.image.image import ImageError

    h, w, enc, step = int(msg.height), int(msg.width), str(msg.encoding), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageDecodeError(f"empty image ({w}x{h})")
    if h * w > MAX_PIXELS:
        raise ImageDecodeError(f"image too large ({w}x{h} > {MAX_PIXELS} pixels)")
    depth, nchan = _cvtype(enc)
    if nchan not in (1, 2, 3, 4) or depth not in (8, 16):
        raise ImageDecodeError(f"encoding {enc!r} is not a camera image")
    row = w * nchan * depth // 8
    if step < row:
        raise ImageDecodeError(f"step {step} < width x bytes per pixel = {row} ({enc})")
    data = np.frombuffer(msg.data, np.uint8)
    need = step * (h - 1) + row
    if data.size < need:
        raise ImageDecodeError(f"data has {data.size} bytes, {w}x{h} {enc} with step {step} "
                               f"needs {need}")
    if step == row:
        compact = data[: row * h]
    else:  # drop row padding (rosbags-image assumes step == row)
        padded = np.zeros(step * h, np.uint8)
        padded[: min(data.size, step * h)] = data[: step * h]
        compact = np.ascontiguousarray(padded.reshape(h, step)[:, :row]).ravel()
    shim = _Compact(h, w, enc, int(getattr(msg, "is_bigendian", 0)), row, compact)
    try:
        rgb = image_to_cvimage(shim, "rgb8")
    except (ImageError, cv2.error) as exc:
        raise ImageDecodeError(f"cannot convert {enc} to rgb8: {exc}") from None
    return np.ascontiguousarray(rgb)


def decode_compressed(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png) -> RGB uint8 [H, W, 3]."""
    data = np.frombuffer(msg.data, np.uint8)
    if data.size == 0:
        raise ImageDecodeError("empty compressed image")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        fmt = getattr(msg, "format", "") or "unknown format"
        raise ImageDecodeError(f"cannot decode compressed image ({fmt}, {data.size} bytes)")
    if bgr.shape[0] * bgr.shape[1] > MAX_PIXELS:
        raise ImageDecodeError(f"image too large ({bgr.shape[1]}x{bgr.shape[0]})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_image(msg) -> np.ndarray:
    """Image or CompressedImage message -> RGB uint8 [H, W, 3]."""
    return decode_compressed(msg) if hasattr(msg, "format") else decode_raw(msg)


def image_fields(array: np.ndarray, encoding: str) -> dict:
    """numpy image -> sensor_msgs/Image fields (height, width, encoding, is_bigendian, step, data).

    ``encoding``: mono8 ([H, W] uint8), rgb8 ([H, W, 3] uint8) or 32FC1 ([H, W] float32).
    """
    dtypes = {"mono8": np.uint8, "rgb8": np.uint8, "bgr8": np.uint8, "32FC1": np.float32}
    if encoding not in dtypes:
        raise ValueError(f"cannot encode {encoding}")
    arr = np.ascontiguousarray(array, dtype=dtypes[encoding])
    h, w = arr.shape[:2]
    return {"height": h, "width": w, "encoding": encoding, "is_bigendian": 0,
            "step": arr.strides[0], "data": arr.reshape(-1).view(np.uint8)}


def encode_rgb(array: np.ndarray, encoding: str) -> np.ndarray:
    """RGB [H, W, 3] -> the given 8-bit encoding's pixel layout (for building test inputs)."""
    conversions = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA,
                   "bgra8": cv2.COLOR_RGB2BGRA, "mono8": cv2.COLOR_RGB2GRAY}
    if encoding not in conversions:
        raise ValueError(f"cannot encode {encoding}")
    code = conversions[encoding]
    return array.copy() if code is None else cv2.cvtColor(array, code)
