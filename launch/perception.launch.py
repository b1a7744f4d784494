"""Launch the rba_perception lifecycle node (and rviz2 with use_rviz:=true).

    ros2 launch rba_ros perception.launch.py
    ros2 launch rba_ros perception.launch.py params_file:=/path/my.yaml namespace:=robot1 \\
        image:=/zed/left/image_rect_color camera_info:=/zed/left/camera_info use_sim_time:=true
    ros2 launch rba_ros perception.launch.py model_path:=/abs/m.onnx backend:=onnxruntime \\
        device:=cuda threshold:=-0.2 input_size:=1280x720 use_rviz:=true

``image`` / ``camera_info`` remap the first camera's topics (``camera/image_raw``,
``camera/image_raw/compressed`` and ``camera/camera_info`` with the default ``cameras: [camera]``);
outputs stay under ``camera/rba/``. ``model_path``, ``device``, ``backend``, ``threshold`` and
``input_size`` (WIDTHxHEIGHT, as ``rba --input-size``) override the params file when given. rviz2
gets config/rba.rviz with its topics moved to the namespace. More cameras: list them in the params
file. With ``autostart: false`` in the params file, a lifecycle manager configures and activates it.
"""
import tempfile
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {  # name -> (default, description)
    "params_file": (PathJoinSubstitution([FindPackageShare("rba_ros"), "config", "perception.yaml"]),
                    "node parameters (every parameter is in config/perception.yaml)"),
    "namespace": ("", "namespace of the node and its relative topics"),
    "image": ("camera/image_raw", "remap of the camera image topic (camera/image_raw)"),
    "camera_info": ("camera/camera_info", "remap of the CameraInfo topic (camera/camera_info)"),
    "use_sim_time": ("false", "use /clock (bag replay, simulation)"),
    "log_level": ("info", "debug, info, warn, error"),
    "model_path": ("", "model file (.safetensors / .onnx); empty = the params file's"),
    "device": ("", "torch device (cpu, cuda, cuda:1); empty = the params file's"),
    "backend": ("", "auto, tensorrt, onnxruntime or torch; empty = the params file's"),
    "threshold": ("", "anomaly threshold of the score; empty = the params file's"),
    "input_size": ("", "WIDTHxHEIGHT to export the model at (ONNX Runtime / TensorRT); "
                       "empty = the params file's"),
    "use_rviz": ("false", "also start rviz2 with config/rba.rviz for this namespace"),
}


def _actions(context):
    from rba_ros.launch_args import OVERRIDES, parameter_overrides, rviz_config

    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    image = LaunchConfiguration("image")
    node = LifecycleNode(
        package="rba_ros", executable="perception_node", name="rba_perception",
        namespace=value["namespace"], output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"),
                                                    value_type=bool)},
                    parameter_overrides({k: value[k] for k in OVERRIDES})],
        remappings=[("camera/image_raw", image),
                    ("camera/image_raw/compressed", [image, "/compressed"]),
                    ("camera/camera_info", LaunchConfiguration("camera_info"))],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")])
    if value["use_rviz"].lower() not in ("true", "1", "yes"):
        return [node]
    share = Path(FindPackageShare("rba_ros").perform(context))
    rviz = tempfile.NamedTemporaryFile("w", prefix="rba_", suffix=".rviz", delete=False)
    with rviz:
        rviz.write(rviz_config((share / "config" / "rba.rviz").read_text(),
                               value["namespace"], value["image"]))
    return [node, Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                       arguments=["-d", rviz.name])]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in ARGUMENTS.items()]
        + [OpaqueFunction(function=_actions)])
