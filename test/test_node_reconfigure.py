"""Parameters of the real node process. Another model without a restart: configure-time
parameters are refused while the node is configured, taken while it is unconfigured, and the next
configure loads what they say. A bad value at start is one line and exit code 2.

The node starts on a random-weights preset; after cleanup it gets ``model_path: ""`` (the embedded
default model) and another camera. What it then publishes for a CamVid frame must be what the
default model computes for that frame, run here in the test process.
"""
import time

import cv2
import numpy as np
import pytest

from conftest import require
from rba_ros.harness import (NodeProcess, RosClient, have_vision_msgs, image_array, make_image,
                             next_domain, now_stamp)

pytest.importorskip("rclpy")
if not have_vision_msgs():
    pytest.skip("vision_msgs not built into this venv (bash scripts/build_vision_msgs.sh VENV)",
                allow_module_level=True)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = pytest.mark.ros

NODE = "rba_perception"
PARAMS = {"model_path": "preset:tiny", "backend": "torch", "threads": 1, "max_age": 0.0,
          "diagnostics_period": 0.5}
SIZE = (180, 240)  # (H, W) of the frame sent: a CamVid val image, downscaled


def camvid_frame(data_dir) -> np.ndarray:
    path = sorted(require(data_dir / "camvid" / "val").glob("*.png"))[0]
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, SIZE[::-1], interpolation=cv2.INTER_AREA)


def default_model_classes(frame: np.ndarray) -> np.ndarray:
    """Class map of the embedded default model for ``frame``, computed without the node."""
    from rba_core.pipeline.perception import Perception
    from rba_core.runtime import load_backend

    return Perception(load_backend(None, "torch")).process([frame])[0].class_ids


def model_status(diag) -> dict | None:
    for _, msg in reversed(list(diag)):
        for status in msg.status:
            if status.name.endswith(": model"):
                return {kv.key: kv.value for kv in status.values}
    return None


def test_cleanup_set_configure_loads_another_model(tmp_path, data_dir):
    frame = camvid_frame(data_dir)
    expected = default_model_classes(frame)
    assert len(np.unique(expected)) >= 3  # a real street scene, several classes
    domain = next_domain()
    with NodeProcess(tmp_path, domain, PARAMS) as node:
        c = RosClient(domain)
        try:
            diag = c.collect(DiagnosticArray, "/diagnostics")

            def semantic(cam: str) -> np.ndarray:
                """Send ``frame`` to ``cam`` until its class map comes back."""
                got = c.collect(Image, f"/{cam}/rba/semantic")
                pub = c.publisher(Image, f"/{cam}/image_raw")
                c.wait_for_subscriber(f"/{cam}/image_raw", node, timeout=120)
                deadline = time.monotonic() + 120
                while not got and time.monotonic() < deadline:
                    pub.publish(make_image(frame, "rgb8", f"{cam}_optical", now_stamp(c.node)))
                    time.sleep(0.5)
                assert got, f"no {cam} output\n{node.log()[-3000:]}"
                return image_array(got[-1][1])

            def diagnosed_model(name: str) -> None:
                c.wait_until(lambda: (model_status(diag) or {}).get("model") == name, 10,
                             f"diagnostics naming model {name}", node)

            before = semantic("camera")
            diagnosed_model("preset:tiny")

            # active: refused with the reason, the value stays; live parameters still change
            ((ok, reason),) = c.set_params(NODE, {"model_path": ""})
            assert not ok
            assert "model_path is read at configure" in reason and "deactivate" in reason
            assert c.get_params(NODE, ["model_path"]) == {"model_path": "preset:tiny"}
            assert c.set_params(NODE, {"threshold": 0.5, "model_path": "preset:tiny"}) == [
                (True, "")] * 2  # the value it has: no change (ros2 param load of a whole file)
            # inactive: still configured, still refused
            assert c.lifecycle(NODE, "deactivate")
            ((ok, reason),) = c.set_params(NODE, {"cameras": ["front"]})
            assert not ok and "cameras is read at configure" in reason
            assert "clean up" in reason and "deactivate" not in reason
            assert c.set_params(NODE, {"threshold": 0.4}) == [(True, "")]

            # unconfigured: taken (and still validated); configure loads the new model
            assert c.lifecycle(NODE, "cleanup")
            assert c.state(NODE) == "unconfigured"
            ((ok, reason),) = c.set_params(NODE, {"backend": "cuda"})
            assert not ok and reason.startswith("backend:")
            assert c.set_params(NODE, {"model_path": "", "cameras": ["front"]}) == [
                (True, "")] * 2
            assert c.get_params(NODE, ["model_path", "cameras"]) == {
                "model_path": "", "cameras": ["front"]}
            assert c.lifecycle(NODE, "configure") and c.lifecycle(NODE, "activate")
            assert c.state(NODE) == "active"
            after = semantic("front")
            assert c.node.count_subscribers("/camera/image_raw") == 0  # the old camera is gone
            diagnosed_model("default")
        finally:
            c.close()
        assert node.stop() == 0, node.log()[-3000:]
    # the node now runs the default model: its output is the default model's, pixel for pixel
    # (up to float noise), and the random preset's was not
    assert after.shape == expected.shape == before.shape
    assert (after == expected).mean() >= 0.99, (after == expected).mean()
    assert (before == expected).mean() < 0.9, (before == expected).mean()
    assert "Traceback" not in node.log()


@pytest.mark.parametrize("arg, words", [("threshold:=abc", "expecting type 'DOUBLE'"),
                                         ("overlay_alpha:=2.0", "out of range")])
def test_a_bad_parameter_at_start_is_one_line_and_exit_2(tmp_path, arg, words):
    name = arg.split(":=")[0]
    node = NodeProcess(tmp_path, next_domain(), {"autostart": False}, extra_args=["-p", arg])
    with node:
        rc = node.proc.wait(120)
    log = node.log()
    assert rc == 2, log
    assert "Traceback" not in log
    (line,) = [ln for ln in log.splitlines() if "bad parameter" in ln]
    assert line.startswith(f"{NODE}: bad parameter:") and words in line and name in line, line
