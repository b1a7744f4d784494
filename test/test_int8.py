"""int8 QDQ graphs: ``rba export --int8`` (folder or bag calibration), what the graph holds,
TensorRT's static check, the CPU uint8 rewrite, ``load_backend(int8=True)`` and int8 accuracy of
the embedded default model on real frames."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from rba_core.checkpoint import save_model
from rba_core.cli import main
from rba_core.errors import RbaError
from rba_core.model import ModelConfig, build_model
from rba_core.runtime import BackendError, check_model, load_backend
from rba_core.runtime.ort_backend import cpu_model_bytes, session_options
from rba_core.runtime.quantize import demo_frames, spread

H, W = 64, 96


@pytest.fixture(scope="module")
def int8_graph(tmp_path_factory):
    """The tiny architecture with trained-like weights (nonzero biases, batch-norm statistics:
    folded into conv biases by the exporter) exported with --int8, calibrated on 3 of the
    packaged demo frames."""
    folder = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("tiny")).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("bias", "running_mean")):
                tensor.normal_(0, 0.1)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2)
    save_model(model, folder / "tiny.safetensors")
    out = folder / "tiny_int8.onnx"
    rc = main(["export", str(folder / "tiny.safetensors"), "--height", str(H), "--width", str(W),
               "--int8", "--calibration", str(demo_frames()[0].parent), "--calibration-frames",
               "3", "--no-verify", "-o", str(out)])
    assert rc == 0  # 0 also means: TensorRT's static check passed
    return out


def inits(model):
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def test_graph_is_symmetric_per_channel_qdq_with_metadata(int8_graph):
    model = onnx.load(str(int8_graph))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["precision"] == "int8"
    assert "3 frame(s)" in meta["int8_calibration"]
    assert isinstance(json.loads(meta["int8_fp32_scopes"]), list)
    values = inits(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    quantized = 0
    for conv in convs:  # a quantized Conv reads a DequantizeLinear of int8 weights
        producer = {o: n for n in model.graph.node for o in n.output}.get(conv.input[1])
        if producer is None or producer.op_type != "DequantizeLinear":
            continue
        quantized += 1
        weight, scale = values[producer.input[0]], values[producer.input[1]]
        assert weight.dtype == np.int8
        assert scale.shape == (weight.shape[0],)  # one scale per output channel
    assert quantized >= 20  # the ResNet-18 backbone's convolutions at least
    for node in model.graph.node:  # TensorRT needs zero points of 0 (symmetric)
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            assert not np.any(values[node.input[2]])
    biases = [n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    assert biases and all(n.input[2] in values for n in biases)  # float initializers, as TensorRT
    assert all(values[n.input[2]].dtype == np.float32 for n in biases)  # wants (no int32 DQ)
    assert check_model(model) == []


def test_uint8_rewrite_computes_the_same_as_the_plain_qdq_graph(int8_graph):
    """Reference: the QDQ graph run literally (no graph optimisation: float ops on
    dequantized values). The rewritten graph runs ONNX Runtime's fused u8 kernels (with 7-bit
    weights on x86 without VNNI: with 8-bit ones an AVX2-only CPU gave 7.2 % of the map's range
    here, saturated int16 sums)."""
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(int8_graph), plain, providers=["CPUExecutionProvider"])
    fast = ort.InferenceSession(cpu_model_bytes(Path(int8_graph)), session_options(1),
                                providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1, 3, H, W), dtype=np.uint8)
    a, b = ref.run(None, {"images": x}), fast.run(None, {"images": x})
    assert np.mean(a[0] == b[0]) > 0.99
    assert np.abs(a[2] - b[2]).max() <= 0.05 * np.abs(a[2]).max()
    rewritten = onnx.load_from_string(cpu_model_bytes(Path(int8_graph)))
    acts = [n for n in rewritten.graph.node if n.op_type == "QuantizeLinear"]
    assert acts and all(inits(rewritten)[n.input[2]].dtype == np.uint8 for n in acts)


@pytest.mark.parametrize("machine, flags, saturates", [
    ("x86_64", "fpu sse2 avx avx2 fma", True),                # AVX2-only (the CI machine's kind)
    ("x86_64", "avx2 avx512f avx512bw", True),                # AVX-512 without VNNI
    ("x86_64", "avx2 avx512f avx512_vnni", False),
    ("x86_64", "avx2 avx_vnni", False),
    ("aarch64", "fp asimd asimddp", False),                   # Jetson: int32 dot products
])
def test_u8s8_saturation_is_detected_from_the_cpu_flags(machine, flags, saturates):
    from rba_core.runtime.quantize import u8s8_saturates

    cpuinfo = f"processor\t: 0\nflags\t\t: {flags}\n"
    assert u8s8_saturates(cpuinfo, machine) is saturates


def test_seven_bit_weights_halve_the_integers_and_double_the_scales():
    """By hand: w = [-127, -3, 0, 5, 127] at scale 0.1 -> [-64, -2, 0, 2, 64] at 0.2 (round half
    to even), so 2 * 255 * |w| <= 32640 fits int16, and each value moves by at most one old step."""
    from onnx import TensorProto, helper

    from rba_core.runtime.quantize import seven_bit_weights

    w = numpy_helper.from_array(np.array([-127, -3, 0, 5, 127], np.int8), "w")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    node = helper.make_node("DequantizeLinear", ["w", "s"], ["y"])
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, [5])], [w, scale])
    model = seven_bit_weights(helper.make_model(graph))
    got = inits(model)
    assert got["w"].tolist() == [-64, -2, 0, 2, 64] and got["w"].dtype == np.int8
    assert got["s"] == pytest.approx(0.2)
    before = np.array([-127, -3, 0, 5, 127]) * 0.1
    assert np.abs(got["w"] * got["s"] - before).max() <= 0.1 + 1e-6


def test_cpu_backend_without_qdq_propagation_computes_what_onnxruntime_does_with_it(int8_graph):
    """The backend turns off ONNX Runtime's QDQ propagation for int8 graphs (speed: the stem's
    MaxPool stays fp32). Reference: the same rewritten graph with every ONNX Runtime optimiser on."""
    from rba_core.runtime.ort_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(int8_graph, ["CPUExecutionProvider"], threads=1)
    ref = ort.InferenceSession(cpu_model_bytes(Path(int8_graph)), session_options(1),
                               providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).integers(0, 256, (1, 3, H, W), dtype=np.uint8)
    class_ids, _, scores = ref.run(None, {"images": x})
    got = backend.infer(x)
    assert np.array_equal(got.class_ids, class_ids)
    np.testing.assert_allclose(got.scores["rba"], scores[:, 0], rtol=1e-5, atol=1e-6)


def test_calibration_from_a_bag(tmp_path):
    from rba_core.cli.export import calibration_frames

    folder = tmp_path / "frames"
    folder.mkdir()
    for p in spread(demo_frames(), 4):
        (folder / p.name).write_bytes(p.read_bytes())
    bag = tmp_path / "cam.mcap"
    assert main(["bag-from-images", str(folder), "-o", str(bag)]) == 0
    frames = calibration_frames(str(bag), 2)
    assert len(frames) == 2 and all(f.ndim == 3 and f.shape[2] == 3 for f in frames)
    assert len(calibration_frames(str(folder), 3)) == 3
    with pytest.raises(RbaError, match="no such folder or bag"):
        calibration_frames(str(tmp_path / "missing"), 2)


def test_cli_argument_errors(tmp_path, capsys):
    base = ["export", "preset:tiny", "--height", "64", "--width", "64", "-o",
            str(tmp_path / "x.onnx")]
    assert main(base + ["--calibration", str(tmp_path)]) != 0
    assert "--calibration is for --int8" in capsys.readouterr().err
    assert main(base + ["--int8", "--calibration-frames", "0"]) != 0
    assert "--calibration-frames must be >= 1" in capsys.readouterr().err


def test_load_backend_int8_quantizes_once_and_needs_a_graph_backend(tmp_path):
    with pytest.raises(BackendError, match="onnxruntime and tensorrt"):
        load_backend("preset:tiny", "torch", int8=True)
    backend = load_backend("preset:tiny", "onnxruntime", device="cpu", input_size=(H, W),
                           threads=1, cache_dir=tmp_path, int8=True)
    out = backend.infer(np.zeros((1, 3, H, W), np.uint8))
    assert out.class_ids.shape == (1, H, W)


def test_default_model_int8_agrees_with_fp32_on_real_frames(data_dir, tmp_path):
    """The embedded model, int8 from the packaged frames only, on CamVid val frames that
    calibration never saw: the class map stays (almost) the same."""
    from rba_core.imageio import read_image

    paths = spread(sorted((data_dir / "camvid" / "val").glob("*.png")), 3)
    if not paths:
        pytest.skip("no CamVid val frames")
    x = np.stack([read_image(p).transpose(2, 0, 1) for p in paths])
    kw = dict(backend="onnxruntime", device="cpu", input_size=x.shape[2:], batch_size=len(x),
              threads=2, cache_dir=tmp_path)
    fp32 = load_backend(None, **kw).infer(x)
    int8 = load_backend(None, int8=True, **kw).infer(x)
    assert np.mean(fp32.class_ids == int8.class_ids) > 0.95
