"""The CPU form of an int8 QDQ graph: what ONNX Runtime's fused uint8 kernels run fastest and
most precisely, rewritten in memory from the symmetric file (which TensorRT reads as it is).

``cpu_int8_model`` applies, in order:

1. ``relu_without_requantization``: Conv -> Q -> DQ -> Relu -> Q becomes Conv -> Relu -> Q (one
   rounding instead of two; what TensorRT fuses anyway), so ONNX Runtime fuses Conv+Relu+Q into one
   QLinearConv instead of leaving a float Relu between two quantized convolutions.
2. ``unsigned_nonnegative``: the Quantize/DequantizeLinear pairs of tensors that cannot be negative
   (Relu outputs, MaxPool of them) become uint8 with zero point 0 and half the scale: the same
   range [0, 127 s], twice the steps, and the Relu folds into the quantization (ONNX Runtime's
   ``ReluQuantFusion``), so residual Add + Relu + Q fuse into QLinearAdd.
3. ``uint8_activations``: the other activation pairs become uint8 with zero point 128 (the same
   values; ONNX Runtime's u8 x s8 kernels).
4. ``seven_bit_weights`` where ``u8s8_saturates`` (x86 without VNNI): its int16 pair sums would
   saturate with full-range uint8 activations and 8-bit weights.
"""
from __future__ import annotations

import collections
import platform
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

# ops whose output is non-negative when their (first) input is
NONNEGATIVE_THROUGH = ("MaxPool",)


def cpu_int8_model(model: onnx.ModelProto, saturating: bool | None = None) -> onnx.ModelProto:
    """The whole rewrite above, in place; ``saturating`` defaults to ``u8s8_saturates()``."""
    relu_without_requantization(model)
    unsigned_nonnegative(model)
    uint8_activations(model)
    if u8s8_saturates() if saturating is None else saturating:
        seven_bit_weights(model)
    drop_unused(model)
    return model


def _links(graph: onnx.GraphProto) -> tuple[dict, dict]:
    """({tensor: producing node}, {tensor: [consuming nodes]})."""
    prod = {o: n for n in graph.node for o in n.output}
    cons = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            cons[i].append(n)
    return prod, cons


def relu_without_requantization(model: onnx.ModelProto) -> int:
    """Skip a Quantize -> DequantizeLinear pair that only feeds a Relu whose outputs are all
    quantized again; returns how many pairs were skipped (left dead for ``drop_unused``)."""
    prod, cons = _links(model.graph)
    skipped = 0
    for relu in model.graph.node:
        if relu.op_type != "Relu" or not cons[relu.output[0]] or \
                any(c.op_type != "QuantizeLinear" for c in cons[relu.output[0]]):
            continue
        dq = prod.get(relu.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or len(cons[dq.output[0]]) != 1:
            continue
        q = prod.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or len(cons[q.output[0]]) != 1:
            continue
        relu.input[0] = q.input[0]
        skipped += 1
    return skipped


def _nonnegative(tensor: str, prod: dict) -> bool:
    node = prod.get(tensor)
    if node is None:
        return False
    if node.op_type == "Relu":
        return True
    return node.op_type in NONNEGATIVE_THROUGH and _nonnegative(node.input[0], prod)


def unsigned_nonnegative(model: onnx.ModelProto) -> int:
    """Symmetric int8 pairs (zero point 0, scale s) of non-negative tensors -> uint8, zero point 0,
    scale s / 2, in place (only where the pair owns its scale and zero point); returns how many."""
    prod, cons = _links(model.graph)
    inits = {i.name: i for i in model.graph.initializer}
    users = collections.Counter(i for n in model.graph.node for i in n.input)
    done = 0
    for q in list(model.graph.node):
        if q.op_type != "QuantizeLinear" or len(q.input) < 3 or not _nonnegative(q.input[0], prod):
            continue
        pair = [q] + cons[q.output[0]]
        if any(n.op_type != "DequantizeLinear" for n in pair[1:]):
            continue
        params = {name for n in pair for name in n.input[1:3]}
        zero_points = {n.input[2] for n in pair if len(n.input) > 2}
        if any(p not in inits or users[p] > sum(p in n.input for n in pair) for p in params) or \
                any(inits[z].data_type != TensorProto.INT8 or
                    np.any(numpy_helper.to_array(inits[z])) for z in zero_points):
            continue  # shared with other nodes, or not symmetric int8
        for name in params:
            value = numpy_helper.to_array(inits[name])
            value = np.zeros(value.shape, np.uint8) if name in zero_points else \
                (value / 2).astype(value.dtype)
            inits[name].CopyFrom(numpy_helper.from_array(value, name))
        done += 1
    return done


def uint8_activations(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite int8 activation Quantize/DequantizeLinear pairs with zero point 0 to uint8 with
    zero point 128 (in place; same values, ONNX Runtime's fast u8s8 CPU kernels).

    A pair is an activation pair when the DequantizeLinear reads a QuantizeLinear's output;
    weight DequantizeLinears read int8 initializers and stay int8.
    """
    inits = {i.name: i for i in model.graph.initializer}
    q_out = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    act, weight = set(), set()
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        is_act = node.op_type == "QuantizeLinear" or node.input[0] in q_out
        (act if is_act else weight).add(node.input[2])
    for name in act - weight:
        init = inits.get(name)
        if init is None or init.data_type != TensorProto.INT8:
            continue
        value = numpy_helper.to_array(init)
        if np.any(value):  # only zero points 0 map exactly onto uint8 / 128
            continue
        init.CopyFrom(numpy_helper.from_array(np.full(value.shape, 128, np.uint8), name))
    return model


def u8s8_saturates(cpuinfo: str | None = None, machine: str | None = None) -> bool:
    """True on x86 CPUs without VNNI: ONNX Runtime's u8 x s8 kernels there sum pairs of
    products in int16 (``vpmaddubsw``), which saturates with full-range int8 weights (measured on
    an AVX2-only EPYC: RbA maps 7 % off the QDQ graph's values; ONNX Runtime's docs: "reduce_range"
    on such CPUs). ``cpuinfo``/``machine`` default to /proc/cpuinfo and ``platform.machine()``;
    where the flags cannot be read on x86, assume no VNNI (the safe side)."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False  # ARM (Jetson): dot-product kernels accumulate in int32
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return True
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags")), [])
    return not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags)


def seven_bit_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Halve every int8 weight (round half to even, |w| <= 64) and double its scale, in place:
    u8 activations x 7-bit weights cannot saturate ONNX Runtime's int16 pair sums
    (2 * 255 * 64 < 2^15). Costs one bit of weight precision; used only where ``u8s8_saturates``."""
    inits = {i.name: i for i in model.graph.initializer}
    q_out = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    done = set()
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] in q_out or \
                {node.input[0], node.input[1]} & done:
            continue
        w, scale = inits.get(node.input[0]), inits.get(node.input[1])
        if w is None or scale is None or w.data_type != TensorProto.INT8:
            continue
        done |= {node.input[0], node.input[1]}
        value, s = numpy_helper.to_array(w), numpy_helper.to_array(scale)
        w.CopyFrom(numpy_helper.from_array(np.round(value / 2).astype(np.int8), w.name))
        scale.CopyFrom(numpy_helper.from_array((s * 2).astype(s.dtype), scale.name))
    return model


def drop_unused(model: onnx.ModelProto) -> None:
    """Remove nodes whose outputs nothing reads, then initializers nothing reads (in place)."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
