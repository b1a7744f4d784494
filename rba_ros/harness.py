"""Run and talk to the real node over DDS on this machine (tests, bench, demo).

- ``ros_env(domain)``: environment for a ROS process here: LOCALHOST discovery, its own
  ``ROS_DOMAIN_ID``, the Fast DDS shared-memory profile (big images arrive intact).
- ``NodeProcess``: ``python -m rba_ros.perception_node --ros-args --params-file ...`` as a
  subprocess, its log kept for failure messages.
- ``RosClient``: a node in this process with a background executor: publishers, collecting
  subscriptions, lifecycle and parameter service calls, ``wait_until``.

Everything here sets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (this machine only); the node
itself never does.
"""
from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from rba_core.pipeline.image_msgs import image_array  # noqa: F401 (tests read outputs with it)
from rba_core.pipeline.messages import camera_info_msg, header, image_msg

from .conversions import qos, to_msg

REPO = Path(__file__).resolve().parent.parent


def fastdds_profile() -> Path:
    """config/fastdds_shm.xml of the source tree, else of the installed package."""
    path = REPO / "config" / "fastdds_shm.xml"
    if path.is_file():
        return path
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("rba_ros")) / "config" / "fastdds_shm.xml"


_domains = itertools.count(random.Random(os.getpid()).randrange(100))


def ros_env(domain: int) -> dict:
    env = dict(os.environ)
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(domain),
               FASTRTPS_DEFAULT_PROFILES_FILE=str(fastdds_profile()), PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="2", RCUTILS_COLORIZED_OUTPUT="0")
    return env


def next_domain() -> int:
    """A domain id for one run: 1..100, different for consecutive calls in this process."""
    return next(_domains) % 100 + 1


def have_vision_msgs() -> bool:
    try:
        import vision_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


class NodeProcess:
    """The perception node in a subprocess with a params file built from ``params``
    (loaded after the ``base_params`` files, so it overrides them). ``command`` replaces
    ``python -m rba_ros.perception_node`` (an installed executable), ``env`` adds variables."""

    def __init__(self, tmp_path: Path, domain: int, params: dict, name: str = "rba_perception",
                 extra_args: list[str] | None = None, base_params: list[Path] = (),
                 command: list[str] | None = None, env: dict | None = None):
        self.params_file = tmp_path / f"{name}_params.yaml"
        self.params_file.write_text(yaml.safe_dump({name: {"ros__parameters": params}}))
        self.log_path = tmp_path / f"{name}.log"
        files = [a for f in [*base_params, self.params_file] for a in ("--params-file", str(f))]
        self.cmd = [*(command or [sys.executable, "-m", "rba_ros.perception_node"]),
                    "--ros-args", *files, *(extra_args or [])]
        self.env = {**ros_env(domain), **(env or {})}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "NodeProcess":
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: the node shuts down cleanly
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __exit__(self, *exc) -> None:
        self.stop()


class RosClient:
    """A test-side node on its own context and domain, spun in a background thread."""

    def __init__(self, domain: int, name: str = "rba_test_client"):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import MultiThreadedExecutor

        os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile())
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.lock = threading.Lock()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()

    # -- topics ---------------------------------------------------------------------------------
    def publisher(self, msg_type, topic: str, reliable: bool = True, depth: int = 10,
                  transient_local: bool = False):
        return self.node.create_publisher(msg_type, topic, qos(reliable, depth, transient_local))

    def collect(self, msg_type, topic: str, reliable: bool = True, depth: int = 50,
                transient_local: bool = False, on_msg=None) -> list:
        """Subscribe; returns a list that fills with (receipt time.monotonic(), msg)."""
        box: list = []

        def cb(msg):
            with self.lock:
                box.append((time.monotonic(), msg))
            if on_msg is not None:
                on_msg(msg)

        self.node.create_subscription(msg_type, topic, cb, qos(reliable, depth, transient_local))
        return box

    def wait_until(self, predicate, timeout: float, what: str, node: NodeProcess | None = None,
                   period: float = 0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if node is not None and not node.alive():
                raise AssertionError(f"node died while waiting for {what}:\n{node.log()[-3000:]}")
            time.sleep(period)
        log = f"\nnode log:\n{node.log()[-3000:]}" if node is not None else ""
        raise AssertionError(f"timed out after {timeout} s waiting for {what}{log}")

    def wait_for_subscriber(self, topic: str, node: NodeProcess, timeout: float = 60.0) -> None:
        self.wait_until(lambda: self.node.count_subscribers(topic) > 0, timeout,
                        f"a subscriber on {topic}", node)

    # -- services -------------------------------------------------------------------------------
    def call(self, srv_type, name: str, request, timeout: float = 60.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {name} not available")
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not future.done():
                raise AssertionError(f"service {name} did not answer in {timeout} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def lifecycle(self, node_name: str, transition: str, timeout: float = 120.0) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        req = ChangeState.Request()
        req.transition.id = getattr(Transition, f"TRANSITION_{transition.upper()}")
        return self.call(ChangeState, f"/{node_name}/change_state", req, timeout).success

    def state(self, node_name: str, timeout: float = 60.0) -> str:
        from lifecycle_msgs.srv import GetState

        res = self.call(GetState, f"/{node_name}/get_state", GetState.Request(), timeout)
        return res.current_state.label

    def set_params(self, node_name: str, values: dict):
        """[(successful, reason)] for each value (rclpy types from the Python values)."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request()
        req.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        res = self.call(SetParameters, f"/{node_name}/set_parameters", req)
        return [(r.successful, r.reason) for r in res.results]

    def get_params(self, node_name: str, names: list[str]) -> dict:
        """Current values of parameters ``names`` (Python values)."""
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        res = self.call(GetParameters, f"/{node_name}/get_parameters",
                        GetParameters.Request(names=names))
        return {n: parameter_value_to_python(v) for n, v in zip(names, res.values)}


# -- messages -----------------------------------------------------------------------------------
def make_image(array: np.ndarray, encoding: str, frame_id: str, stamp: tuple[int, int]):
    """sensor_msgs/Image from pixels in ``encoding``."""
    from sensor_msgs.msg import Image

    return to_msg(Image, image_msg(header(stamp, frame_id), array, encoding))


def camera_info(frame_id: str, width: int, height: int, f: float, stamp=(0, 0), k=None, d=None,
                distortion_model: str = "plumb_bob"):
    """sensor_msgs/CameraInfo: focal length ``f``, principal point in the image centre (or the
    9 values ``k``), distortion ``d``."""
    from sensor_msgs.msg import CameraInfo

    k = [f, 0.0, width / 2.0, 0.0, f, height / 2.0, 0.0, 0.0, 1.0] if k is None else list(k)
    return to_msg(CameraInfo, camera_info_msg(header(stamp, frame_id), k, width, height, d,
                                              distortion_model))


def transform_stamped(parent: str, child: str, xyz, quat_xyzw):
    """geometry_msgs/TransformStamped: ``child``'s pose in ``parent`` (a /tf_static entry)."""
    from geometry_msgs.msg import TransformStamped

    t = TransformStamped(child_frame_id=child)
    t.header.frame_id = parent
    tr, r = t.transform.translation, t.transform.rotation
    tr.x, tr.y, tr.z = (float(v) for v in xyz)
    r.x, r.y, r.z, r.w = (float(v) for v in quat_xyzw)
    return t


def now_stamp(node) -> tuple[int, int]:
    t = node.get_clock().now().to_msg()
    return t.sec, t.nanosec


def diagnostics_values(msg, camera: str) -> dict[str, str] | None:
    """Key/values of camera ``camera``'s status in a DiagnosticArray (None when absent)."""
    for status in msg.status:
        if status.name.endswith(f"camera {camera}"):
            return {kv.key: kv.value for kv in status.values}
    return None
