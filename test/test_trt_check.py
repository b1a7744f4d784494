"""The static TensorRT check: op tables, each restriction on hand-built graphs, exported models."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from conftest import REPO
from rba_core.model import ModelConfig, build_model
from rba_core.runtime.onnx_export import ExportSpec, export_onnx
from rba_core.runtime.trt_check import (HARMLESS, RULES, TABLE_DIR, UNVERIFIABLE, OpTable,
                                        TrtCompatError, check_model, require_trt_compatible)

SHARED = REPO.parent / "shared" / "tensorrt"
FILES = ("trt_ops.txt", "trt_ops_restrictions.tsv", "trt_ops_unsupported.txt")


@pytest.mark.parametrize("name", FILES)
def test_shipped_tables_equal_the_shared_copy(name):
    if not (SHARED / name).is_file():
        pytest.skip(f"{SHARED / name} not present")
    assert (TABLE_DIR / name).read_bytes() == (SHARED / name).read_bytes()


def test_table_is_consistent_and_every_restriction_has_a_rule():
    table = OpTable.load()
    rows = [line.split("\t") for line in
            (TABLE_DIR / "trt_ops_restrictions.tsv").read_text().splitlines()[1:]]
    assert table.supported == {r[0] for r in rows if r[1] == "Y"}  # the two files agree
    assert table.unsupported == {r[0] for r in rows if r[1] == "N"}
    assert "GridSample" in table.supported
    assert "Unique" in table.unsupported and not table.supported & table.unsupported
    assert table.types["ConstantOfShape"] >= {TP.INT64}  # the upstream 'INF64' typo
    assert table.types["Cast"] >= {TP.UINT8, TP.FLOAT}
    restricted = {op for op in table.supported if table.restrictions.get(op)}
    assert restricted == set(RULES) | HARMLESS | set(UNVERIFIABLE)


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def model(nodes, inputs, outputs, inits=(), opset=18, functions=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             functions=list(functions))


def const(name, value, dtype=np.int64):
    return numpy_helper.from_array(np.array(value, dtype), name)


X4 = vi("x", TP.FLOAT, [1, 2, 8, 8])


def resize(**attrs):
    inits = [const("sizes", [1, 2, 16, 16])]
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], **attrs)
    return model([node], [X4], [vi("y", TP.FLOAT, [1, 2, 16, 16])], inits)


def resize_scales(scales, shape=(1, 2, 8, 8)):
    x = vi("x", TP.FLOAT, list(shape))
    inits = [const("s", scales, np.float32)]
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear")
    return model([node], [x], [vi("y", TP.FLOAT, None)], inits)


def resize_dynamic_scales():
    nodes = [helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear", axes=[2, 3])]
    return model(nodes, [X4, vi("s", TP.FLOAT, [2])], [vi("y", TP.FLOAT, None)])


def top_k(k_from_input=False, k=4, sorted_=1):
    inputs = [vi("x", TP.FLOAT, [1, 5000])]
    inits = []
    if k_from_input:
        inputs.append(vi("k", TP.INT64, [1]))
    else:
        inits.append(const("k", [k]))
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], sorted=sorted_)
    return model([node], inputs, [vi("v", TP.FLOAT, None), vi("i", TP.INT64, None)], inits)


def reduce_with_axes_input():
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"])
    return model([node], [X4, vi("axes", TP.INT64, [1])], [vi("y", TP.FLOAT, None)])


def single(op, inputs=("x",), outputs=("y",), in_type=TP.FLOAT, shape=(1, 2, 8, 8), opset=18,
           domain="", inits=(), **attrs):
    node = helper.make_node(op, list(inputs), list(outputs), domain=domain, **attrs)
    ins = [vi(inputs[0], in_type, list(shape))]
    m = model([node], ins, [vi(o, TP.FLOAT, None) for o in outputs if o], inits, opset=opset)
    if domain:
        m.opset_import.append(helper.make_opsetid(domain, 1))
    return m


def if_with_unsupported_op():
    then = helper.make_graph([helper.make_node("Unique", ["x"], ["u"])], "then", [],
                             [vi("u", TP.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["v"])], "else", [],
                              [vi("v", TP.FLOAT, None)])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
    return model([node], [vi("c", TP.BOOL, []), vi("x", TP.FLOAT, [4])], [vi("y", TP.FLOAT, None)])


def function_with_unsupported_op():
    fn = helper.make_function("local", "Uniq", ["a"], ["b"],
                              [helper.make_node("Unique", ["a"], ["b"])],
                              [helper.make_opsetid("", 18)])
    m = model([helper.make_node("Uniq", ["x"], ["y"], domain="local")], [vi("x", TP.FLOAT, [4])],
              [vi("y", TP.FLOAT, None)], functions=[fn])
    m.opset_import.append(helper.make_opsetid("local", 1))
    return m


CASES = {
    "resize cubic": (lambda: resize(mode="cubic"), "mode 'cubic' unsupported"),
    "resize crop": (lambda: resize(mode="linear",
                                   coordinate_transformation_mode="tf_crop_and_resize"),
                    "coordinate_transformation_mode"),
    "resize antialias": (lambda: resize(mode="linear", antialias=1), "antialiasing"),
    "resize aspect": (lambda: resize(mode="linear", keep_aspect_ratio_policy="not_larger"),
                      "keep_aspect_ratio_policy"),
    "resize nearest mode": (lambda: resize(mode="nearest", nearest_mode="bogus"), "nearest_mode"),
    "resize scales axes": (resize_dynamic_scales, "axes must be 0..rank-1"),
    # TensorRT's linear resize: innermost 3 dims only (dim 0 of a 4-D tensor is outside)
    "resize linear outer dim": (lambda: resize_scales([2, 1, 2, 2]), "innermost 3"),
    "resize linear 5d": (lambda: resize_scales([1, 2, 2, 2, 2], (1, 2, 4, 4, 4)), "innermost 3"),
    "grid sample 5d": (lambda: single("GridSample", ["x", "g"], shape=(1, 2, 4, 4, 4), opset=20),
                       "must be 4D"),
    "topk large k": (lambda: top_k(k=4000), "less than 3840"),
    "topk dynamic k": (lambda: top_k(k_from_input=True), "K must be a constant"),
    "topk unsorted": (lambda: top_k(sorted_=0), "sorted must be 1"),
    "reduce axes": (reduce_with_axes_input, "must be an initializer"),
    "unsupported op": (lambda: single("Unique"), "marked unsupported"),
    "unknown op": (lambda: single("NoSuchOp"), "not in TensorRT's ONNX operator list"),
    "custom domain": (lambda: single("MyOp", domain="com.example"), "custom op domain"),
    "uint8 add": (lambda: single("Add", ["x", "x"], in_type=TP.UINT8), "type UINT8"),
    "opset 21": (lambda: single("Relu", opset=21), "opset 21 outside"),
    "layernorm stats": (lambda: single("LayerNormalization", ["x", "x"], ["y", "mean"]),
                        "only the first output"),
    "maxpool indices": (lambda: single("MaxPool", outputs=["y", "idx"], kernel_shape=[2, 2]),
                        "Indices output"),
    "maxpool dilations": (lambda: single("MaxPool", kernel_shape=[2, 2], dilations=[2, 2]),
                          "dilations"),
    "scatter reduction": (lambda: single("ScatterND", ["x", "i", "u"], reduction="add"),
                          "reduction 'add'"),
    "dropout training": (lambda: single("Dropout", ["x", "r", "t"],
                                        inits=[const("r", 0.5, np.float32),
                                               const("t", True, np.bool_)]),
                         "training_mode must be False"),
    "subgraph": (if_with_unsupported_op, "marked unsupported"),
    "local function": (function_with_unsupported_op, "marked unsupported"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_violations_are_reported(case):
    build, message = CASES[case]
    problems = check_model(build())
    assert problems, f"{case}: nothing reported"
    assert any(message in str(p) for p in problems), [str(p) for p in problems]
    with pytest.raises(TrtCompatError, match="not TensorRT-compatible"):
        require_trt_compatible(build())


def test_where_is_reported_for_nested_graphs():
    problems = check_model(if_with_unsupported_op())
    assert [p.where for p in problems if p.op == "Unique"][0].endswith("then_branch/#0")


@pytest.mark.parametrize("build", [
    lambda: resize(mode="linear"),
    lambda: resize(mode="nearest", nearest_mode="floor",
                   coordinate_transformation_mode="asymmetric"),
    lambda: top_k(k=100),
    lambda: single("GridSample", ["x", "g"]),
    lambda: single("LayerNormalization", ["x", "x"]),
    lambda: single("Cast", in_type=TP.UINT8, to=TP.FLOAT),
    lambda: resize_scales([1, 4, 4, 1]),  # channels-last, as rba export writes it
], ids=["resize linear", "resize nearest", "topk", "gridsample 4d", "layernorm", "cast uint8",
        "resize linear nhwc"])
def test_supported_settings_pass(build):
    assert check_model(build()) == []


def tiny_swin_d2() -> ModelConfig:
    """rba_swin_b_1dl's architecture (D2 Swin, 1-level encoder, 1 decoder layer), shrunk."""
    return ModelConfig.preset(
        "rba_swin_b_1dl",
        backbone={"channels": [16, 32, 64, 128],
                  "kwargs": {"embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 2, 4]}},
        pixel_decoder={"conv_dim": 32, "mask_dim": 32, "encoder_layers": 1, "encoder_heads": 4,
                       "encoder_ffn_dim": 32, "norm_groups": 8},
        decoder={"num_queries": 8, "hidden_dim": 32, "heads": 4, "ffn_dim": 32})


@pytest.mark.parametrize("arch", ["tiny", "rba_swin_b_1dl"])
def test_exported_graphs_pass(arch, tmp_path):
    cfg = ModelConfig.preset("tiny") if arch == "tiny" else tiny_swin_d2()
    torch_model = build_model(cfg)
    proto = export_onnx(torch_model, tmp_path / "m.onnx", ExportSpec(72, 100, scores=["rba"]),
                        verify=False)
    assert check_model(proto) == []
    assert check_model(tmp_path / "m.onnx") == []  # from the file, too
    # the graph really contains the ops whose restrictions matter here
    ops = {n.op_type for n in onnx.load(tmp_path / "m.onnx").graph.node}
    assert {"GridSample", "Resize", "ArgMax"} <= ops
