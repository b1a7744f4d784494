"""launch/perception.launch.py and config/rba.rviz: arguments, entry point, topics.

The launch description itself is built only where launch_ros is importable (not on PyPI); the
arguments are checked from the file's syntax tree everywhere.
"""
import ast
import importlib.metadata
import importlib.util

import pytest
import yaml

from rba_core.pipeline.messages import OUTPUT_TOPICS

from conftest import REPO

LAUNCH = REPO / "launch" / "perception.launch.py"
ARGS = {"params_file", "namespace", "image", "camera_info", "use_sim_time", "log_level"}


def test_launch_arguments_from_the_syntax_tree():
    tree = ast.parse(LAUNCH.read_text())
    declared = {call.args[0].value for call in ast.walk(tree)
                if isinstance(call, ast.Call) and getattr(call.func, "id", "") ==
                "DeclareLaunchArgument"}
    assert declared == ARGS
    executables = {kw.value.value for call in ast.walk(tree) if isinstance(call, ast.Call)
                   for kw in call.keywords if kw.arg == "executable"}
    assert executables == {"perception_node"}


def test_console_script_is_the_node_main():
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    if "perception_node" not in scripts:
        pytest.skip("rba_ros is not pip-installed in this environment")
    assert scripts["perception_node"] == "rba_ros.perception_node:main"


def test_launch_description_builds():
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (not on PyPI)")
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import LifecycleNode

    spec = importlib.util.spec_from_file_location("perception_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    names = {e.name for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    assert names == ARGS
    assert sum(isinstance(e, LifecycleNode) for e in ld.entities) == 1


def test_rviz_shows_the_overlays_the_cloud_and_the_camera():
    rviz = yaml.safe_load((REPO / "config" / "rba.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    topics = {d["Class"].split("/")[-1]: [] for d in displays}
    for d in displays:
        if "Topic" in d:
            topics[d["Class"].split("/")[-1]].append(d["Topic"]["Value"])
    assert "/camera/image_raw" in topics["Camera"]
    assert set(topics["Image"]) == {"/camera/rba/semantic_color", "/camera/rba/anomaly_color"}
    assert topics["PointCloud2"] == ["/camera/rba/obstacle_points"]
    for topic in topics["Image"] + topics["PointCloud2"]:
        assert topic.split("/")[-1] in OUTPUT_TOPICS
