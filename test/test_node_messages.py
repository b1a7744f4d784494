"""The node's messages: vision_msgs built into the venv, and live == replay byte for byte."""
import json
from types import SimpleNamespace
import sys
from pathlib import Path

import numpy as np
import pytest

from rba_core.pipeline import messages as M
from rba_core.pipeline.obstacles import Obstacle, ObstacleResult

from conftest import REPO

EXPECTED = json.loads((REPO / "rba_core" / "ros_msgs" / "vision_msgs" /
                       "EXPECTED_TYPE_HASHES.json").read_text())
INSTALLED = Path(sys.prefix) / "share" / "vision_msgs" / "msg"


def _require_vision_msgs():
    pytest.importorskip("rclpy")
    try:
        import vision_msgs.msg  # noqa: F401
    except ImportError:
        pytest.skip("vision_msgs not built into this venv (bash scripts/build_ros_msgs.sh VENV)")


def test_installed_vision_msgs_type_hashes():
    """rosidl's type descriptions of the venv's vision_msgs == the real package's RIHS01 hashes."""
    if not INSTALLED.is_dir():
        pytest.skip(f"{INSTALLED} missing (bash scripts/build_ros_msgs.sh VENV)")
    if not any(INSTALLED.glob("*.json")):
        pytest.skip("no type descriptions: they (and type hashes) are Jazzy and later")
    found = {}
    for path in INSTALLED.glob("*.json"):
        for entry in json.loads(path.read_text())["type_hashes"]:
            found[entry["type_name"]] = entry["hash_string"]
    for name, hash_string in EXPECTED.items():
        if not name.startswith("_"):
            assert found.get(name) == hash_string, name


def outputs():
    """One of every output dict, with awkward values (padding-free images, several boxes)."""
    rng = np.random.default_rng(0)
    hdr = M.header((1_700_000_000, 123_456_789), "front_optical")
    obstacles = ObstacleResult([Obstacle(3, 4, 10, 6, 40, 0.25, 1),
                                Obstacle(0, 0, 2, 2, 3, -1.5, 2)],
                               np.zeros((20, 30), bool), np.zeros((20, 30), np.int32))
    ids = rng.integers(0, 11, (20, 30), np.uint8)
    rgb = rng.integers(0, 255, (20, 30, 3), np.uint8)
    return [
        ("sensor_msgs/msg/Image", M.image_msg(hdr, ids, "mono8")),
        ("sensor_msgs/msg/Image", M.image_msg(hdr, rng.random((20, 30), np.float32), "32FC1")),
        ("sensor_msgs/msg/Image", M.image_msg(hdr, rgb, "rgb8")),
        ("vision_msgs/msg/Detection2DArray", M.detections_msg(hdr, obstacles)),
        ("vision_msgs/msg/LabelInfo", M.labels_msg(hdr, ["road", "car", "sky"], -0.5)),
        ("sensor_msgs/msg/PointCloud2", M.pointcloud_msg(hdr, rng.random((7, 3), np.float32))),
    ]


@pytest.mark.parametrize("i", range(6))
def test_live_messages_equal_replay_bytes(i):
    """The node's rclpy message carries exactly the replay's rosbags message.

    Compared as CDR after a rosbags round trip: Fast CDR leaves alignment padding bytes
    uninitialised, rosbags writes zeros; every field byte must match.
    """
    _require_vision_msgs()
    from rclpy.serialization import serialize_message

    from rba_core.replay.bags import output_typestore, serialize
    from rba_ros.conversions import message_type, to_msg

    msgtype, data = outputs()[i]
    store = output_typestore()
    live = serialize_message(to_msg(message_type(msgtype), data))
    replay = bytes(serialize(store, msgtype, data))
    assert len(live) == len(replay)
    assert bytes(store.serialize_cdr(store.deserialize_cdr(live, msgtype), msgtype)) == replay


def test_unknown_field_is_a_bug_not_silence():
    _require_vision_msgs()
    from rba_ros.conversions import message_type, to_msg

    with pytest.raises(KeyError, match="no field 'colour'"):
        to_msg(message_type("sensor_msgs/msg/Image"), {"colour": 1})


# -- one builder, one naming, one CameraInfo check for node and replay --------------------------------
class StubPerception:
    """Records which products were asked for (overlays and points are the costly ones)."""
    info = SimpleNamespace(class_names=["road", "car"])
    cfg = SimpleNamespace(threshold=0.0)

    def __init__(self):
        self.asked = []

    def postprocess(self, outputs):
        return outputs

    def semantic_color(self, rgb, result):
        self.asked.append("semantic_color")
        return rgb

    def anomaly_color(self, rgb, result):
        self.asked.append("anomaly_color")
        return rgb

    def points(self, result, k, size):
        self.asked.append("points")
        return np.zeros((2, 3), np.float32)


def frame_result():
    return SimpleNamespace(class_ids=np.zeros((4, 6), np.uint8),
                           anomaly=np.zeros((4, 6), np.float32),
                           obstacles=ObstacleResult([], np.zeros((4, 6), bool),
                                                    np.zeros((4, 6), np.int32)))


GOOD_K = [5.0, 0.0, 3.0, 0.0, 5.0, 2.0, 0.0, 0.0, 1.0]
BAD_KS = [None, [0.0] * 9, [float("nan")] + GOOD_K[1:], GOOD_K[:4] + [float("inf")] + GOOD_K[5:],
          GOOD_K[:8]]


def test_frame_messages_builds_only_what_is_wanted():
    p = StubPerception()
    frame = M.FrameData(p, M.header((1, 2), "cam"), np.zeros((4, 6, 3), np.uint8), frame_result(),
                        GOOD_K, (6, 4))
    out = M.frame_messages(frame, {"anomaly", "obstacles"})
    assert set(out) == {"anomaly", "obstacles"} and p.asked == []
    out = M.frame_messages(frame)
    assert set(out) == set(M.OUTPUT_TOPICS) and sorted(p.asked) == [
        "anomaly_color", "points", "semantic_color"]
    assert out["anomaly"]["encoding"] == "32FC1" and out["semantic"]["encoding"] == "mono8"
    assert all(m["header"] == {"stamp": {"sec": 1, "nanosec": 2}, "frame_id": "cam"}
               for m in out.values())


@pytest.mark.parametrize("k", BAD_KS, ids=["none", "zero", "nan", "inf", "short"])
def test_no_valid_camera_info_no_obstacle_points_in_node_and_replay(k):
    """The node's check (finite K, positive focal lengths) is the replay's too."""
    from rba_core.replay.runner import OutputEncoder, has_intrinsics
    from rba_core.replay.source import CameraInfo, Frame

    p = StubPerception()
    frame = M.FrameData(p, M.header((1, 2), "cam"), np.zeros((4, 6, 3), np.uint8), frame_result(),
                        k, (6, 4))
    assert set(M.frame_messages(frame)) == set(M.OUTPUT_TOPICS) - {"obstacle_points"}
    assert "points" not in p.asked
    bag_frame = Frame(0, "/front/image_raw", "sensor_msgs/msg/Image", 10, b"", (1, 2), "cam",
                      rgb=np.zeros((4, 6, 3), np.uint8),
                      camera=None if k is None else CameraInfo(k, (6, 4)))
    topics = [t for t, _, _ in OutputEncoder(p).encode(bag_frame, frame_result())]
    assert sorted(topics) == sorted(f"/front/rba/{n}" for n in M.OUTPUT_TOPICS
                                    if n != "obstacle_points")
    assert not has_intrinsics(bag_frame)


@pytest.mark.parametrize("args, topic", [
    (("front", "semantic"), "front/rba/semantic"),           # node: relative to its namespace
    (("", "labels"), "rba/labels"),                          # node without camera namespaces
    (("front", "anomaly", "/perception/"), "front/perception/anomaly"),
    (("front", "anomaly", ""), "front/anomaly"),
    (("/front", "semantic", "{camera}/rba"), "/front/rba/semantic"),  # replay: absolute
    (("", "semantic", "{camera}/rba"), "/rba/semantic"),
    (("/a/b", "obstacles", "/out{camera}"), "/out/a/b/obstacles"),
])
def test_output_topic(args, topic):
    assert M.output_topic(*args) == topic


def test_replay_topics_are_the_nodes_under_the_camera_namespace():
    from rba_core.replay.bags import output_topic

    assert output_topic("/front/image_raw/compressed", "anomaly") == "/front/rba/anomaly"
    assert output_topic("/image_raw", "labels") == "/rba/labels"
