"""Static TensorRT compatibility check of an ONNX graph (no TensorRT or GPU needed).

Every node (inside If/Loop/Scan bodies and model-local functions too) must be an ONNX op that
TensorRT's ONNX parser supports, on a supported input type, and respect the parser's documented
restrictions: Resize modes, GridSample on 4-D input, TopK's K, axes given as initializers, ...
The tables are onnx-tensorrt's operator list, shipped in ``trt_ops/`` (see its PROVENANCE.md).
Types and ranks come from ONNX shape inference, so a graph with static shapes is checked fully.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import RbaError

log = logging.getLogger(__name__)

TABLE_DIR = Path(__file__).resolve().parent / "trt_ops"
OPSET_RANGE = (9, 20)  # "TensorRT 10.0 supports operators in the inclusive range of opset 9 to 20"
DEFAULT_DOMAINS = ("", "ai.onnx")

_TYPE_NAMES = {
    "FP32": [TensorProto.FLOAT], "FP16": [TensorProto.FLOAT16], "BF16": [TensorProto.BFLOAT16],
    "INT32": [TensorProto.INT32], "INT64": [TensorProto.INT64], "INF64": [TensorProto.INT64],
    "UINT8": [TensorProto.UINT8], "INT8": [TensorProto.INT8], "BOOL": [TensorProto.BOOL],
    "INT4": [TensorProto.INT4],
    "FP8": [TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
            TensorProto.FLOAT8E5M2FNUZ],
}


class TrtCompatError(RbaError):
    """The graph uses an op or an op setting that TensorRT's ONNX parser does not support."""


@dataclass(frozen=True)
class OpTable:
    """onnx-tensorrt's operator table: supported ops, their input types and restrictions."""
    supported: frozenset
    unsupported: frozenset
    types: dict          # op -> frozenset of TensorProto data types (empty: not listed)
    restrictions: dict   # op -> restriction text ('' when none)

    @classmethod
    def load(cls, folder: str | Path = TABLE_DIR) -> "OpTable":
        folder = Path(folder)

        def names(file: str) -> frozenset:
            lines = (folder / file).read_text().splitlines()
            return frozenset(s.strip() for s in lines if s.strip() and not s.startswith("#"))

        types, restrictions = {}, {}
        with open(folder / "trt_ops_restrictions.tsv", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                op = row["op"].strip()
                tokens = [t.strip() for t in (row.get("types") or "").split(",") if t.strip()]
                types[op] = frozenset(d for t in tokens for d in _TYPE_NAMES[t])
                restrictions[op] = (row.get("restrictions") or "").strip()
        return cls(names("trt_ops.txt"), names("trt_ops_unsupported.txt"), types, restrictions)


@dataclass(frozen=True)
class Problem:
    """One violation: where (node name, with its subgraph path), which op, what is wrong."""
    where: str
    op: str
    message: str

    def __str__(self) -> str:
        return f"{self.where} [{self.op}]: {self.message}"


class Scope:
    """What is known about the tensors visible to a graph: types, shapes, constant values."""

    def __init__(self, parent: "Scope | None" = None):
        self.types: dict[str, int] = dict(parent.types) if parent else {}
        self.shapes: dict[str, tuple | None] = dict(parent.shapes) if parent else {}
        self.consts: dict[str, TensorProto | None] = dict(parent.consts) if parent else {}

    def add_graph(self, graph: onnx.GraphProto) -> "Scope":
        for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
            t = vi.type.tensor_type
            if vi.type.HasField("tensor_type"):
                self.types[vi.name] = t.elem_type
                self.shapes[vi.name] = (tuple(d.dim_value if d.HasField("dim_value") else None
                                              for d in t.shape.dim)
                                        if t.HasField("shape") else None)
        for init in graph.initializer:
            self.types[init.name] = init.data_type
            self.shapes[init.name] = tuple(init.dims)
            self.consts[init.name] = init
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
                self.consts[node.output[0]] = _constant_value(node)
        return self

    def rank(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        return None if shape is None else len(shape)

    def value(self, name: str) -> np.ndarray | None:
        tensor = self.consts.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)


def _constant_value(node: onnx.NodeProto) -> TensorProto | None:
    for a in node.attribute:
        if a.name == "value":
            return a.t
        if a.name in ("value_int", "value_ints", "value_float", "value_floats"):
            return numpy_helper.from_array(np.array(helper.get_attribute_value(a)))
    return None


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _input(node: onnx.NodeProto, i: int) -> str:
    """Name of input i, '' when absent or omitted."""
    return node.input[i] if i < len(node.input) else ""


# -- restriction rules: node, scope -> list of messages ------------------------------------------
Rule = Callable[[onnx.NodeProto, Scope], list]


def _must_be_constant(*indices: int, what: str = "") -> Rule:
    def rule(node, scope):
        out = []
        for i in indices:
            name = _input(node, i)
            if name and name not in scope.consts:
                out.append(f"input {i}{what} must be an initializer (got computed tensor {name!r})")
        return out
    return rule


def _pool(node, scope, ranks=(4, 5)):
    out = []
    if any(d != 1 for d in _attr(node, "dilations", []) or []):
        out.append("dilations must be empty or all ones")
    rank = scope.rank(node.input[0])
    if node.op_type != "LpPool" and rank not in ranks:
        out.append(f"only 2D or 3D pooling is supported (input rank {rank})")
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        out.append("the Indices output is unsupported")
    return out


def _constant(node, scope):
    bad = [a.name for a in node.attribute
           if a.name in ("sparse_value", "value_string", "value_strings")]
    return [f"attribute {b!r} is unsupported" for b in bad]


def _deform_conv(node, scope):
    out = []
    if scope.rank(node.input[0]) not in (3, 4):
        out.append("input must have 1D or 2D spatial dimensions")
    pads = list(_attr(node, "pads", []) or [])
    if pads and pads[:len(pads) // 2] != pads[len(pads) // 2:]:
        out.append(f"begin and end pads must be equal, got {pads}")
    return out


def _zero_point(index: int) -> Rule:
    def rule(node, scope):
        name = _input(node, index)
        if not name:
            return []
        value = scope.value(name)
        if value is None:
            return [f"zero point (input {index}) must be a constant"]
        return [] if not np.any(value.astype(np.float64)) else ["zero point must be zero"]
    return rule


def _dropout(node, scope):
    name = _input(node, 2)
    if not name:
        return []
    value = scope.value(name)
    if value is None:
        return ["training_mode must be an initializer"]
    return ["training_mode must be False"] if bool(np.any(value)) else []


def _eye_like(node, scope):
    shape = scope.shapes.get(node.input[0])
    return [] if shape and all(d for d in shape) else ["input must have static dimensions"]


def _grid_sample(node, scope):
    rank = scope.rank(node.input[0])
    return [] if rank == 4 else [f"input must be 4D (rank {rank})"]


def _hardmax(node, scope):
    shape = scope.shapes.get(node.input[0])
    axis = _attr(node, "axis", -1)
    if shape is None or not shape[axis]:
        return ["the axis dimension must be a build-time constant"]
    return []


def _if(node, scope):
    branches = [_attr(node, "then_branch"), _attr(node, "else_branch")]
    then_out, else_out = (list(b.output) for b in branches)
    out = []
    if len(then_out) != len(else_out):
        return ["the two branches return different numbers of outputs"]
    for t, e in zip(then_out, else_out):
        if t.name == e.name:
            out.append(f"branch outputs must have different names ({t.name!r} in both)")
        rt, re_ = len(t.type.tensor_type.shape.dim), len(e.type.tensor_type.shape.dim)
        if t.type.tensor_type.HasField("shape") and e.type.tensor_type.HasField("shape") \
                and rt != re_:
            out.append(f"branch outputs {t.name!r}/{e.name!r} differ in rank ({rt} vs {re_})")
    return out


def _layer_norm(node, scope):
    extra = [o for o in node.output[1:] if o]
    return [f"only the first output Y is supported (also produces {extra})"] if extra else []


def _bidirectional_activations(node):
    acts = list(_attr(node, "activations", []) or [])
    if _attr(node, "direction", "forward") == "bidirectional" and acts:
        half = len(acts) // 2
        if acts[:half] != acts[half:]:
            return ["bidirectional: activations must be the same for both directions"]
    return []


def _lstm(node, scope):
    out = _bidirectional_activations(node)
    if _attr(node, "input_forget", 0) != 0:
        out.append("input_forget must be 0")
    if _attr(node, "layout", 0) != 0:
        out.append("layout must be 0")
    return out


def _reduce(node, scope):
    # opset >= 18 (13 for ReduceSum) takes axes as input 1; older opsets as an attribute
    return _must_be_constant(1, what=" (axes)")(node, scope)


RESIZE_COORDS = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                 "align_corners")
RESIZE_MODES = ("nearest", "linear")
RESIZE_NEAREST = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")


def _resize(node, scope):
    out = []
    coord = _attr(node, "coordinate_transformation_mode", "half_pixel")
    mode = _attr(node, "mode", "nearest")
    if coord not in RESIZE_COORDS:
        out.append(f"coordinate_transformation_mode {coord!r} unsupported "
                   f"(supported: {', '.join(RESIZE_COORDS)})")
    if mode not in RESIZE_MODES:
        out.append(f"mode {mode!r} unsupported (supported: {', '.join(RESIZE_MODES)})")
    nearest = _attr(node, "nearest_mode", "round_prefer_floor")
    if mode == "nearest" and nearest not in RESIZE_NEAREST:
        out.append(f"nearest_mode {nearest!r} unsupported")
    policy = _attr(node, "keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
        out.append(f"keep_aspect_ratio_policy {policy!r} unsupported (only 'stretch')")
    if _attr(node, "antialias", 0):
        out.append("antialiasing is unsupported")
    axes = _attr(node, "axes")
    scales = _input(node, 2)
    if mode == "linear" and axes is None:
        out += _linear_resized_dims(node, scope)
    if axes is not None and scales and scales not in scope.consts:
        rank = scope.rank(node.input[0])
        if rank is None or list(axes) != list(range(rank)):
            out.append(f"with scales as a tensor input, axes must be 0..rank-1 (got {list(axes)})")
    return out


def _linear_resized_dims(node, scope) -> list[str]:
    """TensorRT's linear resize changes only the innermost 3 dims (IResizeLayer): with constant
    scales or sizes, no outer dim may change (e.g. scales [1, 4, 4, 1] on NHWC are fine)."""
    scales, sizes = scope.value(_input(node, 2)), scope.value(_input(node, 3))
    shape = scope.shapes.get(node.input[0])
    if scales is not None and scales.size:
        rank, changed = scales.size, [i for i, v in enumerate(scales.tolist()) if v != 1]
    elif sizes is not None and sizes.size and shape and None not in shape:
        rank, changed = sizes.size, [i for i, (n, m) in enumerate(zip(shape, sizes.tolist()))
                                     if n != m]
    else:
        return []
    if any(i < rank - 3 for i in changed):
        return [f"linear resize of dims {changed}: TensorRT resizes only the innermost 3"]
    return []


def _scatter_nd(node, scope):
    reduction = _attr(node, "reduction", "none")
    return [] if reduction == "none" else [f"reduction {reduction!r} is unsupported"]


def _unsqueeze(node, scope):
    return _must_be_constant(1, what=" (axes)")(node, scope)


def _top_k(node, scope):
    out = []
    if _attr(node, "sorted", 1) != 1:
        out.append("sorted must be 1")
    k = scope.value(_input(node, 1)) if _input(node, 1) else None
    if k is None:
        out.append("K must be a constant")
    elif int(np.max(k)) >= 3840:
        out.append(f"K must be less than 3840 (got {int(np.max(k))})")
    return out


RULES: dict[str, Rule] = {
    "AveragePool": _pool, "MaxPool": _pool, "LpPool": _pool,
    "Constant": _constant,
    "CumSum": _must_be_constant(1, what=" (axis)"),
    "DeformConv": _deform_conv,
    "DequantizeLinear": _zero_point(2), "QuantizeLinear": _zero_point(2),
    "Dropout": _dropout,
    "EyeLike": _eye_like,
    "GridSample": _grid_sample,
    "Hardmax": _hardmax,
    "If": _if,
    "LayerNormalization": _layer_norm,
    "LSTM": _lstm,
    "GRU": lambda n, s: _bidirectional_activations(n),
    "RNN": lambda n, s: _bidirectional_activations(n),
    "OneHot": _must_be_constant(1, what=" (depth)"),
    "Pad": _must_be_constant(3, what=" (axes)"),
    **{op: _reduce for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                              "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
                              "ReduceSumSquare")},
    "Resize": _resize,
    "ScatterND": _scatter_nd,
    "Slice": _must_be_constant(3, what=" (axes)"),
    "Squeeze": _must_be_constant(1, what=" (axes)"),
    "Unsqueeze": _unsqueeze,
    "TopK": _top_k,
}
# restrictions that need no check ("seed is ignored") and ones no static check can prove
HARMLESS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"}
UNVERIFIABLE = {"Loop": "dynamic scan output lengths and loop-carried shape changes cannot be "
                        "ruled out statically: avoid Loop in exported graphs"}

# which tensor's type the table's "types" column is about (default: input 0)
_TYPED_OUTPUT = {"Constant", "ConstantOfShape", "RandomNormal", "RandomUniform"}


def _type_problems(node, scope, allowed: frozenset) -> list:
    if not allowed:
        return []
    if node.op_type in _TYPED_OUTPUT:
        names = [node.output[0]]
    elif node.op_type == "Where":
        names = [_input(node, 1)]
    elif node.op_type in ("Cast", "CastLike"):
        names = [node.input[0], node.output[0]]
    else:
        names = [_input(node, 0)]
    out = []
    for name in names:
        dtype = scope.types.get(name) if name else None
        if dtype and dtype not in allowed:
            out.append(f"type {TensorProto.DataType.Name(dtype)} of {name!r} is unsupported")
    return out


class _Checker:
    def __init__(self, model: onnx.ModelProto, table: OpTable):
        self.table = table
        self.functions = {(f.domain, f.name): f for f in model.functions}
        self.problems: list[Problem] = []

    def graph(self, graph: onnx.GraphProto, scope: Scope, path: str) -> None:
        for i, node in enumerate(graph.node):
            where = f"{path}{node.name or f'#{i}'}"
            fn = self.functions.get((node.domain, node.op_type))
            if fn is not None:  # a model-local function: check its body instead
                for j, inner in enumerate(fn.node):
                    self.node(inner, Scope(scope), f"{where}/{inner.name or f'#{j}'}")
                continue
            self.node(node, scope, where)
            for a in node.attribute:  # If / Loop / Scan bodies
                subgraphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
                for sub in subgraphs:
                    self.graph(sub, Scope(scope).add_graph(sub), f"{where}/{a.name}/")

    def node(self, node: onnx.NodeProto, scope: Scope, where: str) -> None:
        op, t = node.op_type, self.table

        def report(message):
            self.problems.append(Problem(where, op, message))

        if node.domain not in DEFAULT_DOMAINS:
            return report(f"custom op domain {node.domain!r} is unsupported")
        if op not in t.supported:
            return report("marked unsupported by TensorRT" if op in t.unsupported
                          else "not in TensorRT's ONNX operator list")
        for msg in _type_problems(node, scope, t.types.get(op, frozenset())):
            report(msg)
        if op in UNVERIFIABLE:
            report(UNVERIFIABLE[op])
        for msg in RULES.get(op, lambda n, s: [])(node, scope):
            report(msg)


def check_model(model: onnx.ModelProto | str | Path, table: OpTable | None = None) -> list:
    """All TensorRT problems of ``model`` (a ModelProto or an .onnx path); [] when it is fine."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    table = table or OpTable.load()
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), None)
    if opset is None or not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        problems.append(Problem("model", "opset", f"opset {opset} outside TensorRT's range "
                                                  f"{OPSET_RANGE[0]}..{OPSET_RANGE[1]}"))
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # e.g. > 2 GB protos: check ops and attributes without types
        log.warning("shape inference failed (%s): type and rank checks skipped", exc)
        inferred = model
    checker = _Checker(inferred, table)
    checker.graph(inferred.graph, Scope().add_graph(inferred.graph), "")
    return problems + checker.problems


def format_problems(problems: list, limit: int = 40) -> str:
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more")
    return "\n".join(lines)


def require_trt_compatible(model: onnx.ModelProto | str | Path,
                           table: OpTable | None = None) -> None:
    """Raise TrtCompatError listing every problem (one line per node)."""
    problems = check_model(model, table)
    if problems:
        raise TrtCompatError(f"the graph is not TensorRT-compatible ({len(problems)} problem(s)):\n"
                             + format_problems(problems))
