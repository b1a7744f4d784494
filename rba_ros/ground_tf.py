"""Camera -> ``ground_frame`` transforms for the node, at the image stamp.

tf2_ros's buffer and listener (``/tf`` and ``/tf_static``, interpolated at the stamp) when tf2_ros
is importable (any ROS install); in a PyPI venv without it, a static
:class:`~rba_core.pipeline.transforms.TransformTree` fed from ``/tf_static`` (tf2_msgs/TFMessage,
transient-local like tf2_ros's static listener, so transforms published before the node started
arrive too). Lookups never block: no transform yet is a :class:`TransformError` with the reason,
and the node falls back to ``ground.*`` (documented in the README).
"""
from __future__ import annotations

import threading

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from rba_core.pipeline.transforms import Pose, TransformError, TransformTree, transform_stamped

TF_STATIC = "/tf_static"
STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                        reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


class GroundTransforms:
    """Transform source of one node; ``close()`` removes its subscriptions."""

    def __init__(self, node):
        self.node = node
        self._lock = threading.Lock()
        self._listener = self._sub = None
        self.tree = TransformTree()
        try:
            import tf2_ros
        except ImportError:
            tf2_ros = None
        if tf2_ros is not None:
            self._tf2 = tf2_ros
            self.buffer = tf2_ros.Buffer()
            self._listener = tf2_ros.TransformListener(self.buffer, node, spin_thread=False)
            self.source = "tf2_ros"
            return
        from tf2_msgs.msg import TFMessage  # built into the venv by scripts/build_ros_msgs.sh

        self._sub = node.create_subscription(TFMessage, TF_STATIC, self._on_static, STATIC_QOS)
        self.source = TF_STATIC

    def _on_static(self, msg) -> None:
        with self._lock:
            tree = self.tree.copy()
            try:
                tree.add_message(msg)
            except TransformError as exc:
                self.node.get_logger().warning(f"{TF_STATIC}: transform skipped: {exc}",
                                               throttle_duration_sec=5.0)
                return
            self.tree = tree

    def lookup(self, target: str, source: str, stamp) -> Pose:
        """Pose mapping ``source`` (the image's frame) points into ``target`` at ``stamp``
        (builtin_interfaces/Time); TransformError says why there is none."""
        if not source:
            raise TransformError("the image has no frame_id")
        if self.source == TF_STATIC:
            with self._lock:
                tree = self.tree
            return tree.lookup(target, source)
        from rclpy.time import Time

        try:
            ts = self.buffer.lookup_transform(target.lstrip("/"), source.lstrip("/"),
                                              Time.from_msg(stamp))
        except self._tf2.TransformException as exc:
            raise TransformError(str(exc).strip().splitlines()[0]) from None
        return transform_stamped(ts)[2]

    def camera_pose(self, ground_frame: str, header, slot=None) -> Pose | None:
        """The image's camera -> ``ground_frame`` at its stamp, or None (ground.* fallback):
        counted on ``slot`` (a CameraSlot, for diagnostics) and logged, throttled."""
        try:
            pose = self.lookup(ground_frame, header.frame_id, header.stamp)
        except TransformError as exc:
            if slot is not None:
                slot.count("missing_transform")
                slot.transform_error = f"{ground_frame} <- {header.frame_id or '?'}: {exc}"
                self.node.get_logger().warning(
                    f"camera {slot.name or '/'}: no transform {slot.transform_error}; using "
                    f"ground.* (outputs in the camera frame)", throttle_duration_sec=5.0)
            return None
        if slot is not None:
            slot.transform_error = ""
        return pose

    def close(self) -> None:
        if self._listener is not None:
            self._listener.unregister()
        if self._sub is not None:
            self.node.destroy_subscription(self._sub)
        self._listener = self._sub = None
