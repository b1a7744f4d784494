"""The node's output messages as plain nested dicts (ROS-free): what each output topic carries,
where it is published, and the one function that builds a frame's messages (``frame_messages``).

The live node (rclpy) and ``rba replay`` (rosbags) turn these dicts into their own message
objects, so both publish exactly the same topics, types, fields, stamps and frame ids.
Large arrays stay numpy arrays (``data`` fields); adapters convert them to bytes once.
A new output is one entry in ``OUTPUTS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .image_msgs import image_fields
from .obstacles import ObstacleResult

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


def detections_msg(hdr: dict, result: ObstacleResult, scale: tuple[float, float] = (1.0, 1.0)
                   ) -> dict:
    """vision_msgs/Detection2DArray: one Detection2D per obstacle (mask-based box, score).

    ``scale`` (sx, sy) maps result pixels to the published image's pixels.
    """
    sx, sy = scale
    detections = []
    for i, ob in enumerate(result.obstacles):
        cx, cy = ob.center
        detections.append({
            "header": hdr,
            "results": [{"hypothesis": {"class_id": ANOMALY_CLASS_ID, "score": float(ob.score)},
                         "pose": _pose_covariance()}],
            "bbox": {"center": {"position": {"x": float(cx * sx), "y": float(cy * sy)},
                                "theta": 0.0},
                     "size_x": float(ob.w * sx), "size_y": float(ob.h * sy)},
            "id": str(i),
        })
    return {"header": hdr, "detections": detections}


def labels_msg(hdr: dict, class_names: list[str], threshold: float) -> dict:
    """vision_msgs/LabelInfo: class id -> name for the ``semantic`` image."""
    return {"header": hdr,
            "class_map": [{"class_id": i, "class_name": n} for i, n in enumerate(class_names)],
            "threshold": float(threshold)}


POINT_FIELDS = [("x", 0), ("y", 4), ("z", 8), ("intensity", 12)]
FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32


def pointcloud_msg(hdr: dict, points: np.ndarray, intensity: np.ndarray | None = None) -> dict:
    """sensor_msgs/PointCloud2 (x, y, z, intensity float32, unorganised) from [N, 3] points."""
    n = len(points)
    data = np.zeros((n, 4), np.float32)
    data[:, :3] = points
    if intensity is not None:
        data[:, 3] = intensity
    return {"header": hdr, "height": 1, "width": n,
            "fields": [{"name": name, "offset": off, "datatype": FLOAT32, "count": 1}
                       for name, off in POINT_FIELDS],
            "is_bigendian": False, "point_step": 16, "row_step": 16 * n,
            "data": data.reshape(-1).view(np.uint8), "is_dense": True}


def camera_info_msg(hdr: dict, k: list[float], width: int, height: int) -> dict:
    """sensor_msgs/CameraInfo: plumb_bob without distortion, P = [K | 0]."""
    p = [k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, k[6], k[7], k[8], 0.0]
    roi = {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False}
    return {"header": hdr, "height": height, "width": width, "distortion_model": "plumb_bob",
            "d": np.zeros(5), "k": np.asarray(k, np.float64),
            "r": np.eye(3).ravel(), "p": np.asarray(p, np.float64),
            "binning_x": 0, "binning_y": 0, "roi": roi}


def valid_intrinsics(k) -> bool:
    """CameraInfo.k usable for projection: 9 finite values, positive focal lengths (None: no)."""
    k = np.asarray(k, np.float64)
    return k.shape == (9,) and bool(np.isfinite(k).all()) and k[0] > 0 and k[4] > 0


# -- the outputs of one frame ----------------------------------------------------------------------
@dataclass
class FrameData:
    """What output builders read: one frame's result and what came with it."""
    perception: Any                     # pipeline.perception.Perception (overlays, points)
    header: dict
    rgb: np.ndarray                     # the source frame, RGB uint8 [H, W, 3]
    result: Any                         # pipeline.perception.FrameResult
    k: Any = None                       # CameraInfo.k (9 values); None: no CameraInfo
    camera_size: tuple[int, int] | None = None  # CameraInfo (width, height)


@dataclass(frozen=True)
class Output:
    msgtype: str
    build: Callable[[FrameData], dict]
    needs_camera: bool = False          # built only with valid intrinsics


OUTPUTS: dict[str, Output] = {  # output topic (relative to the camera's namespace) -> how
    "semantic": Output(IMAGE, lambda f: image_msg(f.header, f.result.class_ids, "mono8")),
    "semantic_color": Output(IMAGE, lambda f: image_msg(  # class colours blended on the image
        f.header, f.perception.semantic_color(f.rgb, f.result), "rgb8")),
    "anomaly": Output(IMAGE, lambda f: image_msg(f.header, f.result.anomaly, "32FC1")),
    "anomaly_color": Output(IMAGE, lambda f: image_msg(  # heat map blended on the image
        f.header, f.perception.anomaly_color(f.rgb, f.result), "rgb8")),
    "obstacles": Output("vision_msgs/msg/Detection2DArray",
                        lambda f: detections_msg(f.header, f.result.obstacles)),
    "obstacle_points": Output("sensor_msgs/msg/PointCloud2", lambda f: pointcloud_msg(
        f.header, f.perception.points(f.result, f.k, f.camera_size)), needs_camera=True),
}
OUTPUT_TOPICS = {name: out.msgtype for name, out in OUTPUTS.items()}  # name -> ROS type


def frame_messages(frame: FrameData, wanted=None) -> dict[str, dict]:
    """Output name -> message dict of one frame, for the ``wanted`` names (default: all).

    Outputs that need the camera are left out while its intrinsics are missing or invalid.
    """
    camera = valid_intrinsics(frame.k)
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
