"""The node's output messages as plain nested dicts (ROS-free), one builder per topic.

The live node (rclpy) and ``rba replay`` (rosbags) turn these dicts into their own message
objects, so both publish exactly the same topics, types, fields, stamps and frame ids.
Large arrays stay numpy arrays (``data`` fields); adapters convert them to bytes once.
"""
from __future__ import annotations

import numpy as np

from .image_msgs import image_fields
from .obstacles import ObstacleResult

# topic (relative to the camera's output namespace) -> ROS message type
OUTPUT_TOPICS = {
    "semantic": "sensor_msgs/msg/Image",          # mono8 class ids
    "semantic_color": "sensor_msgs/msg/Image",    # rgb8 class colours blended on the image
    "anomaly": "sensor_msgs/msg/Image",           # 32FC1 anomaly score
    "anomaly_color": "sensor_msgs/msg/Image",     # rgb8 heat map blended on the image
    "obstacles": "vision_msgs/msg/Detection2DArray",
    "obstacle_points": "sensor_msgs/msg/PointCloud2",
}
LABELS_TOPIC = ("labels", "vision_msgs/msg/LabelInfo")  # transient-local, published once
ANOMALY_CLASS_ID = "anomaly"


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
