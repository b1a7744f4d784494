"""Heavy modules load lazily: the node, the pipeline and a torch backend never import the ONNX
exporter, the TensorRT checker, training or evaluation; dataset readers never import the model."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

HEAVY = ["onnx", "tensorrt", "rba_core.runtime.onnx_export", "rba_core.runtime.trt_check",
         "rba_core.runtime.trt_backend", "rba_core.training", "rba_core.evaluation"]


def loaded_after(code: str) -> set[str]:
    """Modules in sys.modules after running ``code`` in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=str(REPO), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys, json\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_runtime_and_pipeline_imports_are_light():
    modules = loaded_after("import rba_core.runtime, rba_core.pipeline.perception\n"
                           "from rba_core.runtime import Backend, FrameOutputs")
    assert heavy(modules) == [] and "torch" not in modules


def test_torch_backend_never_loads_exporter_checker_training_or_evaluation():
    modules = loaded_after(
        "from rba_core.runtime import load_backend\n"
        "from rba_core.pipeline.perception import Perception\n"
        "Perception(load_backend('preset:tiny', 'torch'))")
    assert "rba_core.runtime.torch_backend" in modules  # it did load a backend
    assert heavy(modules) == []


def test_datasets_do_not_import_the_model():
    modules = loaded_after("import rba_core.data.datasets")
    assert "rba_core.model" not in modules and "torch" not in modules


@pytest.mark.skipif(importlib.util.find_spec("rclpy") is None, reason="rclpy not installed")
def test_node_import_is_light():
    assert heavy(loaded_after("import rba_ros.perception_node")) == []
