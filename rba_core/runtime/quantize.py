"""int8 graphs: static QDQ quantization of an ``rba export`` graph (ONNX Runtime's quantizer).

``quantize_int8`` calibrates activation ranges on real frames (MinMax) and writes a QDQ graph
(README "int8": the scheme and the measured ``FP32_SCOPES``); biases stay float (TensorRT's
parser dequantizes int8 only, not ONNX Runtime's int32 biases); ``int8_cpu`` rewrites the graph
in memory for ONNX Runtime's CPU kernels. Metadata added: ``precision`` = int8,
``int8_fp32_scopes`` (JSON list), ``int8_calibration`` (where the frames came from, how many).
"""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from .base import BackendError
from .onnx_export import INPUT_NAME, _save, load_onnx, node_scopes

log = logging.getLogger(__name__)

INT8_OPS = ("Conv", "MatMul", "Gemm")
# Kept in fp32: module scopes (prefix match on a node's innermost module scope), "" = graph-level
# nodes outside every module (semantic inference's matmul), STEM = the first quantizable node
# (the stem convolution on the normalised image, whatever the backbone calls it). Chosen by
# measurement (bench/int8_sensitivity.py, README "int8"): alone in int8, the stem changes 1.0 % of
# the default model's class ids and the tail 0.6 %, for 5 % and 2 % of the fp32 time.
STEM = "<stem>"
FP32_SCOPES = (STEM, "")
DEMO_FRAMES = Path(__file__).resolve().parent.parent / "weights" / "demo"
DEFAULT_FRAMES = 16


def demo_frames() -> list[Path]:
    """The packaged real frames (CamVid, Road Anomaly) the default model calibrates on."""
    return sorted(DEMO_FRAMES.glob("*.jpg"))


def read_frames(paths: list[Path], limit: int) -> list[np.ndarray]:
    """RGB uint8 [H, W, 3] of up to ``limit`` image files, spread evenly over the list."""
    from ..imageio import read_image

    return [read_image(p) for p in spread(list(paths), limit)]


def spread(items: list, limit: int) -> list:
    """Up to ``limit`` items taken evenly from the whole list (not just its start)."""
    if len(items) <= limit:
        return items
    return [items[int(i * len(items) / limit)] for i in range(limit)]


def calibration_batches(frames: list[np.ndarray], shape: tuple[int, int, int]) -> list[np.ndarray]:
    """RGB frames -> uint8 [B, 3, H, W] batches for a graph of (B, H, W) (bilinear resize)."""
    import cv2

    b, h, w = shape
    chw = [np.ascontiguousarray(cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
                                .transpose(2, 0, 1)) if f.shape[:2] != (h, w)
           else np.ascontiguousarray(f.transpose(2, 0, 1)) for f in frames]
    chw += chw[:(-len(chw)) % b]  # fill the last batch by repeating frames
    return [np.stack(chw[i:i + b]) for i in range(0, len(chw), b)]


def quantizable_nodes(model: onnx.ModelProto, fp32_scopes=FP32_SCOPES) -> tuple[list, list]:
    """(quantized, kept fp32) node names among the ``INT8_OPS`` nodes."""
    quant, keep = [], []
    for node in model.graph.node:
        if node.op_type not in INT8_OPS:
            continue
        stem = STEM in fp32_scopes and not quant and not keep
        scope = module_scope(node)
        (keep if stem or in_scopes(scope, fp32_scopes) else quant).append(node.name)
    return quant, keep


def module_scope(node: onnx.NodeProto) -> str:
    """The innermost module a node belongs to ("" for graph-level nodes); the exporter's last
    scope entry is the op's own name, not a module."""
    return (node_scopes(node)[:-1] or [""])[-1]


def in_scopes(scope: str, prefixes) -> bool:
    """``""`` matches graph-level nodes only; any other prefix matches that module and below."""
    return any(scope == p if p == "" else (scope == p or scope.startswith(p + ".")) for p in prefixes)


@contextlib.contextmanager
def _quiet_quantizer():
    """The quantizer warns on the root logger about optional pre-processing: keep it quiet."""
    root = logging.getLogger()
    level = root.level
    if not log.isEnabledFor(logging.DEBUG):
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(fp32_path: str | Path, out_path: str | Path, frames: list[np.ndarray],
                  source: str = "", fp32_scopes=FP32_SCOPES,
                  cache: str | Path | None = None) -> onnx.ModelProto:
    """fp32 ``rba export`` graph -> QDQ int8 graph at ``out_path``, calibrated on ``frames``.

    ``frames``: RGB uint8 [H, W, 3] (resized to the graph's size). ``cache``: a calibration-range
    JSON to reuse (``quantize_static``'s cache; written when missing). Returns the written model.
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    model = load_onnx(fp32_path)
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("precision") == "int8":
        raise BackendError(f"{fp32_path} is already an int8 graph")
    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    if not frames:
        raise BackendError("int8 calibration needs at least one frame")
    batches = calibration_batches(frames, (shape[0], shape[2], shape[3]))
    quant, keep = quantizable_nodes(model, fp32_scopes)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(batches)

        def get_next(self):
            batch = next(self.items, None)
            return None if batch is None else {INPUT_NAME: batch}

    log.info("int8: calibrating on %d frame(s); %d %s nodes int8, %d kept fp32", len(frames),
             len(quant), "/".join(INT8_OPS), len(keep))
    with tempfile.TemporaryDirectory(prefix="rba_int8_") as tmp, _quiet_quantizer():
        tmp_out = Path(tmp) / "int8.onnx"
        quantize_static(str(fp32_path), str(tmp_out), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(INT8_OPS), per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        nodes_to_quantize=quant, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                       "QuantizeBias": False},  # TensorRT: float biases
                        calibration_cache_path=str(cache) if cache else None)
        qmodel = onnx.load(str(tmp_out))
    meta.update(precision="int8", int8_fp32_scopes=json.dumps(list(fp32_scopes)),
                int8_calibration=f"{len(frames)} frame(s) from {source or 'given frames'}")
    onnx.helper.set_model_props(qmodel, meta)
    qmodel.doc_string = model.doc_string + " (int8 QDQ)"
    _save(qmodel, out_path)
    return qmodel


def is_int8(model: onnx.ModelProto) -> bool:
    return any(n.op_type == "QuantizeLinear" for n in model.graph.node)
