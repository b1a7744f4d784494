"""Perception: frames -> backend -> class map, anomaly map, obstacles, overlays, ground points.

The one post-processing path used by the ROS node, ``rba replay`` and the demo. Overlays and
ground products are computed on request only (the node asks when someone subscribes). Scores
published as 0..1 go through the model's score calibration (``calibration.py``); ground products
(obstacle footprints, free ground, 3D boxes) through ``ground`` (``footprints.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ..dataconf import ConfigError
from ..runtime import Backend, FrameOutputs
from .calibration import ScoreCalibration, step_probability
from .camera import CameraModel
from .config import PipelineConfig
from .footprints import Box3D, Footprint, footprints, free_points
from .frames import infer_frames
from .geometry import ground_map, level_pose
from .lazy import lazy_property
from .obstacles import ObstacleResult, drivable_mask, find_obstacles
from .transforms import Pose
from .visualize import blend, colorize, heatmap, palette


@dataclass
class FrameResult:
    class_ids: np.ndarray    # [H, W] uint8
    anomaly: np.ndarray      # [H, W] float32, the configured score (higher = anomalous)
    confidence: np.ndarray   # [H, W] float32
    obstacles: ObstacleResult


@dataclass
class GroundOutputs:
    """Ground products of one frame, in the output frame (``ground_frame``, or the camera's)."""
    in_camera_frame: bool          # True: the ground.* fallback, points in the camera's frame
    obstacle_points: np.ndarray    # [N, 3] float32 footprints, lifted by ground.point_height
    obstacle_probability: np.ndarray  # [N] float32 0..1: each point's calibrated anomaly
    footprints: list[Footprint | None]  # per obstacle (None: no ground contact), ground frame
    to_output: Pose                # ground frame -> output frame
    free: Callable[[], np.ndarray] = field(repr=False, default=lambda: np.zeros((0, 3), np.float32))

    @lazy_property
    def free_points(self) -> np.ndarray:
        """[M, 3] float32 drivable, non-anomalous ground, lifted (computed on first use)."""
        return self.free()

    def box_pose(self, box: Box3D) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """3D box in the output frame: centre [3], orientation quaternion x, y, z, w, size [3]."""
        yaw = Rotation.from_euler("z", box.yaw).as_matrix()
        quat = Rotation.from_matrix(self.to_output.R @ yaw).as_quat()
        return self.to_output.apply(box.center), quat, box.size.copy()


class Perception:
    def __init__(self, backend: Backend, cfg: PipelineConfig | None = None,
                 calibrations: dict[str, ScoreCalibration] | None = None):
        self.backend = backend
        self.info = backend.info
        self.lut = palette(self.info.colors)
        self.cfg = PipelineConfig()
        self.drivable_ids: list[int] = []
        self.calibrations = dict(calibrations or {})  # score name -> mapping to 0..1
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

    # -- scores in 0..1 --------------------------------------------------------------------
    @property
    def calibration(self) -> ScoreCalibration | None:
        """The mapping of the configured score (None: uncalibrated, 0/1 step fallback)."""
        return self.calibrations.get(self.cfg.score)

    def probability(self, scores) -> np.ndarray:
        """Raw scores -> anomaly probability 0..1 (float32, same shape)."""
        cal = self.calibration
        return cal(scores) if cal is not None else step_probability(scores, self.cfg.threshold)

    @property
    def threshold_probability(self) -> float:
        """The threshold on the 0..1 scale (LabelInfo.threshold): p(score) > it <=> flagged."""
        cal = self.calibration
        return float(cal(self.cfg.threshold, np.float64)) if cal is not None else 0.0

    def detection_scores(self, result: FrameResult) -> list[float]:
        """0..1 score of each obstacle (its peak or mean anomaly, calibrated)."""
        raw = [o.score for o in result.obstacles.obstacles]
        return [float(p) for p in self.probability(np.asarray(raw, np.float64))] if raw else []

    # -- on-demand products ----------------------------------------------------------------
    def semantic_color(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        return blend(image, colorize(result.class_ids, self.lut), self.cfg.overlay_alpha)

    def anomaly_color(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        """Heat map: calibrated fixed scale (by default), ``heatmap_range`` in score units, or
        per-frame percentiles (``heatmap_percentiles``, or when the model has no calibration)."""
        cfg, cal = self.cfg, self.calibration
        if cfg.heatmap_range or cfg.heatmap_percentiles or cal is None:
            lo, hi = (cfg.heatmap_range or (None, None)) if not cfg.heatmap_percentiles \
                else (None, None)
            heat = heatmap(result.anomaly, lo, hi)
        else:
            heat = heatmap(cal.tail(result.anomaly), 0.0, 1.0)
        overlay = blend(image, heat, cfg.overlay_alpha)
        for ob in result.obstacles.obstacles:  # outline the detected regions
            cv2.rectangle(overlay, (ob.x, ob.y), (ob.x + ob.w - 1, ob.y + ob.h - 1),
                          (255, 255, 255), 2)
        return overlay

    def ground(self, result: FrameResult, camera: CameraModel, pose: Pose | None = None
               ) -> GroundOutputs:
        """Footprints, their points (with probabilities), free ground and 3D boxes.

        ``pose``: camera optical frame -> ``ground_frame`` (TF); None = the ``ground.*`` fallback,
        outputs in the camera's frame.
        """
        cfg, g = self.cfg, self.cfg.ground
        in_camera = pose is None
        pose = level_pose(g) if in_camera else pose
        gm = ground_map(camera, result.class_ids.shape, pose)
        fps = footprints(result.obstacles.labels, result.obstacles.obstacles, gm,
                         cfg.obstacles.footprint_depth, g.max_range, g.stride)
        found = [f for f in fps if f is not None]
        pts = np.concatenate([f.points for f in found]) if found else np.zeros((0, 3), np.float32)
        raw = (np.concatenate([result.anomaly[f.rows, f.cols] for f in found]) if found
               else np.zeros(0, np.float32))
        lift = np.array([0.0, 0.0, g.point_height])
        to_output = pose.inverse() if in_camera else Pose()
        drivable_ids, threshold = self.drivable_ids, cfg.threshold

        def free() -> np.ndarray:  # on the stride grid: drivable and not anomalous
            s = g.stride
            mask = drivable_mask(result.class_ids[::s, ::s], drivable_ids) & \
                (result.anomaly[::s, ::s] <= threshold)
            pts = free_points(mask, gm, g.max_range, s)
            return to_output.apply(pts + lift).astype(np.float32)

        return GroundOutputs(in_camera, to_output.apply(pts + lift).astype(np.float32),
                             self.probability(raw), fps, to_output, free)

    def warm(self, camera: CameraModel, pose: Pose | None = None) -> None:
        """Compute (cache) the rays of ``camera``'s full-size image and their ground map, so the
        first frame after a new CameraInfo does not pay for them (e.g. from a side thread)."""
        size = camera.image_size
        if size is not None:
            ground_map(camera, (size[1], size[0]), level_pose(self.cfg.ground) if pose is None
                       else pose)
