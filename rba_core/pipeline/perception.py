"""Perception: frames -> backend -> class map, anomaly map, obstacles, overlays, ground points.

The one post-processing path used by the ROS node, ``rba replay`` and the demo. Overlays and
points are computed on request only (the node asks when someone subscribes).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..dataconf import ConfigError
from ..runtime import Backend, FrameOutputs
from .config import PipelineConfig
from .frames import infer_frames
from .geometry import intrinsics_matrix, obstacle_points
from .obstacles import ObstacleResult, find_obstacles
from .visualize import blend, colorize, heatmap, palette


@dataclass
class FrameResult:
    class_ids: np.ndarray    # [H, W] uint8
    anomaly: np.ndarray      # [H, W] float32, the configured score (higher = anomalous)
    confidence: np.ndarray   # [H, W] float32
    obstacles: ObstacleResult


class Perception:
    def __init__(self, backend: Backend, cfg: PipelineConfig | None = None):
        self.backend = backend
        self.info = backend.info
        self.lut = palette(self.info.colors)
        self.cfg = PipelineConfig()
        self.drivable_ids: list[int] = []
        self.update(cfg or PipelineConfig())

    def update(self, cfg: PipelineConfig) -> None:
        """Apply a new configuration (validated against the model: score, class names)."""
        if cfg.score not in self.info.score_names:
            raise ConfigError("score", f"{cfg.score!r} is not computed by this model "
                                       f"(available: {', '.join(self.info.score_names)})")
        names = self.info.class_names
        unknown = [c for c in cfg.obstacles.drivable_classes if c not in names]
        if unknown:
            raise ConfigError("obstacles.drivable_classes",
                              f"unknown class {unknown[0]!r} (model classes: {', '.join(names)})")
        self.drivable_ids = [names.index(c) for c in cfg.obstacles.drivable_classes]
        self.cfg = cfg

    def postprocess(self, out: FrameOutputs) -> FrameResult:
        cfg = self.cfg
        anomaly = out.scores[cfg.score]
        class_ids = out.class_ids.astype(np.uint8, copy=False)
        obstacles = find_obstacles(anomaly, class_ids, cfg.threshold, self.drivable_ids,
                                   cfg.obstacles)
        return FrameResult(class_ids, anomaly, out.confidence, obstacles)

    def process(self, frames: list[np.ndarray]) -> list[FrameResult]:
        """RGB uint8 [H, W, 3] frames (any sizes) -> one result per frame, at its resolution."""
        return [self.postprocess(o) for o in infer_frames(self.backend, frames)]

    # -- on-demand products ----------------------------------------------------------------
    def semantic_color(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        return blend(image, colorize(result.class_ids, self.lut), self.cfg.overlay_alpha)

    def anomaly_color(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        lo, hi = self.cfg.heatmap_range or (None, None)
        overlay = blend(image, heatmap(result.anomaly, lo, hi), self.cfg.overlay_alpha)
        for ob in result.obstacles.obstacles:  # outline the detected regions
            cv2.rectangle(overlay, (ob.x, ob.y), (ob.x + ob.w - 1, ob.y + ob.h - 1),
                          (255, 255, 255), 2)
        return overlay

    def points(self, result: FrameResult, k: list[float] | np.ndarray,
               camera_size: tuple[int, int] | None = None) -> np.ndarray:
        """Ground points [N, 3] of the obstacles, given CameraInfo K (and its width, height)."""
        h, w = result.class_ids.shape
        scale = (1.0, 1.0)
        if camera_size and tuple(camera_size) != (w, h) and all(camera_size):
            scale = (camera_size[0] / w, camera_size[1] / h)
        return obstacle_points(result.obstacles.mask, intrinsics_matrix(k), self.cfg.ground, scale)
