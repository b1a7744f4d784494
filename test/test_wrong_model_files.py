"""Wrong model files: one clear line each from the API, the CLI (exit 2) and the node's configure.

The files are made here: an ONNX graph with or without our metadata but not made by `rba export`
(other input name, shape, dtype, outputs), safetensors without our metadata, truncated in the data
or in the header, and files that are no model at all.
"""
import re
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper
from safetensors.torch import save_file

from rba_core.checkpoint import save_model
from rba_core.cli import main as rba_main
from rba_core.errors import RbaError
from rba_core.model import ModelConfig, build_model
from rba_core.runtime import load_backend
from rba_core.runtime.onnx_export import (ExportSpec, check_graph_io, info_from_metadata,
                                          metadata, proto_io)

FOREIGN = "was not made by `rba export`"
UNREADABLE = "not a readable safetensors model"
CASES = {  # file -> what its error says
    "truncated.safetensors": "is truncated",
    "truncated_header.safetensors": "is truncated",
    "plain.safetensors": "no rba_ros model metadata",
    "image.safetensors": UNREADABLE,
    "empty.safetensors": UNREADABLE,
    "notes.txt": UNREADABLE,
    "folder.onnx": "is a folder",
    "text.onnx": "is not a readable ONNX model",
    "empty.onnx": "cannot be loaded by ONNX Runtime",
    "foreign.onnx": "not an rba_ros ONNX export",
    "foreign_name.onnx": f"{FOREIGN}: its inputs are x uint8 [1, 3, 64, 64]",
    "foreign_shape.onnx": f"{FOREIGN}: its inputs are images uint8 [1, 3, 32, 32]",
    "foreign_dtype.onnx": f"{FOREIGN}: its inputs are images float",
    "foreign_outputs.onnx": f"{FOREIGN}: no output class_ids, confidence, scores (it has y)",
}


def identity_graph(path: Path, name: str, shape: list, dtype=TP.UINT8, meta: dict | None = None):
    """A valid ONNX graph (Identity) with our metadata (``meta``) or none."""
    graph = helper.make_graph([helper.make_node("Identity", [name], ["y"])], "g",
                              [helper.make_tensor_value_info(name, dtype, shape)],
                              [helper.make_tensor_value_info("y", dtype, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for k, v in (meta or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("wrong_models")
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny")
    data = save_model(build_model(cfg), d / "ours.safetensors").read_bytes()
    (d / "truncated.safetensors").write_bytes(data[:len(data) // 2])
    (d / "truncated_header.safetensors").write_bytes(data[:50])
    save_file({"w": torch.zeros(2)}, str(d / "plain.safetensors"))
    jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    (d / "image.safetensors").write_bytes(jpeg)
    (d / "empty.safetensors").write_bytes(b"")
    (d / "notes.txt").write_text("not a model\n")
    (d / "folder.onnx").mkdir()
    (d / "text.onnx").write_text("not a model\n")
    (d / "empty.onnx").write_bytes(b"")
    ours = metadata(cfg, ExportSpec(64, 64), [])  # what `rba export` records at 64x64
    identity_graph(d / "foreign.onnx", "images", [1, 3, 64, 64])
    identity_graph(d / "foreign_name.onnx", "x", [1, 3, 64, 64], meta=ours)
    identity_graph(d / "foreign_shape.onnx", "images", [1, 3, 32, 32], meta=ours)
    identity_graph(d / "foreign_dtype.onnx", "images", [1, 3, 64, 64], TP.FLOAT, meta=ours)
    identity_graph(d / "foreign_outputs.onnx", "images", [1, 3, 64, 64], meta=ours)
    return d


@pytest.mark.parametrize("name", list(CASES))
def test_api_raises_one_line(files, name):
    backend = "onnxruntime" if name.endswith(".onnx") else "auto"
    with pytest.raises(RbaError) as err:
        load_backend(files / name, backend)
    assert CASES[name] in str(err.value) and "\n" not in str(err.value), err.value


@pytest.mark.parametrize("name", list(CASES))
def test_cli_exits_2_with_one_line(files, name, capsys, tmp_path):
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    code = rba_main(["infer", str(image), "--out", str(tmp_path / "out"), "--model",
                     str(files / name)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("rba infer: error: ") and CASES[name] in err[-1], err


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("foreign_")])
def test_tensorrt_reads_the_same_graph_check(files, name):
    """The TensorRT backend (absent here) checks the ONNX proto with the same function."""
    proto = onnx.load(str(files / name))
    info = info_from_metadata({p.key: p.value for p in proto.metadata_props}, name)
    with pytest.raises(RbaError, match=re.escape(CASES[name])):
        check_graph_io(*proto_io(proto), info, name)


NODE_CASES = ["truncated.safetensors", "notes.txt", "foreign_shape.onnx"]


@pytest.mark.ros
def test_node_configure_fails_with_the_reason(files, tmp_path):
    """One node per file, started together: each logs `configure failed: <reason>` and lives."""
    pytest.importorskip("rclpy")
    from rba_ros.harness import NodeProcess, next_domain

    domain = next_domain()
    nodes = [NodeProcess(tmp_path, domain, {"model_path": str(files / name), "cameras": ["c"]},
                         name=f"bad{i}", extra_args=["-r", f"__node:=bad{i}"])
             for i, name in enumerate(NODE_CASES)]
    for node in nodes:
        node.__enter__()
    try:
        for name, node in zip(NODE_CASES, nodes):
            deadline = time.monotonic() + 300  # the node imports torch and rclpy first
            while time.monotonic() < deadline and node.alive() and \
                    "configure failed" not in node.log():
                time.sleep(0.2)
            log = node.log()
            line = next((x for x in log.splitlines() if "configure failed" in x), None)
            assert line is not None and CASES[name] in line, f"{name}:\n{log[-2000:]}"
            assert "Traceback" not in log and node.alive(), f"{name}:\n{log[-2000:]}"
    finally:
        for node in nodes:
            node.stop()
