"""Interface packages built into the venv by scripts/build_ros_msgs.sh match the real ROS ones."""
import json
import sys
from pathlib import Path

import pytest

SHARE = Path(sys.prefix) / "share"


def installed_hashes(pkg: str) -> dict[str, str]:
    found = {}
    for path in (SHARE / pkg / "msg").glob("*.json"):
        for entry in json.loads(path.read_text())["type_hashes"]:
            found[entry["type_name"]] = entry["hash_string"]
    return found


def test_tf2_msgs_type_hash_equals_the_jazzy_definition():
    """rosidl's hash of our TFMessage == rosbags' hash of Jazzy's tf2_msgs/TFMessage."""
    if not (SHARE / "tf2_msgs" / "msg").is_dir():
        pytest.skip("tf2_msgs not built into this venv (bash scripts/build_ros_msgs.sh VENV)")
    from rosbags.typesys import Stores, get_typestore

    expected = get_typestore(Stores.ROS2_JAZZY).hash_rihs01("tf2_msgs/msg/TFMessage")
    assert installed_hashes("tf2_msgs")["tf2_msgs/msg/TFMessage"] == expected


def test_tf2_msgs_imports_and_carries_transforms():
    pytest.importorskip("rclpy")
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        pytest.skip("tf2_msgs not built into this venv (bash scripts/build_ros_msgs.sh VENV)")
    from geometry_msgs.msg import TransformStamped

    ts = TransformStamped(child_frame_id="camera")
    ts.header.frame_id = "base_link"
    ts.transform.translation.z = 1.5
    msg = TFMessage(transforms=[ts])
    assert msg.transforms[0].header.frame_id == "base_link"
    assert msg.transforms[0].transform.rotation.w == 1.0


def test_replay_typestore_vision_msgs_hashes_equal_the_real_package():
    """rosbags' RIHS01 of our vision_msgs definitions (what `rba replay` writes) == the hashes
    rosidl generated for ros-perception/vision_msgs 4.x on Jazzy (EXPECTED_TYPE_HASHES.json)."""
    from rba_core.replay.bags import output_typestore

    from conftest import REPO

    expected = json.loads((REPO / "rba_core/ros_msgs/vision_msgs/EXPECTED_TYPE_HASHES.json")
                          .read_text())
    store = output_typestore()
    for name, hash_string in expected.items():
        if not name.startswith("_"):
            assert store.hash_rihs01(name) == hash_string, name
