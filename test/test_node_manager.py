"""What a robot's supervisors see of the real node: /diagnostics (from node start, names with the
namespace, model ERROR after a failed configure, WARN without CameraInfo) and the bond that
nav2_lifecycle_manager waits for.

No ROS install here has bondpy, so the bond test puts a recording stand-in with bondpy's API
(``bondpy.bondpy.Bond(topic, id, node)``, heartbeat_period / heartbeat_timeout, start(),
shutdown(); bond_core's ROS 2 branch) and a ``bond.msg`` on the node's path: it checks when the
node forms and breaks the bond, not bondpy's protocol.
"""
import numpy as np
import pytest

from conftest import REPO
from rba_ros.harness import NodeProcess, RosClient, have_vision_msgs, make_image, next_domain, now_stamp

pytest.importorskip("rclpy")
if not have_vision_msgs():
    pytest.skip("vision_msgs not built into this venv (bash scripts/build_ros_msgs.sh VENV)",
                allow_module_level=True)

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

pytestmark = pytest.mark.ros

TINY = {"model_path": "preset:tiny", "backend": "torch", "threads": 1, "diagnostics_period": 0.2}
FAKE_BONDPY = '''
import os
LOG = os.environ["FAKE_BOND_LOG"]
def _log(*words):
    with open(LOG, "a") as f:
        f.write(" ".join(map(str, words)) + "\\n")
class Bond:
    def __init__(self, topic, id, node, on_broken=None, on_formed=None):
        _log("init", topic, id, type(node).__name__)
    def start(self):
        _log("start", self.heartbeat_period, self.heartbeat_timeout)
    def break_bond(self):
        _log("break")
    def shutdown(self):
        _log("shutdown")
'''


@pytest.fixture(scope="module")
def ros():
    domain = next_domain()
    c = RosClient(domain)
    diags = c.collect(DiagnosticArray, "/diagnostics", depth=100)
    try:
        yield domain, c, diags
    finally:
        c.close()


def latest(diags, name: str):
    for _, msg in reversed(list(diags)):
        for status in msg.status:
            if status.name == name:
                return status
    return None


def test_diagnostics_from_start_with_the_namespace(ros, tmp_path):
    domain, c, diags = ros
    # a params file keyed rba_perception does not reach /robot1/rba_perception: -p does
    params = [a for k, v in {**TINY, "autostart": "false"}.items() for a in ("-p", f"{k}:={v}")]
    with NodeProcess(tmp_path, domain, {}, extra_args=["-r", "__ns:=/robot1", *params]) as node:
        model = "/robot1/rba_perception: model"
        c.wait_until(lambda: latest(diags, model), 120, f"status {model!r}", node)
        status = latest(diags, model)
        assert status.level == DiagnosticStatus.OK and status.message == "unconfigured"

        assert c.lifecycle("robot1/rba_perception", "configure")
        assert c.lifecycle("robot1/rba_perception", "activate")
        c.wait_until(lambda: latest(diags, model).message == "active", 30, "model active", node)
        # obstacle_points wanted, no CameraInfo published: the camera status says so
        c.collect(PointCloud2, "/robot1/camera/rba/obstacle_points")
        pub = c.publisher(Image, "/robot1/camera/image_raw")
        frame = np.zeros((48, 64, 3), np.uint8)
        camera = "/robot1/rba_perception: camera camera"

        def warned():
            pub.publish(make_image(frame, "rgb8", "cam", now_stamp(c.node)))
            s = latest(diags, camera)
            return s is not None and s.level == DiagnosticStatus.WARN and "CameraInfo" in s.message
        c.wait_until(warned, 60, "camera WARN without CameraInfo", node, period=0.3)
    assert not any(s.name.startswith("rba_perception") for _, m in diags for s in m.status)


def test_failed_configure_is_a_model_error(ros, tmp_path):
    domain, c, diags = ros
    missing = tmp_path / "missing.safetensors"
    with NodeProcess(tmp_path, domain, {**TINY, "model_path": str(missing)}, name="rba_bad",
                     extra_args=["-r", "__node:=rba_bad"]) as node:
        name = "/rba_bad: model"

        def error():
            s = latest(diags, name)
            return s is not None and s.level == DiagnosticStatus.ERROR
        c.wait_until(error, 120, f"{name} ERROR", node)
        status = latest(diags, name)
        assert "configure failed" in status.message and "missing.safetensors" in status.message


def test_bond_formed_on_activate_broken_on_deactivate(ros, tmp_path):
    domain, c, _ = ros
    fake = tmp_path / "fake_ros"
    (fake / "bond").mkdir(parents=True)
    (fake / "bond" / "__init__.py").write_text("")
    (fake / "bond" / "msg.py").write_text("class Status:\n    pass\n")
    (fake / "bondpy").mkdir()
    (fake / "bondpy" / "__init__.py").write_text("")
    (fake / "bondpy" / "bondpy.py").write_text(FAKE_BONDPY)
    log = tmp_path / "bond.log"
    env = {"PYTHONPATH": f"{fake}:{REPO}", "FAKE_BOND_LOG": str(log)}
    with NodeProcess(tmp_path, domain, {**TINY, "autostart": False}, env=env):
        assert c.lifecycle("rba_perception", "configure", timeout=120)
        assert not log.exists()  # nav2 forms the bond after activate
        assert c.lifecycle("rba_perception", "activate")
        assert log.read_text().split("\n")[:2] == ["init bond rba_perception PerceptionNode",
                                                   "start 0.1 4.0"]
        assert c.lifecycle("rba_perception", "deactivate")
        assert log.read_text().split("\n")[2] == "shutdown"


def test_without_bondpy_the_node_says_bond_timeout_zero(ros, tmp_path):
    domain, c, _ = ros
    with NodeProcess(tmp_path, domain, {**TINY, "autostart": False}) as node:
        c.wait_until(lambda: "bond_timeout: 0.0" in node.log(), 120, "the bond hint", node)
