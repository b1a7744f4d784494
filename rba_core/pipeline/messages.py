"""The node's output messages as plain nested dicts (ROS-free): what each output topic carries,
where it is published, and the one function that builds a frame's messages (``frame_messages``).

The live node (rclpy) and ``rba replay`` (rosbags) turn these dicts into their own message
objects, so both publish exactly the same topics, types, fields, stamps and frame ids.
Large arrays stay numpy arrays (``data`` fields); adapters convert them to bytes once.
A new output is one entry in ``OUTPUTS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .image_msgs import image_fields
from .lazy import lazy_property
from .obstacles import ObstacleResult

if TYPE_CHECKING:
    from .camera import CameraModel
    from .tracking import ObstacleTracker
    from .transforms import Pose

OUTPUT_NAMESPACE = "rba"  # camera CAM publishes CAM/rba/<output>
LABELS_TOPIC = ("labels", "vision_msgs/msg/LabelInfo")  # transient-local, published once
ANOMALY_CLASS_ID = "anomaly"
IMAGE = "sensor_msgs/msg/Image"


def header(stamp: tuple[int, int], frame_id: str) -> dict:
    return {"stamp": {"sec": int(stamp[0]), "nanosec": int(stamp[1])}, "frame_id": str(frame_id)}


def image_msg(hdr: dict, array: np.ndarray, encoding: str) -> dict:
    return {"header": hdr, **image_fields(array, encoding)}


def _pose_covariance() -> dict:
    return {"pose": {"position": {"x": 0.0, "y": 0.0, "z": 0.0},
                     "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}},
            "covariance": np.zeros(36, np.float64)}


def detections_msg(hdr: dict, result: ObstacleResult, scores: list[float], ids: list[int],
                   scale: tuple[float, float] = (1.0, 1.0)) -> dict:
    """vision_msgs/Detection2DArray: one Detection2D per obstacle (mask-based box, 0..1 score,
    tracker id). ``scale`` (sx, sy) maps result pixels to the published image's pixels."""
    sx, sy = scale
    detections = []
    for ob, score, i in zip(result.obstacles, scores, ids):
        cx, cy = ob.center
        detections.append({
            "header": hdr,
            "results": [{"hypothesis": {"class_id": ANOMALY_CLASS_ID, "score": float(score)},
                         "pose": _pose_covariance()}],
            "bbox": {"center": {"position": {"x": float(cx * sx), "y": float(cy * sy)},
                                "theta": 0.0},
                     "size_x": float(ob.w * sx), "size_y": float(ob.h * sy)},
            "id": str(i),
        })
    return {"header": hdr, "detections": detections}


def detections_3d_msg(hdr: dict, ground, scores: list[float], ids: list[int]) -> dict:
    """vision_msgs/Detection3DArray: one Detection3D per obstacle that touches the ground (box
    around its footprint, ``ground``'s output frame; the hypothesis pose is the box centre)."""
    detections = []
    for fp, score, i in zip(ground.footprints, scores, ids):
        if fp is None or fp.box is None:
            continue
        center, quat, size = ground.box_pose(fp.box)
        pose = {"position": dict(zip("xyz", map(float, center))),
                "orientation": dict(zip("xyzw", map(float, quat)))}
        detections.append({
            "header": hdr,
            "results": [{"hypothesis": {"class_id": ANOMALY_CLASS_ID, "score": float(score)},
                         "pose": {"pose": pose, "covariance": np.zeros(36, np.float64)}}],
            "bbox": {"center": pose, "size": dict(zip("xyz", map(float, size)))},
            "id": str(i),
        })
    return {"header": hdr, "detections": detections}


def labels_msg(hdr: dict, class_names: list[str], threshold: float) -> dict:
    """vision_msgs/LabelInfo: class id -> name for the ``semantic`` image; ``threshold`` on the
    detections' 0..1 scale (``Perception.threshold_probability``)."""
    return {"header": hdr,
            "class_map": [{"class_id": i, "class_name": n} for i, n in enumerate(class_names)],
            "threshold": float(threshold)}


POINT_FIELDS = [("x", 0), ("y", 4), ("z", 8), ("intensity", 12)]
FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32


def pointcloud_msg(hdr: dict, points: np.ndarray, intensity: np.ndarray | None = None) -> dict:
    """sensor_msgs/PointCloud2 (unorganised, float32) from [N, 3] points: fields x, y, z, and
    ``intensity`` [N] when given."""
    n, fields = len(points), POINT_FIELDS if intensity is not None else POINT_FIELDS[:3]
    data = np.empty((n, len(fields)), np.float32)
    data[:, :3] = points
    if intensity is not None:
        data[:, 3] = intensity
    step = 4 * len(fields)
    return {"header": hdr, "height": 1, "width": n,
            "fields": [{"name": name, "offset": off, "datatype": FLOAT32, "count": 1}
                       for name, off in fields],
            "is_bigendian": False, "point_step": step, "row_step": step * n,
            "data": data.reshape(-1).view(np.uint8), "is_dense": True}


def camera_info_msg(hdr: dict, k: list[float], width: int, height: int, d=None,
                    distortion_model: str = "plumb_bob") -> dict:
    """sensor_msgs/CameraInfo, P = [K | 0]; without ``d``: plumb_bob without distortion."""
    p = [k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, k[6], k[7], k[8], 0.0]
    roi = {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False}
    return {"header": hdr, "height": height, "width": width, "distortion_model": distortion_model,
            "d": np.zeros(5) if d is None else np.asarray(d, np.float64),
            "k": np.asarray(k, np.float64),
            "r": np.eye(3).ravel(), "p": np.asarray(p, np.float64),
            "binning_x": 0, "binning_y": 0, "roi": roi}


# -- the outputs of one frame ----------------------------------------------------------------------
@dataclass
class FrameData:
    """What output builders read: one frame's result and what came with it. Products several
    outputs share (ground, 0..1 scores, tracker ids) are computed once, on first use."""
    perception: Any                     # pipeline.perception.Perception (overlays, ground)
    header: dict
    rgb: np.ndarray                     # the source frame, RGB uint8 [H, W, 3]
    result: Any                         # pipeline.perception.FrameResult
    camera: CameraModel | None = None   # from a valid CameraInfo; None: none (yet)
    pose: Pose | None = None            # camera optical -> ground_frame (TF); None: ground.*
    tracker: ObstacleTracker | None = None  # this camera's ids; None: 1..N in this frame

    @lazy_property
    def ground(self):
        """pipeline.perception.GroundOutputs (needs ``camera``)."""
        return self.perception.ground(self.result, self.camera, self.pose)

    @lazy_property
    def ground_header(self) -> dict:
        """Header of the ground outputs: ``ground_frame`` with a transform, else the image's."""
        if self.pose is None:
            return self.header
        return {**self.header, "frame_id": self.perception.cfg.ground_frame.lstrip("/")}

    @lazy_property
    def scores(self) -> list[float]:
        """0..1 score of each obstacle (calibrated)."""
        return self.perception.detection_scores(self.result)

    @lazy_property
    def ids(self) -> list[int]:
        """Tracker id of each obstacle (the tracker advances once per frame, on first use)."""
        obstacles = self.result.obstacles.obstacles
        if self.tracker is None:
            return list(range(1, len(obstacles) + 1))
        centers = None if self.camera is None else [
            None if fp is None else fp.center for fp in self.ground.footprints]
        return self.tracker.update([(o.x, o.y, o.w, o.h) for o in obstacles], centers,
                                   self.perception.cfg.obstacles)


@dataclass(frozen=True)
class Output:
    msgtype: str
    build: Callable[[FrameData], dict]
    needs_camera: bool = False          # built only with a valid CameraInfo


CLOUD = "sensor_msgs/msg/PointCloud2"
OUTPUTS: dict[str, Output] = {  # output topic (relative to the camera's namespace) -> how
    "semantic": Output(IMAGE, lambda f: image_msg(f.header, f.result.class_ids, "mono8")),
    "semantic_color": Output(IMAGE, lambda f: image_msg(  # class colours blended on the image
        f.header, f.perception.semantic_color(f.rgb, f.result), "rgb8")),
    "anomaly": Output(IMAGE, lambda f: image_msg(f.header, f.result.anomaly, "32FC1")),
    "anomaly_color": Output(IMAGE, lambda f: image_msg(  # heat map blended on the image
        f.header, f.perception.anomaly_color(f.rgb, f.result), "rgb8")),
    "obstacles": Output("vision_msgs/msg/Detection2DArray", lambda f: detections_msg(
        f.header, f.result.obstacles, f.scores, f.ids)),
    "obstacle_points": Output(CLOUD, lambda f: pointcloud_msg(  # footprints, intensity = p
        f.ground_header, f.ground.obstacle_points, f.ground.obstacle_probability),
        needs_camera=True),
    "free_points": Output(CLOUD, lambda f: pointcloud_msg(  # drivable, non-anomalous ground
        f.ground_header, f.ground.free_points), needs_camera=True),
    "obstacles_3d": Output("vision_msgs/msg/Detection3DArray", lambda f: detections_3d_msg(
        f.ground_header, f.ground, f.scores, f.ids), needs_camera=True),
}
OUTPUT_TOPICS = {name: out.msgtype for name, out in OUTPUTS.items()}  # name -> ROS type
CAMERA_OUTPUTS = {name for name, out in OUTPUTS.items() if out.needs_camera}


def frame_messages(frame: FrameData, wanted=None) -> dict[str, dict]:
    """Output name -> message dict of one frame, for the ``wanted`` names (default: all).

    Outputs that need the camera are left out while it has no valid CameraInfo.
    """
    camera = frame.camera is not None
    return {name: out.build(frame) for name, out in OUTPUTS.items()
            if (wanted is None or name in wanted) and (camera or not out.needs_camera)}


def output_topic(camera: str, name: str, namespace: str = OUTPUT_NAMESPACE) -> str:
    """Topic of output ``name`` (or ``labels``) of camera namespace ``camera``:
    ``<camera>/<namespace>/<name>``; ``namespace`` may place the camera itself ('{camera}/rba',
    ``rba replay --namespace``). Empty parts are dropped; a leading '/' keeps it absolute.
    """
    ns = (namespace.format(camera=camera) if "{camera}" in namespace
          else "/".join(p for p in (camera, namespace.strip("/")) if p))
    topic = "/".join(p for p in f"{ns}/{name}".split("/") if p)
    return "/" + topic if ns.startswith("/") else topic
