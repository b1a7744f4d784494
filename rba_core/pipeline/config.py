"""PipelineConfig: what happens after the network (thresholds, obstacle regions, ground plane).

Shared by the node (as ROS parameters), ``rba replay`` and the demo, so replay measures what the
robot runs. Everything here may change between frames (live parameter updates). Each field's
``param`` metadata (description, bounds) is also the node's parameter descriptor and README row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..dataconf import check, check_bounds, from_dict, param, to_dict


@dataclass
class ObstacleConfig:
    """Connected components of the thresholded anomaly map -> obstacle regions."""
    min_area: int = param(150, "pixels; smaller anomalous components are ignored",
                          (1, 100_000_000))
    region: Literal["all", "adjacent", "within"] = param(
        "all", "all; adjacent = components near a drivable pixel; within = only pixels inside "
               "the drivable area (holes filled)")
    drivable_classes: list[str] = param(["road"], "class names that make up the drivable area")
    adjacency_px: int = param(15, "pixels; how near `adjacent` components must come to the "
                                  "drivable area", (0, 10_000))
    score: Literal["peak", "mean"] = param("peak", "detection score: p(peak or mean anomaly of "
                                                   "the component), calibrated to 0..1")
    max_detections: int = param(50, "largest components kept per frame", (1, 10_000))
    footprint_depth: float = param(0.3, "metres; each obstacle's footprint is filled this far "
                                        "behind its ground-contact line (never farther)",
                                   (0.0, 100.0))
    track_min_iou: float = param(0.2, "stable ids: a detection continues a track whose predicted "
                                      "box it overlaps at least this much (IoU)", (0.01, 1.0))
    track_max_distance: float = param(1.0, "metres; ...or whose footprint centre is this near "
                                           "(ground frame); 0 = off", (0.0, 1000.0))
    track_max_missed: int = param(5, "frames a track (and its id) survives without a detection",
                                  (0, 100_000))

    def __post_init__(self):
        check_bounds(self)


@dataclass
class GroundConfig:
    """Flat ground plane relative to the camera (optical frame: x right, y down, z forward).

    The pose fields (camera_height, pitch, roll) are the fallback when ``ground_frame`` is empty;
    point_height, max_range and stride apply either way."""
    camera_height: float = param(1.5, "metres of the camera above the ground plane (fallback "
                                      "when ground_frame is empty, or has no transform yet)",
                                 (0.001, 1000.0))
    pitch: float = param(0.0, "radians; camera tilted down is positive (fallback when "
                              "ground_frame is empty)", (-math.pi / 2, math.pi / 2))
    roll: float = param(0.0, "radians; clockwise seen from behind is positive (fallback when "
                             "ground_frame is empty)", (-math.pi / 2, math.pi / 2))
    point_height: float = param(0.2, "metres; obstacle and free points are lifted this far "
                                     "above the ground so Nav2's height band keeps them",
                                (-100.0, 100.0))
    max_range: float = param(30.0, "metres; ground points (obstacles, free ground) farther from "
                                   "the camera are dropped", (0.001, 100_000.0))
    stride: int = param(4, "pixels; footprint fill and free ground use every n-th pixel in x "
                           "and y, footprint columns are n pixels wide", (1, 1024))

    def __post_init__(self):
        check_bounds(self)


@dataclass
class PipelineConfig:
    score: str = param("rba", "anomaly score driving threshold, obstacles and anomaly output "
                              "(one of scores)")
    threshold: float = param(-0.027, "score units: score > threshold = anomalous pixel; -0.027 "
                                    "flags 1 % of CamVid val pixels with the embedded model "
                                    "(calibrate yours with `rba calibrate`); outputs in 0..1 "
                                    "(detection scores, LabelInfo.threshold, point intensity) are "
                                    "p(score), the model's calibration")
    overlay_alpha: float = param(0.5, "weight of the colours in semantic_color / anomaly_color",
                                 (0.0, 1.0))
    heatmap_range: list[float] = param([], "[lo, hi] score range of the anomaly_color heat map; "
                                           "unset = calibrated fixed scale (per frame 1st..99th "
                                           "percentile for a model without calibration)")
    obstacles: ObstacleConfig = param(ObstacleConfig(), "")
    ground: GroundConfig = param(GroundConfig(), "")
    ground_frame: str = param("", "TF frame whose z = 0 is the ground (e.g. base_footprint); "
                                  "clouds and 3D boxes are published in it; empty = camera pose "
                                  "from ground.*, outputs in the camera's frame")
    heatmap_percentiles: bool = param(False, "anomaly_color scaled per frame (1st..99th "
                                             "percentile) instead of the calibrated fixed scale")

    def __post_init__(self):
        check_bounds(self)
        check(len(self.heatmap_range) in (0, 2), "heatmap_range", "needs [] or [lo, hi]")
        if len(self.heatmap_range) == 2:
            check(self.heatmap_range[0] < self.heatmap_range[1], "heatmap_range",
                  "needs lo < hi")

    @classmethod
    def from_dict(cls, data: dict) -> "PipelineConfig":
        return from_dict(cls, data)

    def to_dict(self) -> dict:
        return to_dict(self)
