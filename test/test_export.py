"""``rba export`` and ``load_backend`` over exported graphs: graph contract, metadata, routing,
cached exports of our checkpoints, and one-line errors."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper

from rba_core.checkpoint import CheckpointError, save_model
from rba_core.cli import main
from rba_core.model import CAMVID_CLASSES, CAMVID_COLORS, ModelConfig, build_model
from rba_core.runtime import BackendError, load_backend
from rba_core.runtime.graph import OUTPUT_NAMES
from rba_core.runtime.onnx_export import node_scopes

H, W, B = 72, 100, 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One graph made by the CLI: batch 2, two scores, fast inference, fp16 preference."""
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    rc = main(["export", "preset:tiny", "--height", str(H), "--width", str(W), "--batch", str(B),
               "--scores", "rba,max_logit", "--inference", "fast", "--fp16", "-o", str(out)])
    assert rc == 0
    return out


def dims(value_info):
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_graph_contract(exported):
    model = onnx.load(exported)
    onnx.checker.check_model(model)
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,) = model.graph.input
    assert inp.name == "images" and inp.type.tensor_type.elem_type == TP.UINT8
    assert dims(inp) == [B, 3, H, W]  # static: every dim a number
    outs = {o.name: o for o in model.graph.output}
    assert list(outs) == list(OUTPUT_NAMES)
    assert outs["class_ids"].type.tensor_type.elem_type == TP.INT32
    assert outs["confidence"].type.tensor_type.elem_type == TP.FLOAT
    assert dims(outs["class_ids"]) == dims(outs["confidence"]) == [B, H, W]
    assert dims(outs["scores"]) == [B, 2, H, W]
    # no local file paths or stack traces left in the node metadata
    assert "/work/" not in str([n.metadata_props for n in model.graph.node])


def test_metadata_describes_the_model(exported):
    model = onnx.load(exported)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["format"] == "rba_ros.onnx/1"
    assert json.loads(meta["classes"]) == CAMVID_CLASSES
    assert json.loads(meta["colors"]) == CAMVID_COLORS
    assert json.loads(meta["scores"]) == ["rba", "max_logit"]
    assert meta["inference"] == "fast" and meta["input_size"] == f"{H},{W}"
    assert meta["batch_size"] == str(B) and meta["precision"] == "fp16"
    assert ModelConfig.from_dict(json.loads(meta["config"])) == ModelConfig.preset("tiny")
    # fp32 pins: the heads (ArgMax, Tanh of the RbA score, deformable sampling) but not backbone
    ops = {n.name: n.op_type for n in model.graph.node}
    pinned = json.loads(meta["fp32_nodes"])
    assert set(pinned) <= set(ops)
    assert {"ArgMax", "Tanh", "GridSample"} <= {ops[n] for n in pinned}
    convs = [n for n, op in ops.items() if op == "Conv"]
    assert 0 < sum(n in pinned for n in convs) < len(convs) - 10  # FPN convs only


def test_per_pixel_part_is_channels_last(exported):
    """The mask upsampling is one Resize over H, W of [B, h, w, Q] (ONNX Runtime's faster CPU
    layout; TensorRT resizes the innermost 3 dims): scales [1, 4, 4, 1] or sizes that keep Q."""
    model = onnx.load(exported)
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    resizes = [n for n in model.graph.node if n.op_type == "Resize"
               and not any(s.startswith("model.") for s in node_scopes(n))]
    assert resizes
    for node in resizes:
        scales = consts.get(node.input[2]) if len(node.input) > 2 else None
        if scales is not None and scales.size:
            assert scales[0] == 1 and scales[3] == 1 and (scales[1:3] > 1).all(), scales
        else:
            sizes = consts[node.input[3]]
            assert sizes[0] == B and sizes[3] != sizes[1], sizes


def test_onnxruntime_backend_reads_the_graph(exported, caplog):
    backend = load_backend(exported, "onnxruntime", mode="exact")
    assert "fast inference" in caplog.text  # asked for exact: warned, graph mode kept
    info = backend.info
    assert (info.class_names, info.input_size, info.batch_size, info.mode) == (
        CAMVID_CLASSES, (H, W), B, "fast")
    assert info.score_names == ["rba", "max_logit"]
    images = np.random.default_rng(0).integers(0, 256, (B, 3, H, W), dtype=np.uint8)
    out = backend.infer(images)
    assert out.class_ids.shape == (B, H, W) and out.class_ids.dtype == np.int32
    assert out.class_ids.max() < len(CAMVID_CLASSES)
    assert set(out.scores) == {"rba", "max_logit"}
    # max_logit = -max_k L_k and confidence = max_k L_k: the two outputs agree
    assert np.allclose(out.scores["max_logit"], -out.confidence, atol=1e-6)
    only = load_backend(exported, "onnxruntime", scores="max_logit").infer(images)
    assert list(only.scores) == ["max_logit"]
    assert np.array_equal(only.scores["max_logit"], out.scores["max_logit"])
    assert load_backend(exported, "auto").name == "onnxruntime"  # no TensorRT on this machine


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def test_input_and_score_errors(exported):
    backend = load_backend(exported, "onnxruntime")
    with pytest.raises(BackendError) as e:
        backend.infer(np.zeros((B, 3, H + 1, W), np.uint8))
    assert f"{H}x{W}" in one_line(e)
    with pytest.raises(BackendError) as e:
        backend.infer(np.zeros((1, 3, H, W), np.uint8))
    assert "batch 2" in one_line(e)
    with pytest.raises(BackendError) as e:
        load_backend(exported, "onnxruntime", scores="energy")
    assert "--scores rba,max_logit,energy" in one_line(e)


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(BackendError) as e:
        load_backend(tmp_path / "nope.onnx", "onnxruntime")
    assert "not found" in one_line(e)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 100)
    for backend in ("onnxruntime", "auto"):
        with pytest.raises(BackendError) as e:
            load_backend(corrupt, backend)
        assert "corrupt.onnx" in one_line(e)
    foreign = tmp_path / "foreign.onnx"  # valid ONNX, not ours
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["y"])], "g",
                              [helper.make_tensor_value_info("images", TP.UINT8, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TP.UINT8, [1, 3, 4, 4])])
    onnx.save(helper.make_model(graph), foreign)
    with pytest.raises(BackendError) as e:
        load_backend(foreign, "onnxruntime")
    assert "not an rba_ros ONNX export" in one_line(e)
    bad_ckpt = tmp_path / "bad.safetensors"
    bad_ckpt.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        load_backend(bad_ckpt, "onnxruntime", input_size=(64, 64))


def test_tensorrt_backend_reports_why_it_is_unavailable(exported):
    from rba_core.runtime.trt_backend import trt_unavailable_reason

    reason = trt_unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT is available here (tested in test_engine_cache.py)")
    with pytest.raises(BackendError) as e:
        load_backend(exported, "tensorrt")
    assert reason in one_line(e)


def test_safetensors_are_exported_once_to_the_cache(tmp_path, monkeypatch):
    cfg = ModelConfig.preset("tiny", decoder={"num_queries": 8})
    ckpt = save_model(build_model(cfg), tmp_path / "tiny.safetensors")
    ort_b = load_backend(ckpt, "auto", "rba", "exact", input_size=(64, 96), cache_dir=tmp_path)
    assert ort_b.name == "onnxruntime" and ort_b.info.input_size == (64, 96)
    cached = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(cached) == 1 and "64x96-b1-exact-rba" in cached[0].name

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("rba_core.runtime.loader.export_onnx", no_export)
    again = load_backend(ckpt, "onnxruntime", input_size=(64, 96), cache_dir=tmp_path)
    torch_b = load_backend(ckpt, "torch")
    images = np.random.default_rng(3).integers(0, 256, (1, 3, 64, 96), dtype=np.uint8)
    a, t = again.infer(images), torch_b.infer(images)
    assert (a.class_ids == t.class_ids).mean() >= 0.999
    assert np.abs(a.scores["rba"] - t.scores["rba"]).max() <= 1e-4 * np.abs(t.scores["rba"]).max()


def test_cli_fails_clearly_on_trt_incompatible_graphs(tmp_path, monkeypatch, capsys):
    """A graph with an op TensorRT lacks: written, listed, exit 2 (0 with --skip-trt-check)."""
    def fake_export(model, path, spec, **kwargs):
        graph = helper.make_graph([helper.make_node("Unique", ["images"], ["y"])], "g",
                                  [helper.make_tensor_value_info("images", TP.FLOAT, [4])],
                                  [helper.make_tensor_value_info("y", TP.FLOAT, [None])])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        onnx.save(proto, path)
        return proto

    monkeypatch.setattr("rba_core.cli.export.export_onnx", fake_export)
    args = ["export", "preset:tiny", "--height", "64", "--width", "64", "-o",
            str(tmp_path / "m.onnx")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "TensorRT check: 1 problem(s)" in err and "[Unique]: marked unsupported" in err
    assert (tmp_path / "m.onnx").is_file()
    assert main(args + ["--skip-trt-check"]) == 0


def test_cli_argument_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.safetensors"), "--height", "64", "--width",
                 "64", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["export", "preset:tiny", "--height", "64", "--width", "64", "-o",
                 str(tmp_path / "m.txt")]) == 2
    assert "must be an .onnx file" in capsys.readouterr().err
    assert main(["export", "preset:tiny", "--height", "64", "--width", "64", "--batch", "0",
                 "-o", str(tmp_path / "m.onnx")]) == 2
    assert "batch" in capsys.readouterr().err
