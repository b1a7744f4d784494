"""launch/perception.launch.py and config/rba.rviz: arguments, entry point, topics.

The launch description itself is built only where launch_ros is importable (not on PyPI, so not
in the venv of make setup); the arguments are checked from the file's syntax tree everywhere and
their conversion (rba_ros.launch_args) is ROS-free.
"""
import ast
import importlib.metadata
import importlib.util

import pytest
import yaml

from rba_core.pipeline.messages import OUTPUT_TOPICS

from conftest import REPO

LAUNCH = REPO / "launch" / "perception.launch.py"
ARGS = {"params_file", "namespace", "image", "camera_info", "use_sim_time", "log_level",
        "model_path", "device", "backend", "threshold", "input_size", "use_rviz"}


def test_launch_arguments_from_the_syntax_tree():
    tree = ast.parse(LAUNCH.read_text())
    table = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], "id", "") == "ARGUMENTS")
    assert {k.value for k in table.keys} == ARGS
    executables = {kw.value.value for call in ast.walk(tree) if isinstance(call, ast.Call)
                   for kw in call.keywords if kw.arg == "executable"}
    assert executables == {"perception_node", "rviz2"}


def test_overrides_only_what_is_given_typed_like_the_parameters():
    from rba_ros.launch_args import parameter_overrides

    assert parameter_overrides({"model_path": "", "threshold": "", "input_size": ""}) == {}
    assert parameter_overrides({"model_path": "/m.onnx", "device": "cuda:1",
                                "backend": "onnxruntime", "threshold": "-0.2",
                                "input_size": "1280x720"}) == {
        "model_path": "/m.onnx", "device": "cuda:1", "backend": "onnxruntime",
        "threshold": -0.2, "input_size": [720, 1280]}  # the node's [height, width]
    with pytest.raises(ValueError, match="threshold"):
        parameter_overrides({"threshold": "high"})


def test_rviz_config_follows_the_namespace_and_the_image_remap():
    from rba_ros.launch_args import rviz_config

    text = (REPO / "config" / "rba.rviz").read_text()
    assert rviz_config(text) == text  # no namespace, default image: unchanged
    for ns, image, camera, outputs in [
            ("robot1", "camera/image_raw", "/robot1/camera/image_raw", "/robot1/camera/rba"),
            ("/a/b/", "front/image", "/a/b/front/image", "/a/b/camera/rba"),
            ("robot1", "/zed/left/image", "/zed/left/image", "/robot1/camera/rba")]:
        topics = _topics(yaml.safe_load(rviz_config(text, ns, image)))
        assert topics["Camera"] == [camera]
        assert set(topics["Image"]) == {f"{outputs}/semantic_color", f"{outputs}/anomaly_color"}
        assert topics["PointCloud2"] == [f"{outputs}/obstacle_points"]


def _topics(rviz: dict) -> dict[str, list[str]]:
    displays = rviz["Visualization Manager"]["Displays"]
    topics = {d["Class"].split("/")[-1]: [] for d in displays}
    for d in displays:
        if "Topic" in d:
            topics[d["Class"].split("/")[-1]].append(d["Topic"]["Value"])
    return topics


def test_console_script_is_the_node_main():
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    if "perception_node" not in scripts:
        pytest.skip("rba_ros is not pip-installed in this environment")
    assert scripts["perception_node"] == "rba_ros.perception_node:main"


def test_launch_description_builds():
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (not on PyPI)")
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch_ros.actions import LifecycleNode

    spec = importlib.util.spec_from_file_location("perception_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    names = {e.name for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    assert names == ARGS
    opaque = [e for e in ld.entities if isinstance(e, OpaqueFunction)]
    context = LaunchContext()
    context.launch_configurations.update(
        {name: "" for name in ARGS}, params_file="p.yaml", namespace="robot1",
        image="camera/image_raw", camera_info="camera/camera_info", use_sim_time="false",
        log_level="info", threshold="-0.2", input_size="640x480", use_rviz="false")
    actions = opaque[0].execute(context)
    assert len(actions) == 1 and isinstance(actions[0], LifecycleNode)


def test_rviz_shows_the_overlays_the_cloud_and_the_camera():
    topics = _topics(yaml.safe_load((REPO / "config" / "rba.rviz").read_text()))
    assert "/camera/image_raw" in topics["Camera"]
    assert set(topics["Image"]) == {"/camera/rba/semantic_color", "/camera/rba/anomaly_color"}
    assert topics["PointCloud2"] == ["/camera/rba/obstacle_points"]
    for topic in topics["Image"] + topics["PointCloud2"]:
        assert topic.split("/")[-1] in OUTPUT_TOPICS
