"""A "model" for node tests on rendered scenes: an ONNX graph in the ``rba export`` format that
reads the scene's colours instead of guessing, so the node's anomaly map is exactly the rendered
mask.

Colours: red (R - G > 64) = an anomalous "car" (score 1), blue (B - G > 64) = sky, anything else
(grey) = road; the rba score is (R - G) / 255, so a threshold of 0.5 flags exactly the red pixels.
The graph runs on ONNX Runtime (backend ``onnxruntime``) at one fixed size, like an export.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from synthetic_scene import CLASSES, ROAD, SKY

CAR = CLASSES.index("car")
COLORS = {SKY: (40, 60, 230), ROAD: (128, 128, 128), CAR: (240, 20, 20)}


def paint(mask: np.ndarray, road: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 [H, W, 3]: the anomaly mask red on grey road (or blue sky where ``road`` is
    False)."""
    rgb = np.empty(mask.shape + (3,), np.uint8)
    rgb[:] = COLORS[ROAD]
    if road is not None:
        rgb[~road] = COLORS[SKY]
    rgb[mask] = COLORS[CAR]
    return rgb


def write_scene_model(path: Path, height: int, width: int) -> Path:
    """The colour-reading graph at ``height`` x ``width``, batch 1, score ``rba``."""
    import onnx
    from onnx import TensorProto, helper

    from rba_core.model import ModelConfig
    from rba_core.runtime.onnx_export import FORMAT

    def const(name, value, dtype=np.float32):
        return helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(
            np.asarray(value, dtype), name))

    nodes = [const("c255", 255.0), const("c64", 64.0), const("one", 1.0),
             const("road", ROAD, np.int64), const("sky", SKY, np.int64),
             const("car", CAR, np.int64), const("chan_axis", [1], np.int64),
             helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Split", ["f"], ["r", "g", "b"], axis=1, num_outputs=3),
             helper.make_node("Sub", ["r", "g"], ["rg"]),           # [1, 1, H, W]
             helper.make_node("Sub", ["b", "g"], ["bg"]),
             helper.make_node("Div", ["rg", "c255"], ["scores"]),    # [1, 1, H, W] (S = 1)
             helper.make_node("Greater", ["rg", "c64"], ["is_car"]),
             helper.make_node("Greater", ["bg", "c64"], ["is_sky"]),
             helper.make_node("Where", ["is_sky", "sky", "road"], ["ids4a"]),
             helper.make_node("Where", ["is_car", "car", "ids4a"], ["ids4"]),
             helper.make_node("Squeeze", ["ids4", "chan_axis"], ["class_ids"]),  # [1, H, W]
             helper.make_node("Squeeze", ["rg", "chan_axis"], ["rg3"]),
             helper.make_node("Sub", ["rg3", "rg3"], ["zero3"]),
             helper.make_node("Add", ["zero3", "one"], ["confidence"])]  # ones [1, H, W]
    graph = helper.make_graph(
        nodes, "rba_scene",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 3, height, width])],
        [helper.make_tensor_value_info("class_ids", TensorProto.INT64, [1, height, width]),
         helper.make_tensor_value_info("confidence", TensorProto.FLOAT, [1, height, width]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, height, width])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    cfg = ModelConfig(name="scene", class_names=list(CLASSES),
                      colors=[list(COLORS[i]) for i in range(len(CLASSES))])
    helper.set_model_props(model, {
        "format": FORMAT, "config": json.dumps(cfg.to_dict()), "classes": json.dumps(CLASSES),
        "colors": json.dumps(cfg.colors), "scores": json.dumps(["rba"]), "inference": "exact",
        "input_size": f"{height},{width}", "batch_size": "1", "precision": "fp32",
        "fp32_nodes": "[]", "source": "test/scene_model.py", "source_sha256": ""})
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path
