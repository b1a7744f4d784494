"""rba_ros.ground_tf: the node's camera -> ground_frame lookups, both sources, without a node.

The /tf_static source runs for real on tf2_msgs messages. tf2_ros is not importable in this
venv: its branch is checked against a stand-in with tf2_ros's API (Buffer.lookup_transform(target,
source, rclpy Time) -> TransformStamped, TransformException, TransformListener.unregister), which
tests our side of that contract, not tf2_ros (the robot's colcon CI runs the real one).
"""
import sys
import types

import numpy as np
import pytest

pytest.importorskip("rclpy")
tf2_msgs = pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not built (build_ros_msgs.sh)")

from std_msgs.msg import Header  # noqa: E402

from rba_core.pipeline.transforms import TransformError  # noqa: E402
from rba_ros.camera import CameraSlot  # noqa: E402
from rba_ros.ground_tf import STATIC_QOS, TF_STATIC, GroundTransforms  # noqa: E402
from rba_ros.harness import transform_stamped as stamped  # noqa: E402


class FakeNode:
    def __init__(self):
        self.subs, self.warnings, self.destroyed = [], [], []

    def create_subscription(self, msg_type, topic, callback, qos):
        self.subs.append((msg_type, topic, callback, qos))
        return len(self.subs)

    def destroy_subscription(self, sub):
        self.destroyed.append(sub)

    def get_logger(self):
        node = self
        return types.SimpleNamespace(warning=lambda text, **kw: node.warnings.append(text))


def image_header(frame_id="cam_optical", sec=5, nanosec=250_000_000) -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


# camera 1.5 m above base_footprint, optical axes (z forward, x right, y down) per REP 103
CHAIN = [stamped("base_footprint", "cam_link", (0.0, 0.0, 1.5), (0.0, 0.0, 0.0, 1.0)),
         stamped("cam_link", "cam_optical", (0.0, 0.0, 0.0), (-0.5, 0.5, -0.5, 0.5))]


def test_tf_static_source(monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2_ros", None)  # as in a PyPI venv: not importable
    node = FakeNode()
    tf = GroundTransforms(node)
    assert tf.source == TF_STATIC
    ((msg_type, topic, callback, qos),) = node.subs
    assert topic == "/tf_static" and msg_type is tf2_msgs.TFMessage and qos == STATIC_QOS
    slot = CameraSlot("front", "raw")
    assert tf.camera_pose("base_footprint", image_header(), slot) is None  # nothing yet
    assert slot.stats.missing_transform == 1 and "base_footprint <- cam_optical" in \
        slot.transform_error
    callback(tf2_msgs.TFMessage(transforms=CHAIN))
    callback(tf2_msgs.TFMessage(transforms=[stamped("a", "b", (0, 0, 0), (0, 0, 0, 0))]))
    assert "quaternion" in node.warnings[-1]  # a bad one is skipped, the tree stays
    pose = tf.camera_pose("base_footprint", image_header(), slot)
    # the optical axis (0, 0, 1) points forward (+x) from 1.5 m up; image right (+x) is -y
    np.testing.assert_allclose(pose.apply([0.0, 0.0, 1.0]), [1.0, 0.0, 1.5], atol=1e-12)
    np.testing.assert_allclose(pose.apply([1.0, 0.0, 0.0]), [0.0, -1.0, 1.5], atol=1e-12)
    assert slot.transform_error == "" and slot.stats.missing_transform == 1
    with pytest.raises(TransformError, match="no frame_id"):
        tf.lookup("base_footprint", "", image_header().stamp)
    tf.close()
    assert node.destroyed == [1]


def test_tf2_ros_source_contract(monkeypatch):
    """Our adapter calls lookup_transform(target, source, Time at the image stamp) and maps
    TransformException to TransformError (one line)."""
    calls = []

    class TransformException(Exception):
        pass

    class Buffer:
        def lookup_transform(self, target, source, time):
            calls.append((target, source, time.nanoseconds))
            if source == "unknown":
                raise TransformException('"unknown" passed to lookupTransform argument '
                                         'source_frame does not exist.\nmore')
            return stamped(target, source, (0.0, 0.0, 1.5), (-0.5, 0.5, -0.5, 0.5))

    class TransformListener:
        def __init__(self, buffer, node, spin_thread=False):
            self.unregistered = False
            assert spin_thread is False  # callbacks run on the node's own executor

        def unregister(self):
            self.unregistered = True

    fake = types.SimpleNamespace(Buffer=Buffer, TransformListener=TransformListener,
                                 TransformException=TransformException)
    monkeypatch.setitem(sys.modules, "tf2_ros", fake)
    node = FakeNode()
    tf = GroundTransforms(node)
    assert tf.source == "tf2_ros" and node.subs == []
    pose = tf.lookup("/base_footprint", "cam_optical", image_header().stamp)
    assert calls == [("base_footprint", "cam_optical", 5_250_000_000)]
    np.testing.assert_allclose(pose.apply([0.0, 0.0, 1.0]), [1.0, 0.0, 1.5], atol=1e-12)
    with pytest.raises(TransformError, match="does not exist.$"):
        tf.lookup("base_footprint", "unknown", image_header().stamp)
    listener = tf._listener
    tf.close()
    assert listener.unregistered
