"""Ground geometry: where pixel rays meet the ground plane z = 0 of a ground frame.

Frames: the camera optical frame (x right, y down, z forward) and a ground frame (z up, the
ground is z = 0): ``ground_frame`` from TF, or, when that is empty, the "level" frame built from
the ``ground.*`` parameters (:func:`level_pose`: origin on the ground below the camera, x forward,
y left, z up; the camera ``camera_height`` above it, pitched down by ``pitch``, rolled by
``roll``). :func:`ground_map` intersects every pixel's ray (lens distortion included, see
``camera.py``) with the ground once per camera, map size and pose (cached).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .camera import CameraModel, grid_scale, pixel_rays
from .config import GroundConfig
from .transforms import Pose

# level frame (x forward, y left, z up) <- camera optical axes (x right, y down, z forward)
OPTICAL_TO_LEVEL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def camera_to_level(pitch: float, roll: float) -> np.ndarray:
    """Rotation R with p_level = R @ p_camera."""
    cp, sp, cr, sr = np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    r_pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_pitch @ r_roll


def level_pose(cfg: GroundConfig) -> Pose:
    """Camera optical frame -> level ground frame from ``ground.*`` (the no-TF fallback)."""
    return Pose.make(OPTICAL_TO_LEVEL @ camera_to_level(cfg.pitch, cfg.roll),
                     (0.0, 0.0, cfg.camera_height))


@dataclass(frozen=True)
class GroundMap:
    """Per-pixel ray geometry of one camera, map size and pose, in the ground frame."""
    origin: np.ndarray   # [3] camera centre
    dirs: np.ndarray     # [H, W, 3] float32 unit ray directions (NaN: no ray)
    points: np.ndarray   # [H, W, 3] float32 ground intersection (z = 0; NaN: above the horizon)
    range: np.ndarray    # [H, W] float32 horizontal distance from below the camera (inf: none)
    azimuth: np.ndarray  # [H, W] float32 ray bearing about z (constant along world verticals)
    pixel_angle: float   # radians per map pixel near the image centre (bins of azimuth)

    @property
    def shape(self) -> tuple[int, int]:
        return self.range.shape


@lru_cache(maxsize=8)
def ground_map(camera: CameraModel, shape: tuple[int, int], pose: Pose) -> GroundMap:
    """Rays of a map of ``shape`` (H, W) meeting z = 0 in front of the camera (cached)."""
    rays = pixel_rays(camera, tuple(shape))
    dirs = rays / np.linalg.norm(rays, axis=-1, keepdims=True) @ pose.R.T  # [H, W, 3]
    origin = pose.t
    dz = dirs[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(dz < -1e-9, -origin[2] / dz, np.nan)  # ray length to the plane
    s[~(s > 0)] = np.nan  # camera below the plane, or ray pointing up / at the horizon
    points = origin + dirs * s[..., None]
    points[..., 2] = np.where(np.isnan(s), np.nan, 0.0)
    rng = np.hypot(points[..., 0] - origin[0], points[..., 1] - origin[1])
    rng[np.isnan(rng)] = np.inf
    sx = grid_scale(camera, tuple(shape))[0]
    out = GroundMap(origin, dirs.astype(np.float32), points.astype(np.float32),
                    rng.astype(np.float32),
                    np.arctan2(dirs[..., 1], dirs[..., 0]).astype(np.float32),
                    float(sx * camera.binning_x / camera.k[0]))
    for a in (out.dirs, out.points, out.range, out.azimuth):
        a.setflags(write=False)
    return out
