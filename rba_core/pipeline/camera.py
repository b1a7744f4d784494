"""Camera model from CameraInfo fields: pixel -> viewing ray, with lens distortion, binning, ROI.

Built from plain values (``k``, ``d``, ``distortion_model``, ``width``, ``height``, ``binning_x/y``,
``roi``) so rba_core never needs rclpy; :meth:`CameraModel.from_msg` reads them off any
CameraInfo-like object (rclpy or rosbags message). Conventions follow ``image_geometry``:
``k`` and ``d`` describe the full, unbinned sensor; a published image pixel (u, v) is the sensor
pixel (u * binning_x + roi.x_offset, v * binning_y + roi.y_offset).

Distortion: ``plumb_bob`` / ``rational_polynomial`` through ``cv2.undistortPoints``,
``equidistant`` (fisheye) through ``cv2.fisheye.undistortPoints``; all-zero ``d`` is the plain
pinhole path (K^-1). Rays for a whole pixel grid are cached per camera and grid size
(:func:`pixel_rays`), so a stream of frames with the same CameraInfo pays for them once.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..errors import RbaError

PINHOLE_MODELS = ("plumb_bob", "rational_polynomial")
FISHEYE_MODELS = ("equidistant",)
# iterative undistortion: strong distortion needs more than OpenCV's default 5 iterations
CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
MAX_REPROJECTION_PX = 0.5  # a ray that does not image back to its pixel is dropped (NaN)


class CameraModelError(RbaError, ValueError):
    """CameraInfo values that cannot describe a camera (one line, names the field)."""


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics of one camera; hashable, so it keys the ray caches."""
    k: tuple[float, ...]               # 9 values, row-major, full sensor
    d: tuple[float, ...] = ()
    distortion_model: str = ""
    width: int = 0                     # calibration (full sensor) size; 0 = unknown
    height: int = 0
    binning_x: int = 1
    binning_y: int = 1
    roi: tuple[int, int, int, int] = (0, 0, 0, 0)  # x_offset, y_offset, width, height (0 = full)

    @classmethod
    def from_fields(cls, k, d=(), distortion_model: str = "", width: int = 0, height: int = 0,
                    binning_x: int = 0, binning_y: int = 0, roi=None) -> "CameraModel":
        """Validated model from CameraInfo values (``roi``: (x, y, w, h), a dict or None)."""
        k = tuple(float(v) for v in np.asarray(k, np.float64).ravel())
        if len(k) != 9 or not np.isfinite(k).all() or k[0] <= 0 or k[4] <= 0 \
                or abs(k[8] - 1.0) > 1e-6:
            raise CameraModelError("camera_info.k: needs 9 finite values with fx, fy > 0 and "
                                   "k[8] = 1")
        d = tuple(float(v) for v in np.asarray(d if d is not None else (), np.float64).ravel())
        if not np.isfinite(d).all():
            raise CameraModelError("camera_info.d: distortion coefficients must be finite")
        model = (distortion_model or "").strip()
        if any(d):
            if model in ("", "plumb_bob") and len(d) not in (4, 5, 8, 12, 14):
                raise CameraModelError(f"camera_info.d: plumb_bob needs 5 coefficients, "
                                       f"got {len(d)}")
            if model == "rational_polynomial" and len(d) not in (8, 12, 14):
                raise CameraModelError(f"camera_info.d: rational_polynomial needs 8, "
                                       f"got {len(d)}")
            if model in FISHEYE_MODELS and len(d) != 4:
                raise CameraModelError(f"camera_info.d: equidistant needs 4, got {len(d)}")
            if model not in ("", *PINHOLE_MODELS, *FISHEYE_MODELS):
                raise CameraModelError(f"camera_info.distortion_model: {model!r} is not "
                                       f"supported (plumb_bob, rational_polynomial, "
                                       f"equidistant)")
        if isinstance(roi, dict):
            roi = (roi.get("x_offset", 0), roi.get("y_offset", 0), roi.get("width", 0),
                   roi.get("height", 0))
        roi = tuple(int(v) for v in (roi or (0, 0, 0, 0)))
        width, height = int(width), int(height)
        bx, by = max(int(binning_x), 1), max(int(binning_y), 1)  # 0 = no binning (ROS)
        if min(roi) < 0 or min(width, height) < 0:
            raise CameraModelError("camera_info.roi: offsets and sizes must be >= 0")
        if width and height and (roi[0] + roi[2] > width or roi[1] + roi[3] > height):
            raise CameraModelError(f"camera_info.roi: {roi[2]}x{roi[3]}+{roi[0]}+{roi[1]} "
                                   f"exceeds the {width}x{height} sensor")
        return cls(k, d, model, width, height, bx, by, roi)

    @classmethod
    def from_msg(cls, info) -> "CameraModel":
        """From a sensor_msgs/CameraInfo-like object (attributes as in the message)."""
        roi = getattr(info, "roi", None)
        roi = None if roi is None else (roi.x_offset, roi.y_offset, roi.width, roi.height)
        return cls.from_fields(info.k, getattr(info, "d", ()),
                               getattr(info, "distortion_model", ""), getattr(info, "width", 0),
                               getattr(info, "height", 0), getattr(info, "binning_x", 0),
                               getattr(info, "binning_y", 0), roi)

    # -- geometry --------------------------------------------------------------------------------
    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the usual name
        return np.asarray(self.k, np.float64).reshape(3, 3)

    @property
    def distorted(self) -> bool:
        return any(self.d)

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(width, height) of the images this CameraInfo describes (binned, ROI); None unknown."""
        w = self.roi[2] or self.width
        h = self.roi[3] or self.height
        if not (w and h):
            return None
        return w // self.binning_x, h // self.binning_y

    def sensor_pixels(self, us: np.ndarray, vs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Published image pixels -> full sensor pixels (binning, then ROI offset)."""
        return us * self.binning_x + self.roi[0], vs * self.binning_y + self.roi[1]

    def rays(self, us: np.ndarray, vs: np.ndarray) -> np.ndarray:
        """Image pixels [N] -> viewing rays [N, 3] (camera optical frame, z = 1; NaN = invalid)."""
        us, vs = self.sensor_pixels(np.asarray(us, np.float64), np.asarray(vs, np.float64))
        out = np.ones((us.size, 3), np.float64)
        if us.size == 0:
            return out
        pix = np.stack([us.ravel(), vs.ravel()], -1)  # [N, 2]
        if not self.distorted:
            k = self.K
            out[:, 0] = (pix[:, 0] - k[0, 2] - k[0, 1] * (pix[:, 1] - k[1, 2]) / k[1, 1]) / k[0, 0]
            out[:, 1] = (pix[:, 1] - k[1, 2]) / k[1, 1]
            return out
        out[:, :2] = self._undistort(pix)
        # rays outside the distortion model's valid domain do not image back to their pixel
        back = self.project(out)
        bad = ~(np.linalg.norm(back - pix, axis=1) <= MAX_REPROJECTION_PX)
        out[bad] = np.nan
        return out

    def _undistort(self, pix: np.ndarray) -> np.ndarray:
        src = pix.reshape(-1, 1, 2).astype(np.float64)
        d = np.asarray(self.d, np.float64)
        if self.distortion_model in FISHEYE_MODELS:
            und = cv2.fisheye.undistortPoints(src, self.K, d, criteria=CRITERIA)
        else:
            und = _undistort_points(src, self.K, d)
        return und.reshape(-1, 2)

    def project(self, rays: np.ndarray) -> np.ndarray:
        """Camera-frame points / rays [N, 3] -> sensor pixels [N, 2] (OpenCV's model)."""
        pts = np.asarray(rays, np.float64).reshape(-1, 1, 3)
        zero = np.zeros(3)
        d = np.asarray(self.d, np.float64)
        if self.distortion_model in FISHEYE_MODELS:
            px, _ = cv2.fisheye.projectPoints(pts, zero, zero, self.K, d)
        else:
            px, _ = cv2.projectPoints(pts, zero, zero, self.K, d if self.distorted else None)
        return px.reshape(-1, 2)


def _undistort_points(src: np.ndarray, k: np.ndarray, d: np.ndarray) -> np.ndarray:
    """cv2.undistortPoints with enough iterations (OpenCV 5 takes criteria; 4.x has ...Iter)."""
    try:
        return cv2.undistortPoints(src, k, d, criteria=CRITERIA)
    except (TypeError, cv2.error):
        return cv2.undistortPointsIter(src, k, d, None, None, CRITERIA)


def grid_scale(camera: CameraModel, shape: tuple[int, int]) -> tuple[float, float]:
    """(sx, sy) from a map of ``shape`` (H, W) to the camera's image pixels (1 when unknown)."""
    size = camera.image_size
    if size is None:
        return 1.0, 1.0
    return size[0] / shape[1], size[1] / shape[0]


@lru_cache(maxsize=8)
def pixel_rays(camera: CameraModel, shape: tuple[int, int]) -> np.ndarray:
    """Rays [H, W, 3] float64 of every pixel centre of a map of ``shape`` (read-only, cached).

    The map may be a resized copy of the camera's image (e.g. an engine's input size); its pixel
    centres are scaled to image pixels first.
    """
    h, w = shape
    sx, sy = grid_scale(camera, shape)
    vs, us = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = camera.rays((us.ravel() + 0.5) * sx - 0.5, (vs.ravel() + 0.5) * sy - 0.5)
    rays = rays.reshape(h, w, 3)
    rays.setflags(write=False)
    return rays
