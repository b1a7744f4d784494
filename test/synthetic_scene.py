"""A synthetic road scene rendered with OpenCV, independent of rba_core's geometry.

World frame: x forward, y left, z up, the ground is z = 0. A camera at a known height and pitch
(built here from its axis vectors) sees upright boxes; each box's anomaly mask is the union of its
six faces, every face outline densely sampled in 3D and imaged with ``cv2.projectPoints`` (or
``cv2.fisheye.projectPoints``), so lens distortion bends the edges as a real lens does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from rba_core.runtime import FrameOutputs
from rba_core.runtime.base import ModelInfo

CLASSES = ["sky", "road", "car"]
ROAD, SKY = 1, 0


@dataclass
class Rig:
    """Camera intrinsics + pose: centre C (world) and R_wc (columns: camera x, y, z in world)."""
    k: np.ndarray
    d: np.ndarray = field(default_factory=lambda: np.zeros(5))
    model: str = "plumb_bob"
    height: float = 1.5
    pitch: float = 0.1           # radians, camera looking down
    size: tuple[int, int] = (480, 360)  # width, height

    @property
    def C(self) -> np.ndarray:  # noqa: N802
        return np.array([0.0, 0.0, self.height])

    @property
    def R_wc(self) -> np.ndarray:  # noqa: N802
        cp, sp = np.cos(self.pitch), np.sin(self.pitch)
        z = np.array([cp, 0.0, -sp])      # optical axis: forward, tilted down
        x = np.array([0.0, -1.0, 0.0])    # image right = world right (-y)
        y = np.cross(z, x)                # image down
        return np.stack([x, y, z], 1)

    def project(self, world: np.ndarray) -> np.ndarray:
        """World points [N, 3] -> pixels [N, 2]."""
        r_cw = self.R_wc.T
        cam = (world - self.C) @ r_cw.T
        assert (cam[:, 2] > 0.05).all(), "scene point behind the camera"
        rvec, _ = cv2.Rodrigues(np.eye(3))
        pts = cam.reshape(-1, 1, 3).astype(np.float64)
        if self.model == "equidistant":
            px, _ = cv2.fisheye.projectPoints(pts, rvec, np.zeros(3), self.k, self.d)
        else:
            px, _ = cv2.projectPoints(pts, rvec, np.zeros(3), self.k, self.d)
        return px.reshape(-1, 2)

    def camera_info(self) -> dict:
        return {"k": self.k.ravel().tolist(), "d": list(self.d), "distortion_model": self.model,
                "width": self.size[0], "height": self.size[1]}

    def to_world(self, camera_points: np.ndarray) -> np.ndarray:
        return camera_points @ self.R_wc.T + self.C


def pinhole(f: float = 400.0, size=(480, 360)) -> np.ndarray:
    return np.array([[f, 0, size[0] / 2], [0, f, size[1] / 2], [0, 0, 1.0]])


def box_faces(lo, hi, n: int = 60) -> list[np.ndarray]:
    """Six faces of the axis-aligned box [lo, hi], each a closed outline of 4 * n 3D points."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    faces = []
    for axis in range(3):
        for side in (0, 1):
            quad = corners[corners[:, axis] == (lo, hi)[side][axis]]
            a, b = [i for i in range(3) if i != axis]
            c = quad[:, [a, b]].mean(0)
            ang = np.arctan2(quad[:, b] - c[1], quad[:, a] - c[0])
            quad = quad[np.argsort(ang)]
            t = np.linspace(0, 1, n, endpoint=False)[:, None]
            faces.append(np.concatenate([quad[i] + t * (quad[(i + 1) % 4] - quad[i])
                                         for i in range(4)]))
    return faces


def render(rig: Rig, boxes: list[tuple]) -> np.ndarray:
    """Anomaly mask [H, W] bool of the boxes (lo, hi corners), seen by ``rig``."""
    w, h = rig.size
    mask = np.zeros((h, w), np.uint8)
    for lo, hi in boxes:
        for face in box_faces(lo, hi):
            px = np.round(rig.project(face) * 16).astype(np.int32)  # 4 fractional bits
            cv2.fillPoly(mask, [px.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def horizon_rows(rig: Rig) -> np.ndarray:
    """[H, W] bool: pixels whose ray points below the horizon (ground visible), by brute force."""
    w, h = rig.size
    vs, us = np.mgrid[0:h, 0:w].astype(np.float64)
    pix = np.stack([us.ravel(), vs.ravel()], -1).reshape(-1, 1, 2)
    if rig.model == "equidistant":
        n = cv2.fisheye.undistortPoints(pix, rig.k, rig.d)
    else:
        n = cv2.undistortPoints(pix, rig.k, rig.d)
    rays = np.concatenate([n.reshape(-1, 2), np.ones((n.shape[0], 1))], 1) @ rig.R_wc.T
    return (rays[:, 2] < 0).reshape(h, w)


def outputs(mask: np.ndarray, road: np.ndarray | None = None) -> FrameOutputs:
    """Network outputs for the scene: road (or sky), anomaly score 1 on the mask, -1 elsewhere."""
    ids = np.where(road if road is not None else np.ones(mask.shape, bool), ROAD, SKY)
    ids = np.where(mask, 2, ids).astype(np.int32)  # the network calls the box a car
    scores = np.where(mask, 1.0, -1.0).astype(np.float32)
    return FrameOutputs(ids, np.ones(mask.shape, np.float32), {"rba": scores})


class SceneBackend:
    """A backend stand-in: the Perception post-processing needs only its ModelInfo."""
    name = "scene"
    info = ModelInfo(CLASSES, [[0, 0, 0], [128, 64, 128], [64, 0, 128]], ["rba"], "semantic")


def rect_distance(xy: np.ndarray, lo, hi) -> np.ndarray:
    """Distance of ground points [N, 2] to the rectangle [lo, hi] (0 inside)."""
    lo, hi = np.asarray(lo[:2], float), np.asarray(hi[:2], float)
    d = np.maximum(np.maximum(lo - xy, xy - hi), 0.0)
    return np.linalg.norm(d, axis=1)
