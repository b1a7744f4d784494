"""The node without input_size: ONNX Runtime (standing in for a TensorRT engine build) gets one
graph per camera frame size; torch publishes while a size builds, then the node switches over.
The log and /diagnostics say which backend, size and precision run."""
import re

import numpy as np
import pytest

from rba_ros.harness import (NodeProcess, RosClient, have_vision_msgs, image_array, make_image,
                             next_domain, now_stamp)

pytest.importorskip("rclpy")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
if not have_vision_msgs():
    pytest.skip("vision_msgs not built into this venv (bash scripts/build_vision_msgs.sh VENV)",
                allow_module_level=True)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = pytest.mark.ros

SIZES = [(48, 64), (40, 56)]


def model_values(msg, node: str = "/rba_perception") -> dict[str, str] | None:
    for status in msg.status:
        if status.name == f"{node}: model":
            return {"message": status.message, **{kv.key: kv.value for kv in status.values}}
    return None


def test_torch_publishes_while_each_size_builds_then_onnxruntime_takes_over(tmp_path):
    from rba_core.checkpoint import save_model
    from rba_core.model import ModelConfig, build_model

    model = save_model(build_model(ModelConfig.preset("tiny", decoder={"num_queries": 8})),
                       tmp_path / "tiny.safetensors")
    params = {"model_path": str(model), "backend": "onnxruntime", "threads": 1, "device": "cpu",
              "cameras": ["cam"], "max_age": 0.0, "diagnostics_period": 0.2, "scores": ["rba"],
              "cache_dir": str(tmp_path / "cache")}
    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 255, (*s, 3), dtype=np.uint8) for s in SIZES}
    domain = next_domain()
    with NodeProcess(tmp_path, domain, params) as node:
        client = RosClient(domain)
        try:
            anomaly = client.collect(Image, "/cam/rba/anomaly")
            diag = client.collect(DiagnosticArray, "/diagnostics")
            pub = client.publisher(Image, "/cam/image_raw")
            client.wait_for_subscriber("/cam/image_raw", node, 300)

            def latest():
                values = [v for _, m in list(diag) if (v := model_values(m))]
                return values[-1] if values else None

            def one(size) -> tuple[np.ndarray, float]:
                """Publish a frame of ``size``; (its anomaly map, receipt time)."""
                stamp = now_stamp(client.node)
                n = len(anomaly)

                def got():
                    pub.publish(make_image(images[size], "rgb8", "cam", stamp))
                    return [(t, m) for t, m in anomaly[n:]
                            if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp]
                t, msg = client.wait_until(got, 120, f"the anomaly of a {size} frame", node,
                                           period=0.5)[0]
                return image_array(msg), t

            maps = {}
            for i, size in enumerate(SIZES):
                text = f"{size[0]}x{size[1]}"
                warm, t_warm = one(size)
                # a diagnostics message after that output still says the size is building:
                # the frame ran on torch (the export takes seconds, diagnostics come every 0.2)
                client.wait_until(lambda: any(t > t_warm for t, _ in diag), 30, "diagnostics")
                after = [model_values(m) for t, m in list(diag) if t > t_warm]
                assert after[0]["building"] == text, after[0]
                assert f"warming up: torch runs {text}" in after[0]["message"]
                assert after[0]["backend"] == "onnxruntime" and after[0]["precision"] == "fp32"
                client.wait_until(lambda: (v := latest()) and text in v["input_size"]
                                  and not v["building"], 600, f"the {text} graph", node)
                ready, _ = one(size)
                # the same frame through torch and through the exported graph
                np.testing.assert_allclose(ready, warm, rtol=0,
                                           atol=1e-4 * np.abs(warm).max())
                maps[size] = ready
            final = latest()
            assert final["input_size"] == "40x56, 48x64" and final["message"] == "active"
            log = node.log()
            assert ("configured: onnxruntime backend (fp32, input size of each camera's frames "
                    "(torch runs a new size until its graph is built))") in log
            for h, w in SIZES:
                assert f"{h}x{w}: building the onnxruntime graph (fp32)" in log
                assert f"{h}x{w}: onnxruntime fp32 ready after" in log
            assert "switching from torch" in log
        finally:
            client.close()

    # a restart re-uses the cached exports: no export, each size is ready at once
    with NodeProcess(tmp_path, domain, params, name="rba_perception") as node:
        client = RosClient(domain)
        try:
            diag = client.collect(DiagnosticArray, "/diagnostics")
            pub = client.publisher(Image, "/cam/image_raw")
            client.wait_for_subscriber("/cam/image_raw", node, 300)
            for size in SIZES:
                pub.publish(make_image(images[size], "rgb8", "cam", now_stamp(client.node)))
                client.wait_until(lambda: any((v := model_values(m)) and
                                              f"{size[0]}x{size[1]}" in v["input_size"]
                                              for _, m in list(diag)), 120, "cached graph", node,
                                  period=0.5)
            assert re.search(r"using cached \S+\.onnx", node.log()) and "exporting" not in node.log()
        finally:
            client.close()


def test_int8_parameter_runs_the_quantized_graph_and_needs_a_graph_backend(tmp_path):
    params = {"model_path": "preset:tiny", "backend": "onnxruntime", "int8": True, "threads": 1,
              "device": "cpu", "cameras": ["cam"], "max_age": 0.0, "diagnostics_period": 0.2,
              "scores": ["rba"]}
    frame = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    domain = next_domain()
    with NodeProcess(tmp_path, domain, params) as node, \
            NodeProcess(tmp_path, domain, {**params, "backend": "torch"}, name="rba_torch8",
                        extra_args=["-r", "__node:=rba_torch8"]) as bad:
        client = RosClient(domain)
        try:
            diag = client.collect(DiagnosticArray, "/diagnostics")
            pub = client.publisher(Image, "/cam/image_raw")
            client.wait_for_subscriber("/cam/image_raw", node, 300)

            def int8_ready():
                pub.publish(make_image(frame, "rgb8", "cam", now_stamp(client.node)))
                return any((v := model_values(m)) and v["input_size"] == "48x64"
                           and v["precision"] == "int8" for _, m in list(diag))
            client.wait_until(int8_ready, 600, "the int8 graph", node, period=0.5)
            assert "configured: onnxruntime backend (int8, " in node.log()
            # the log line comes from the build thread, maybe after the diagnostics message
            client.wait_until(lambda: "48x64: onnxruntime int8 ready after" in node.log(), 30,
                              "the ready log line", node)
            client.wait_until(lambda: "configure failed" in bad.log(), 120, "refusal", bad)
            assert "int8 runs on the onnxruntime and tensorrt backends" in bad.log()
        finally:
            client.close()
