"""Launch the rba_perception lifecycle node.

    ros2 launch rba_ros perception.launch.py
    ros2 launch rba_ros perception.launch.py params_file:=/path/my.yaml namespace:=robot1 \
        image:=/zed/left/image_rect_color camera_info:=/zed/left/camera_info use_sim_time:=true

``image`` / ``camera_info`` remap the first camera's topics (``camera/image_raw``,
``camera/image_raw/compressed`` and ``camera/camera_info`` with the default ``cameras: [camera]``);
outputs stay under ``camera/rba/``. More cameras: list them in the params file. With
``autostart: false`` in the params file, a lifecycle manager configures and activates the node.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params_file = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    image = LaunchConfiguration("image")
    camera_info = LaunchConfiguration("camera_info")
    use_sim_time = LaunchConfiguration("use_sim_time")
    log_level = LaunchConfiguration("log_level")

    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("rba_ros"), "config",
                                                "perception.yaml"]),
            description="node parameters (every parameter is in config/perception.yaml)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its relative topics"),
        DeclareLaunchArgument("image", default_value="camera/image_raw",
                              description="remap of the camera image topic (camera/image_raw)"),
        DeclareLaunchArgument("camera_info", default_value="camera/camera_info",
                              description="remap of the CameraInfo topic (camera/camera_info)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (bag replay, simulation)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="debug, info, warn, error"),
    ]
    node = LifecycleNode(
        package="rba_ros",
        executable="perception_node",
        name="rba_perception",
        namespace=namespace,
        output="screen",
        parameters=[params_file,
                    {"use_sim_time": ParameterValue(use_sim_time, value_type=bool)}],
        remappings=[("camera/image_raw", image),
                    ("camera/image_raw/compressed", [image, "/compressed"]),
                    ("camera/camera_info", camera_info)],
        arguments=["--ros-args", "--log-level", log_level],
    )
    return LaunchDescription(arguments + [node])
