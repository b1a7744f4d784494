"""Ground geometry: where pixel rays meet the ground plane z = 0 of a ground frame.

Frames: the camera optical frame (x right, y down, z forward) and a ground frame (z up, the
ground is z = 0): ``ground_frame`` from TF, or, when that is empty, the "level" frame built from
the ``ground.*`` parameters (:func:`level_pose`: origin on the ground below the camera, x forward,
y left, z up; the camera ``camera_height`` above it, pitched down by ``pitch``, rolled by
``roll``). :func:`ground_map` intersects every pixel's ray (lens distortion included, see
``camera.py``) with the ground once per camera, map size and pose (cached).

Legacy (``project_pixels``, ``obstacle_points``): every obstacle pixel projected onto the ground
in the camera frame, what the node publishes until it switches to ``footprints.py``.
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


def intrinsics_matrix(k: list[float] | np.ndarray) -> np.ndarray:
    """CameraInfo.k (row-major 9 values) -> 3x3."""
    return np.asarray(k, np.float64).reshape(3, 3)


def project_pixels(us: np.ndarray, vs: np.ndarray, k: np.ndarray, cfg: GroundConfig
                   ) -> np.ndarray:
    """Pixel coordinates -> [N, 3] float32 points (camera frame) on the lifted ground plane.

    Rays that do not hit the ground in front of the camera (at or above the horizon) or land
    beyond ``max_range`` are dropped.
    """
    if len(us) == 0:
        return np.zeros((0, 3), np.float32)
    rays = np.linalg.solve(k, np.stack([us, vs, np.ones_like(us)]).astype(np.float64))  # [3, N]
    r = camera_to_level(cfg.pitch, cfg.roll)
    level = r @ rays
    down = level[1]
    ok = down > 1e-6
    t = np.where(ok, cfg.camera_height / np.where(ok, down, 1.0), 0.0)
    ground = level * t  # [3, N] level frame, y == camera_height
    dist = np.hypot(ground[0], ground[2])
    ok &= (dist <= cfg.max_range) & (ground[2] > 0)
    ground = ground[:, ok]
    ground[1] -= cfg.point_height
    return (r.T @ ground).T.astype(np.float32)


def obstacle_points(mask: np.ndarray, k: np.ndarray, cfg: GroundConfig,
                    scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Ground points of the obstacle mask [H, W] (every ``stride``-th pixel, pixel centres).

    ``scale`` = (sx, sy) maps mask pixel coordinates to the CameraInfo's image coordinates when
    the mask was computed at another resolution.
    """
    s = cfg.stride
    vs, us = np.nonzero(mask[::s, ::s])
    us = (us * s + 0.5) * scale[0] - 0.5
    vs = (vs * s + 0.5) * scale[1] - 0.5
    return project_pixels(us.astype(np.float64), vs.astype(np.float64), k, cfg)


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
