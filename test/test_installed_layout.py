"""Installs that ``ros2 run`` / ``ros2 launch`` can use: colcon build in a workspace, a plain
``pip install .`` and the editable install of ``make setup``.

ros2 run / launch find a package through the ament index (AMENT_PREFIX_PATH -> PREFIX/share/
ament_index/resource_index/packages/rba_ros) and run PREFIX/lib/rba_ros/<executable>; the launch
file and configs are read from PREFIX/share/rba_ros. Each install goes into a throw-away prefix
from a copy of the sources (the shared venv is never touched).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SUMMARY

EXECUTABLES = ("perception_node", "rba")
SHARE = ("package.xml", "launch/perception.launch.py", "config/perception.yaml",
         "config/rba.rviz", "config/fastdds_shm.xml")
MARKER = "share/ament_index/resource_index/packages/rba_ros"
COLCON_DIR = Path(os.environ.get("RBA_COLCON_DIR", Path(sys.prefix) / "colcon"))
SITE = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def source_copy(dest: Path) -> Path:
    """The files git would commit (or the tree without build outputs) in ``dest``."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True)
    if files.returncode == 0 and files.stdout:
        for name in files.stdout.decode().split("\0"):
            if name and (REPO / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, dest / name)
    else:
        shutil.copytree(REPO, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "install", "log", "out", "runs", "*.egg-info"))
    return dest


def check_layout(prefix: Path) -> None:
    for name in SHARE:
        assert (prefix / "share/rba_ros" / name).is_file(), f"missing share/rba_ros/{name}"
    assert (prefix / MARKER).is_file(), "missing the ament index marker"
    for name in EXECUTABLES:
        exe = prefix / "lib/rba_ros" / name
        assert exe.is_file() and os.access(exe, os.X_OK), f"lib/rba_ros/{name} not executable"
    # what ros2 run / launch ask ament_index_python, with only this prefix on the path
    code = ("from ament_index_python.packages import get_package_prefix as p, "
            "get_package_share_directory as s\nprint(p('rba_ros')); print(s('rba_ros'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "AMENT_PREFIX_PATH": str(prefix)}, timeout=60)
    assert out.stdout.split() == [str(prefix), str(prefix / "share/rba_ros")], out.stderr


def run_installed(prefix: Path, site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "AMENT_PREFIX_PATH": str(prefix)}
    return subprocess.run([str(prefix / "lib/rba_ros/rba"), *args], capture_output=True,
                          text=True, env=env, timeout=300, cwd=prefix)


def test_pip_install_has_the_ament_layout(tmp_path):
    src = source_copy(tmp_path / "src")
    prefix = tmp_path / "prefix"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--no-build-isolation", "--ignore-installed", "--no-compile",
                        "--prefix", str(prefix), str(src)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    check_layout(prefix)
    r = run_installed(prefix, prefix / SITE, "--help")  # launcher -> bin/rba -> the install
    assert r.returncode == 0 and "usage: rba" in r.stdout, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-c", "import rba_ros; print(rba_ros.__file__)"],
                       env={**os.environ, "PYTHONPATH": str(prefix / SITE)}, cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.stdout.startswith(str(prefix)), r.stdout + r.stderr


def test_editable_install_has_the_ament_layout(tmp_path):
    """``pip install -e .`` installs exactly this wheel's files (plus its .pth)."""
    src = source_copy(tmp_path / "src")
    r = subprocess.run([sys.executable, "-c", "import sys\nfrom setuptools import build_meta as b"
                        "\nprint(b.build_editable(sys.argv[1]))", str(tmp_path)], cwd=src,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = zipfile.ZipFile(tmp_path / r.stdout.split()[-1])
    data = "rba_ros-0.1.0.data/data/"
    modes = {i.filename[len(data):]: i.external_attr >> 16 for i in wheel.infolist()
             if i.filename.startswith(data)}
    for name in SHARE:
        assert f"share/rba_ros/{name}" in modes, f"missing share/rba_ros/{name}"
    assert MARKER in modes
    for name in EXECUTABLES:
        assert modes.get(f"lib/rba_ros/{name}", 0) & 0o111, f"lib/rba_ros/{name} not executable"


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory):
    if not (COLCON_DIR / "colcon_core").is_dir():
        pytest.skip(f"colcon not found in {COLCON_DIR} (make setup installs it there from "
                    "requirements/colcon.txt; or set RBA_COLCON_DIR)")
    ws = tmp_path_factory.mktemp("colcon_ws")
    source_copy(ws / "src" / "rba_ros")
    env = {**os.environ, "PYTHONPATH": str(COLCON_DIR)}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "colcon", "build", "--base-paths", "src",
                        "--event-handlers", "console_direct-"], cwd=ws, env=env,
                       capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - t0
    SUMMARY.append(f"colcon build of rba_ros into a fresh workspace: {seconds:.1f} s")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return ws / "install" / "rba_ros", seconds


def test_colcon_build_has_the_ament_layout(colcon_install):
    prefix, _ = colcon_install
    check_layout(prefix)
    r = run_installed(prefix, prefix / SITE, "--help")
    assert r.returncode == 0 and "usage: rba" in r.stdout, r.stderr[-2000:]


@pytest.mark.ros
def test_colcon_installed_node_runs_a_frame_end_to_end(colcon_install, tmp_path, data_dir):
    """lib/rba_ros/perception_node of the install, its shipped params and default model."""
    pytest.importorskip("rclpy")
    from rba_ros.harness import (NodeProcess, RosClient, have_vision_msgs, make_image,
                                 next_domain, now_stamp)
    if not have_vision_msgs():
        pytest.skip("vision_msgs not built into this venv")
    import cv2
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    prefix, _ = colcon_install
    frames = sorted((data_dir / "camvid" / "val").glob("*.png"))
    if not frames:
        pytest.skip(f"no CamVid frames in {data_dir / 'camvid' / 'val'}")
    rgb = cv2.cvtColor(cv2.imread(str(frames[0])), cv2.COLOR_BGR2RGB)
    domain = next_domain()
    node = NodeProcess(tmp_path, domain, {"threads": 1},
                       base_params=[prefix / "share/rba_ros/config/perception.yaml"],
                       command=[str(prefix / "lib/rba_ros/perception_node")],
                       env={"PYTHONPATH": str(prefix / SITE),
                            "AMENT_PREFIX_PATH": f"{prefix}:{sys.prefix}"})
    c = RosClient(domain)
    try:
        semantic = c.collect(Image, "/camera/rba/semantic")
        obstacles = c.collect(Detection2DArray, "/camera/rba/obstacles")
        with node:
            c.wait_for_subscriber("/camera/image_raw", node, timeout=180)
            pub = c.publisher(Image, "/camera/image_raw")
            stamps = []

            def publish():  # a fresh stamp each time: the shipped max_age drops old frames
                stamps.append(now_stamp(c.node))
                pub.publish(make_image(rgb, "rgb8", "camvid_cam", stamps[-1]))

            c.wait_until(lambda: (publish(), semantic and obstacles)[1], 120,
                         "semantic and obstacles for the frame", node, period=1.0)
            log = node.log()
        sem = semantic[0][1]
        assert (sem.header.stamp.sec, sem.header.stamp.nanosec) in stamps
        assert sem.header.frame_id == "camvid_cam" and (sem.height, sem.width) == rgb.shape[:2]
        assert np.unique(np.frombuffer(bytes(sem.data), np.uint8)).size > 1  # a real model
        assert obstacles[0][1].header.frame_id == "camvid_cam"
        assert "configured" in log and "Traceback" not in log
        r = subprocess.run([sys.executable, "-c", "import rba_ros, rba_core\n"
                            "print(rba_ros.__file__, rba_core.__file__)"], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(prefix / SITE)},
                           capture_output=True, text=True)
        assert all(f.startswith(str(prefix)) for f in r.stdout.split()), r.stdout + r.stderr
    finally:
        c.close()
