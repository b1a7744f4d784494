"""PipelineConfig: what happens after the network (thresholds, obstacle regions, ground plane).

Shared by the node (as ROS parameters), ``rba replay`` and the demo, so replay measures what the
robot runs. Everything here may change between frames (live parameter updates).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..dataconf import check, from_dict, to_dict


@dataclass
class ObstacleConfig:
    """Connected components of the thresholded anomaly map -> obstacle regions."""
    min_area: int = 150                 # pixels; smaller components are dropped
    region: Literal["all", "adjacent", "within"] = "all"
    # adjacent: keep components within ``adjacency_px`` of a drivable pixel;
    # within: keep only pixels inside the drivable area (holes in the road filled)
    drivable_classes: list[str] = field(default_factory=lambda: ["road"])
    adjacency_px: int = 15
    score: Literal["peak", "mean"] = "peak"
    max_detections: int = 50
    footprint_depth: float = 0.3        # metres filled behind each ground-contact line
    track_min_iou: float = 0.2          # ids: a detection continues a track at this box IoU...
    track_max_distance: float = 1.0     # ...or this footprint-centre distance (metres)
    track_max_missed: int = 5           # frames a track survives without a detection

    def __post_init__(self):
        check(self.min_area >= 1, "min_area", "must be >= 1")
        check(self.adjacency_px >= 0, "adjacency_px", "must be >= 0")
        check(self.max_detections >= 1, "max_detections", "must be >= 1")
        check(0.0 <= self.footprint_depth <= 100.0, "footprint_depth", "must be in [0, 100]")
        check(0.0 < self.track_min_iou <= 1.0, "track_min_iou", "must be in (0, 1]")
        check(self.track_max_distance >= 0.0, "track_max_distance", "must be >= 0")
        check(self.track_max_missed >= 0, "track_max_missed", "must be >= 0")


@dataclass
class GroundConfig:
    """Flat ground plane relative to the camera (optical frame: x right, y down, z forward).

    The pose fields (camera_height, pitch, roll) are the fallback when ``ground_frame`` is empty;
    point_height, max_range and stride apply either way."""
    camera_height: float = 1.5          # metres above the ground
    pitch: float = 0.0                  # radians, positive = camera tilted down
    roll: float = 0.0                   # radians, positive = clockwise seen from behind
    point_height: float = 0.2           # lift points above the ground (Nav2 height band)
    max_range: float = 30.0             # metres; farther points are dropped
    stride: int = 4                     # project every n-th obstacle pixel in x and y

    def __post_init__(self):
        check(self.camera_height > 0, "camera_height", "must be > 0")
        check(self.max_range > 0, "max_range", "must be > 0")
        check(self.stride >= 1, "stride", "must be >= 1")


@dataclass
class PipelineConfig:
    score: str = "rba"                  # which anomaly score drives thresholds and overlays
    # score > threshold = anomalous; -0.18 flags 1 % of CamVid val pixels with the default model
    threshold: float = -0.18            # (`rba calibrate`)
    overlay_alpha: float = 0.5
    heatmap_range: list[float] = field(default_factory=list)  # [lo, hi] for anomaly_color; [] = auto
    obstacles: ObstacleConfig = field(default_factory=ObstacleConfig)
    ground: GroundConfig = field(default_factory=GroundConfig)
    ground_frame: str = ""              # TF frame whose z = 0 is the ground; "" = use ground.*
    heatmap_percentiles: bool = False   # anomaly_color per frame 1st..99th pct, not calibrated

    def __post_init__(self):
        check(0.0 <= self.overlay_alpha <= 1.0, "overlay_alpha", "must be in [0, 1]")
        check(len(self.heatmap_range) in (0, 2), "heatmap_range", "needs [] or [lo, hi]")
        if len(self.heatmap_range) == 2:
            check(self.heatmap_range[0] < self.heatmap_range[1], "heatmap_range",
                  "needs lo < hi")

    @classmethod
    def from_dict(cls, data: dict) -> "PipelineConfig":
        return from_dict(cls, data)

    def to_dict(self) -> dict:
        return to_dict(self)
