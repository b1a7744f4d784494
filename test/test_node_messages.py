"""The node's messages: vision_msgs built into the venv, and live == replay byte for byte."""
import json
from types import SimpleNamespace
import sys
from pathlib import Path

import numpy as np
import pytest

from rba_core.pipeline import messages as M
from rba_core.pipeline.camera import CameraModel, CameraModelError
from rba_core.pipeline.config import ObstacleConfig
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
    box = SimpleNamespace(box="b")
    ground = SimpleNamespace(footprints=[box, None], box_pose=lambda b: (
        np.array([5.0, -1.25, 0.5]), np.array([0.0, 0.0, 0.38268343, 0.92387953]),
        np.array([0.6, 1.1, 1.0])))
    return [
        ("sensor_msgs/msg/Image", M.image_msg(hdr, ids, "mono8")),
        ("sensor_msgs/msg/Image", M.image_msg(hdr, rng.random((20, 30), np.float32), "32FC1")),
        ("sensor_msgs/msg/Image", M.image_msg(hdr, rgb, "rgb8")),
        ("vision_msgs/msg/Detection2DArray", M.detections_msg(hdr, obstacles, [0.97, 0.5],
                                                              [7, 12])),
        ("vision_msgs/msg/LabelInfo", M.labels_msg(hdr, ["road", "car", "sky"], 0.99)),
        ("sensor_msgs/msg/PointCloud2", M.pointcloud_msg(hdr, rng.random((7, 3), np.float32),
                                                         rng.random(7, np.float32))),
        ("sensor_msgs/msg/PointCloud2", M.pointcloud_msg(hdr, rng.random((5, 3), np.float32))),
        ("vision_msgs/msg/Detection3DArray", M.detections_3d_msg(hdr, ground, [0.97, 0.5],
                                                                 [7, 12])),
    ]


@pytest.mark.parametrize("i", range(8))
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
    """Records which products were asked for (overlays and ground are the costly ones)."""
    info = SimpleNamespace(class_names=["road", "car"])
    cfg = SimpleNamespace(threshold=0.0, ground_frame="", obstacles=ObstacleConfig())
    threshold_probability = 0.0

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

    def detection_scores(self, result):
        return [0.5] * len(result.obstacles.obstacles)

    def ground(self, result, camera, pose):
        self.asked.append("ground")
        return SimpleNamespace(obstacle_points=np.zeros((2, 3), np.float32),
                               obstacle_probability=np.zeros(2, np.float32),
                               free_points=np.zeros((3, 3), np.float32), footprints=[])


def frame_result():
    return SimpleNamespace(class_ids=np.zeros((4, 6), np.uint8),
                           anomaly=np.zeros((4, 6), np.float32),
                           obstacles=ObstacleResult([], np.zeros((4, 6), bool),
                                                    np.zeros((4, 6), np.int32)))


GOOD_K = [5.0, 0.0, 3.0, 0.0, 5.0, 2.0, 0.0, 0.0, 1.0]
BAD_INFOS = [None, {"k": [0.0] * 9}, {"k": [float("nan")] + GOOD_K[1:]},
             {"k": GOOD_K[:4] + [float("inf")] + GOOD_K[5:]}, {"k": GOOD_K[:8]},
             {"k": GOOD_K, "d": [0.1] * 5, "distortion_model": "kannala_brandt"},
             {"k": GOOD_K, "roi": (4, 0, 4, 4)}]


def camera_msg(info: dict | None):
    """A CameraInfo-like object (the fields CameraModel.from_msg reads), 6x4 image."""
    if info is None:
        return None
    roi = info.get("roi", (0, 0, 0, 0))
    return SimpleNamespace(k=info["k"], d=info.get("d", []), width=6, height=4,
                           distortion_model=info.get("distortion_model", "plumb_bob"),
                           binning_x=0, binning_y=0,
                           roi=SimpleNamespace(x_offset=roi[0], y_offset=roi[1], width=roi[2],
                                               height=roi[3]))


def test_frame_messages_builds_only_what_is_wanted():
    p = StubPerception()
    frame = M.FrameData(p, M.header((1, 2), "cam"), np.zeros((4, 6, 3), np.uint8), frame_result(),
                        CameraModel.from_msg(camera_msg({"k": GOOD_K})))
    out = M.frame_messages(frame, {"anomaly", "obstacles"})
    assert set(out) == {"anomaly", "obstacles"} and p.asked == []
    out = M.frame_messages(frame)
    assert set(out) == set(M.OUTPUT_TOPICS) and sorted(p.asked) == [
        "anomaly_color", "ground", "semantic_color"]  # the ground once for three outputs
    assert out["anomaly"]["encoding"] == "32FC1" and out["semantic"]["encoding"] == "mono8"
    assert all(m["header"] == {"stamp": {"sec": 1, "nanosec": 2}, "frame_id": "cam"}
               for m in out.values())  # no ground_frame: the ground outputs too
    assert [f["name"] for f in out["obstacle_points"]["fields"]] == ["x", "y", "z", "intensity"]
    assert [f["name"] for f in out["free_points"]["fields"]] == ["x", "y", "z"]


@pytest.mark.parametrize("info", BAD_INFOS,
                         ids=["none", "zero", "nan", "inf", "short", "model", "roi"])
def test_no_valid_camera_info_no_ground_outputs_in_node_and_replay(info):
    """The node's check (CameraModel.from_msg) is the replay's too."""
    from rba_core.replay.runner import OutputEncoder, has_intrinsics
    from rba_core.replay.source import Frame, camera_model

    model, why = camera_model(camera_msg(info)) if info is not None else (None, None)
    assert model is None and (info is None or why.startswith("camera_info."))
    if info is not None:
        with pytest.raises(CameraModelError):
            CameraModel.from_msg(camera_msg(info))
    p = StubPerception()
    frame = M.FrameData(p, M.header((1, 2), "cam"), np.zeros((4, 6, 3), np.uint8), frame_result(),
                        model)
    assert set(M.frame_messages(frame)) == set(M.OUTPUT_TOPICS) - M.CAMERA_OUTPUTS
    assert "ground" not in p.asked
    assert M.CAMERA_OUTPUTS == {"obstacle_points", "free_points", "obstacles_3d"}
    bag_frame = Frame(0, "/front/image_raw", "sensor_msgs/msg/Image", 10, b"", (1, 2), "cam",
                      rgb=np.zeros((4, 6, 3), np.uint8), camera=model, camera_error=why)
    topics = [t for t, _, _ in OutputEncoder(p).encode(bag_frame, frame_result())]
    assert sorted(topics) == sorted(f"/front/rba/{n}" for n in M.OUTPUT_TOPICS
                                    if n not in M.CAMERA_OUTPUTS)
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
