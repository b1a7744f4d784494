"""The node's messages: vision_msgs built into the venv, and live == replay byte for byte."""
import json
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
