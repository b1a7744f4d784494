"""Lifecycle of the node for real: configure loads, activate subscribes, deactivate stops,
cleanup frees; a configure that fails leaves the node alive and unconfigured.

The node reads the shipped config/perception.yaml first (so it must load), then a small override.
"""
import time

import numpy as np
import pytest

from conftest import REPO
from rba_ros.harness import (NodeProcess, RosClient, have_vision_msgs, make_image, next_domain,
                             now_stamp)

pytest.importorskip("rclpy")
if not have_vision_msgs():
    pytest.skip("vision_msgs not built into this venv (bash scripts/build_ros_msgs.sh VENV)",
                allow_module_level=True)

from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import LabelInfo  # noqa: E402

pytestmark = pytest.mark.ros

SHIPPED = REPO / "config" / "perception.yaml"
OVERRIDE = {"autostart": False, "model_path": "preset:tiny", "backend": "torch", "threads": 1}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """The lifecycle node (autostart off) and one with a missing model (autostart on)."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    domain = next_domain()
    good = NodeProcess(tmp, domain, OVERRIDE, base_params=[SHIPPED])
    bad = NodeProcess(tmp, domain, {"model_path": str(tmp / "missing.safetensors")}, name="rba_bad",
                      extra_args=["-r", "__node:=rba_bad"], base_params=[SHIPPED])
    with good, bad:
        client = RosClient(domain)
        try:
            yield good, bad, client
        finally:
            client.close()


def test_transitions(nodes):
    node, _, c = nodes
    image_topic, out_topic = "/camera/image_raw", "/camera/rba/anomaly"
    assert c.state("rba_perception", timeout=120) == "unconfigured"
    assert c.node.count_subscribers(image_topic) == 0 and c.node.count_publishers(out_topic) == 0

    got: list = []
    c.collect(Image, out_topic, on_msg=got.append)
    labels = c.collect(LabelInfo, "/camera/rba/labels", transient_local=True)
    pub = c.publisher(Image, image_topic)
    frame = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)

    def drive(what, timeout=60.0):
        start = len(got)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(got) == start:
            pub.publish(make_image(frame, "rgb8", "camera_optical", now_stamp(c.node)))
            time.sleep(0.3)
        assert len(got) > start, f"no output while {what}\n{node.log()[-3000:]}"

    assert c.lifecycle("rba_perception", "configure")
    assert c.state("rba_perception") == "inactive"
    c.wait_until(lambda: c.node.count_publishers(out_topic) > 0, 30, "output publishers", node)
    time.sleep(1.0)
    assert c.node.count_subscribers(image_topic) == 0  # inactive: not subscribed yet

    assert c.lifecycle("rba_perception", "activate")
    assert c.state("rba_perception") == "active"
    c.wait_for_subscriber(image_topic, node)
    drive("active")
    c.wait_until(lambda: labels, 10, "labels (transient-local)", node)

    assert c.lifecycle("rba_perception", "deactivate")
    assert c.state("rba_perception") == "inactive"
    c.wait_until(lambda: c.node.count_subscribers(image_topic) == 0, 30, "unsubscribe", node)
    time.sleep(0.5)
    before = len(got)
    for _ in range(5):
        pub.publish(make_image(frame, "rgb8", "camera_optical", now_stamp(c.node)))
        time.sleep(0.2)
    time.sleep(1.0)
    assert len(got) == before  # deactivated: nothing processed

    assert c.lifecycle("rba_perception", "cleanup")
    assert c.state("rba_perception") == "unconfigured"
    c.wait_until(lambda: c.node.count_publishers(out_topic) == 0, 30, "publishers freed", node)

    # and it comes back
    assert c.lifecycle("rba_perception", "configure")
    assert c.lifecycle("rba_perception", "activate")
    c.wait_for_subscriber(image_topic, node)
    drive("re-activated")

    assert c.lifecycle("rba_perception", "active_shutdown")
    assert c.state("rba_perception") == "finalized"
    assert node.alive()


def test_failed_configure_leaves_the_node_alive_and_unconfigured(nodes):
    _, bad, c = nodes
    c.wait_until(lambda: "configure failed" in bad.log(), 120, "the configure error", bad)
    assert "model file not found" in bad.log()
    assert "Traceback" not in bad.log()
    assert c.state("rba_bad") == "unconfigured"
    assert not c.lifecycle("rba_bad", "configure")  # still failing, still alive
    assert bad.alive() and c.state("rba_bad") == "unconfigured"


@pytest.mark.parametrize("shut_down", [True, False], ids=["ctrl-c-mid-spin", "real-error"])
def test_main_treats_an_invalidated_context_as_a_clean_stop(monkeypatch, shut_down):
    """A context shut down under the node (by another part of the process) can surface as
    RCLError ("context is not valid") instead of ExternalShutdownException. main() must exit
    cleanly then, and only then."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from rba_ros import perception_node

    def spin_once(self, timeout_sec=None):
        if shut_down:
            rclpy.shutdown()
        raise RuntimeError("failed to initialize wait set: the given context is not valid")

    monkeypatch.setattr(SingleThreadedExecutor, "spin_once", spin_once)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(next_domain()))
    args = ["rba_perception", "--ros-args", "-p", "autostart:=false"]
    if shut_down:
        perception_node.main(args)
    else:
        with pytest.raises(RuntimeError, match="context is not valid"):
            perception_node.main(args)
    assert not rclpy.ok()
