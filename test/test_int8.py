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


def literal(model_or_path) -> ort.InferenceSession:
    """A QDQ graph run literally: no graph optimisation, float ops on dequantized values (the
    values the graph specifies, whatever ONNX Runtime's fused kernels do)."""
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = model_or_path if isinstance(model_or_path, bytes) else str(model_or_path)
    return ort.InferenceSession(src, plain, providers=["CPUExecutionProvider"])


def fused(model_bytes: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model_bytes, session_options(1),
                                providers=["CPUExecutionProvider"])


def frames(n: int) -> list[np.ndarray]:
    from rba_core.runtime.quantize import calibration_batches, read_frames

    return calibration_batches(read_frames(spread(demo_frames(), 8)[-n:], n), (1, H, W))


def test_cpu_form_does_not_saturate_onnxruntime_int16_sums(int8_graph):
    """Reference: ONNX Runtime's u8 x u8 kernels (``session.x64quantprecision``), which accumulate
    in int32 on every x86 CPU. The backend's u8 x s8 kernels must give the same maps on the CPU
    form. With 8-bit weights on an x86 CPU without VNNI they do not (int16 pair sums saturate:
    measured here on an AVX2-only AMD EPYC), which is why such a CPU gets 7-bit weights."""
    from rba_core.runtime.int8_cpu import cpu_int8_model, u8s8_saturates

    def gap(form: bytes) -> float:
        a, b = fused(form), u8u8(form)
        return max(float(np.abs(a.run(None, {"images": x})[2] - b.run(None, {"images": x})[2])
                         .max()) for x in frames(3))

    assert gap(cpu_model_bytes(Path(int8_graph))) <= 1e-5
    literal_ids = [np.mean(literal(int8_graph).run(None, {"images": x})[0] ==
                           fused(cpu_model_bytes(Path(int8_graph))).run(None, {"images": x})[0])
                   for x in frames(3)]
    assert np.mean(literal_ids) > 0.98  # and it still computes the file's graph
    if u8s8_saturates():
        eight_bit = cpu_int8_model(onnx.load(str(int8_graph)), saturating=False)
        assert gap(eight_bit.SerializeToString()) > 0.01


def u8u8(model_bytes: bytes) -> ort.InferenceSession:
    """ONNX Runtime's u8 x u8 kernels (``session.x64quantprecision``): int32 sums on any x86."""
    opts = session_options(1)
    opts.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def test_cpu_form_is_closer_to_fp32_than_the_symmetric_file(int8_graph, tmp_path):
    """Independent reference: the fp32 export of the same weights. With the file's 8-bit weights
    (run by the exact u8 x u8 kernels), the CPU form (ReLUs folded, non-negative tensors with twice
    the steps) is closer to it than the file's symmetric graph run literally. The cost of 7-bit
    weights is measured on the default model (``test_default_model_int8...``)."""
    from rba_core.runtime.int8_cpu import cpu_int8_model

    fp32 = tmp_path / "tiny.onnx"
    assert main(["export", str(int8_graph.parent / "tiny.safetensors"), "--height", str(H),
                 "--width", str(W), "--no-verify", "-o", str(fp32)]) == 0
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    form = u8u8(cpu_int8_model(onnx.load(str(int8_graph)), saturating=False).SerializeToString())
    sym = literal(int8_graph)
    err = {"form": [], "sym": []}
    for x in frames(4):
        r = ref.run(None, {"images": x})[2]
        err["form"].append(np.abs(form.run(None, {"images": x})[2] - r).mean())
        err["sym"].append(np.abs(sym.run(None, {"images": x})[2] - r).mean())
    assert np.mean(err["form"]) < np.mean(err["sym"]), err


def test_cpu_form_by_hand():
    """Conv -> Q -> DQ -> Relu -> Q -> DQ (scale 0.1): the Relu reads the Conv directly, its pair
    becomes uint8 / zero point 0 / scale 0.05 (range [0, 12.75] = the symmetric [-12.7, 12.7]'s
    positive half, twice the steps); the signed pair becomes uint8 / 128 (same values). Values by
    hand: x = [-1, 0.02, 0.04, 3.333, 20] -> relu, round to 0.05 steps, clamp at 255 steps."""
    from onnx import TensorProto, helper

    from rba_core.runtime.int8_cpu import cpu_int8_model

    def init(name, value, dtype):
        return numpy_helper.from_array(np.array(value, dtype), name)

    nodes = [helper.make_node("Identity", ["x"], ["conv"]),  # stands in for the quantized Conv
             helper.make_node("QuantizeLinear", ["conv", "s1", "z1"], ["q1"]),
             helper.make_node("DequantizeLinear", ["q1", "s1", "z1"], ["d1"]),
             helper.make_node("Relu", ["d1"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "s2", "z2"], ["q2"]),
             helper.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5])],
        [init("s1", 0.2, np.float32), init("z1", 0, np.int8), init("s2", 0.1, np.float32),
         init("z2", 0, np.int8)])
    model = cpu_int8_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                           saturating=False)
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    assert relu.input[0] == "conv" and len(model.graph.node) == 4  # the first pair is gone
    got = inits(model)
    assert got["z2"].dtype == np.uint8 and got["z2"] == 0 and got["s2"] == pytest.approx(0.05)
    x = np.array([-1, 0.02, 0.04, 3.333, 20], np.float32)
    y = literal(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, [0, 0, 0.05, 3.35, 12.75], atol=1e-6)


@pytest.mark.parametrize("machine, flags, saturates", [
    ("x86_64", "fpu sse2 avx avx2 fma", True),                # AVX2-only (the CI machine's kind)
    ("x86_64", "avx2 avx512f avx512bw", True),                # AVX-512 without VNNI
    ("x86_64", "avx2 avx512f avx512_vnni", False),
    ("x86_64", "avx2 avx_vnni", False),
    ("aarch64", "fp asimd asimddp", False),                   # Jetson: int32 dot products
])
def test_u8s8_saturation_is_detected_from_the_cpu_flags(machine, flags, saturates):
    from rba_core.runtime.int8_cpu import u8s8_saturates

    cpuinfo = f"processor\t: 0\nflags\t\t: {flags}\n"
    assert u8s8_saturates(cpuinfo, machine) is saturates


def test_seven_bit_weights_halve_the_integers_and_double_the_scales():
    """By hand: w = [-127, -3, 0, 5, 127] at scale 0.1 -> [-64, -2, 0, 2, 64] at 0.2 (round half
    to even), so 2 * 255 * |w| <= 32640 fits int16, and each value moves by at most one old step."""
    from onnx import TensorProto, helper

    from rba_core.runtime.int8_cpu import seven_bit_weights

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
    # the CPU form (7-bit weights on an x86 CPU without VNNI) is no further from fp32 than the
    # cached file's symmetric graph run literally
    (path,) = tmp_path.rglob("*-int8.onnx")
    sym = literal(path).run(None, {"images": x})
    assert np.abs(int8.scores["rba"] - fp32.scores["rba"]).mean() < \
        np.abs(sym[2][:, 0] - fp32.scores["rba"]).mean()
    assert np.mean(int8.class_ids == fp32.class_ids) >= np.mean(sym[0] == fp32.class_ids)
