"""Ground projection: obstacle pixels -> 3D points on a flat ground plane, in the camera frame.

Camera optical frame: x right, y down, z forward. The "level" frame shares the camera origin with
y along gravity; the camera is pitched down by ``pitch`` and rolled by ``roll``. A pixel ray
d = K^-1 [u, v, 1] meets the ground where its level-frame y equals ``camera_height``. Points are
then lifted by ``point_height`` (towards the sky) so that Nav2's obstacle layer, whose height band
starts above the ground, keeps them; they are published in the camera frame and Nav2 transforms
them with TF.
"""
from __future__ import annotations

import numpy as np

from .config import GroundConfig


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

