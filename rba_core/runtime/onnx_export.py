"""Export ``InferenceGraph`` to ONNX and read back what the graph records about its model.

The exported graph takes uint8 RGB ``images [N, 3, H, W]`` (static shape) and does everything the
torch backend does: normalisation, padding, Mask2Former, semantic inference (exact or fast) and
the anomaly scores, ending in ``class_ids [N, H, W]`` (int32), ``confidence [N, H, W]`` and
``scores [N, S, H, W]`` at input resolution (see ``graph.InferenceGraph``).

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript), then its optimiser
(constant folding, which turns the position embeddings and reference points into initializers).
The legacy TorchScript exporter also works on the timm ResNets but turns timm's Swin into thousands
of Shape/Gather/ScatterND nodes that no ONNX pass removes; the dynamo graph is clean for both.

Metadata (``metadata_props``, all strings): ``format`` (``FORMAT``), ``config`` (ModelConfig
JSON), ``classes``, ``colors``, ``scores`` (JSON lists), ``inference`` (exact|fast),
``input_size`` ("H,W"), ``batch_size``, ``precision`` (fp32|fp16: the TensorRT precision preferred
for this export), ``fp32_nodes`` (JSON list of node names TensorRT keeps in fp32 in an fp16
engine: normalisation, pixel decoder, semantic inference, scores), ``source``/``source_sha256``.

``--fp16`` never changes the ONNX file's numbers (weights and arithmetic stay fp32, so ONNX
Runtime on CPU computes what PyTorch fp32 does): it records ``precision=fp16``, from which the
TensorRT backend builds an fp16 engine with the ``fp32_nodes`` pinned to fp32 (README "Export").
"""
from __future__ import annotations

import ast
import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from ..dataconf import ConfigError, check
from ..files import atomic_path
from ..model import MODES, Mask2Former, ModelConfig
from ..scoring import parse_scores
from .base import BackendError, ModelInfo
from .graph import OUTPUT_NAMES, InferenceGraph

log = logging.getLogger(__name__)

FORMAT = "rba_ros.onnx/1"
INPUT_NAME = "images"
DEFAULT_OPSET = 18
OPSETS = (18, 19, 20)  # the dynamo exporter's minimum; TensorRT 10's parser reads up to 20
# module scopes that may run in fp16 in a TensorRT fp16 engine; every other node stays fp32
FP16_SCOPES = ("model.backbone", "model.decoder")
_DROP_NODE_META = ("pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node")  # local paths, bulk


@dataclass
class ExportSpec:
    """What ``rba export`` produces: input size, fixed batch, scores, inference mode, precision."""
    height: int
    width: int
    batch: int = 1
    scores: list[str] = field(default_factory=lambda: ["rba"])
    mode: str = "exact"
    fp16: bool = False
    opset: int = DEFAULT_OPSET

    def __post_init__(self):
        check(self.height >= 32 and self.width >= 32, "height",
              f"input size must be at least 32x32, got {self.height}x{self.width}")
        check(1 <= self.batch <= 16, "batch", f"must be in 1..16, got {self.batch}")
        check(self.mode in MODES, "inference", f"must be one of {MODES}, got {self.mode!r}")
        check(self.opset in OPSETS, "opset", f"must be one of {OPSETS}, got {self.opset}")
        try:
            self.scores = parse_scores(self.scores)
        except ValueError as exc:
            raise ConfigError("scores", str(exc)) from None


def node_scopes(node: onnx.NodeProto) -> list[str]:
    """The module scopes (outermost first) the dynamo exporter recorded for ``node``."""
    meta = {p.key: p.value for p in node.metadata_props}
    try:
        return [str(s) for s in ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))]
    except (ValueError, SyntaxError):
        return []


def fp32_node_names(model: onnx.ModelProto) -> list[str]:
    """Nodes outside ``FP16_SCOPES`` (from the dynamo exporter's per-node module scopes)."""
    return [node.name for node in model.graph.node
            if not any(s.startswith(FP16_SCOPES) for s in node_scopes(node))]


def metadata(cfg: ModelConfig, spec: ExportSpec, fp32_nodes: list[str],
             source: str = "", source_sha256: str = "") -> dict[str, str]:
    return {
        "format": FORMAT, "config": json.dumps(cfg.to_dict()),
        "classes": json.dumps(list(cfg.class_names)), "colors": json.dumps(cfg.colors),
        "scores": json.dumps(spec.scores), "inference": spec.mode,
        "input_size": f"{spec.height},{spec.width}", "batch_size": str(spec.batch),
        "precision": "fp16" if spec.fp16 else "fp32", "fp32_nodes": json.dumps(fp32_nodes),
        "source": source, "source_sha256": source_sha256,
    }


def info_from_metadata(meta: dict[str, str], path: str | Path) -> ModelInfo:
    """ModelInfo from an exported graph's metadata; one clear error if it is not ours."""
    if meta.get("format") != FORMAT:
        raise BackendError(f"{path} is not an rba_ros ONNX export (metadata format "
                           f"{meta.get('format')!r}, expected {FORMAT!r}); export it with "
                           f"`rba export`")
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["config"]))
        h, w = (int(v) for v in meta["input_size"].split(","))
        return ModelInfo(list(cfg.class_names), [list(c) for c in cfg.colors],
                         list(json.loads(meta["scores"])), meta["inference"], (h, w),
                         int(meta["batch_size"]), cfg.to_dict())
    except (KeyError, ValueError, ConfigError) as exc:  # JSONDecodeError is a ValueError
        raise BackendError(f"{path}: rba_ros metadata is malformed ({exc})") from None


def check_graph_io(inputs: list[tuple], outputs: list[str], info: ModelInfo,
                   path: str | Path) -> None:
    """The graph behind our metadata takes and returns what ``rba export`` makes: one input
    ``images`` uint8 [batch, 3, H, W] as the metadata says, and the outputs ``OUTPUT_NAMES``.
    ``inputs``: [(name, element type such as 'uint8', shape)] (a graph with our metadata copied
    onto it would otherwise fail on every frame instead of when it is loaded)."""
    want = [info.batch_size, 3, *info.input_size]
    got = ", ".join(f"{n} {t} {list(s)}" for n, t, s in inputs) or "none"
    if len(inputs) != 1 or inputs[0][0] != INPUT_NAME or inputs[0][1] != "uint8" or \
            list(inputs[0][2]) != want:
        raise BackendError(f"{path} was not made by `rba export`: its inputs are {got}, expected "
                           f"{INPUT_NAME} uint8 {want} (re-export the model with `rba export`)")
    if missing := [n for n in OUTPUT_NAMES if n not in outputs]:
        raise BackendError(f"{path} was not made by `rba export`: no output "
                           f"{', '.join(missing)} (it has {', '.join(outputs) or 'none'}); "
                           "re-export the model with `rba export`")


def proto_io(model: onnx.ModelProto) -> tuple[list[tuple], list[str]]:
    """(inputs, output names) of an ONNX graph for ``check_graph_io``."""
    weights = {t.name for t in model.graph.initializer}  # old IRs list them as inputs too
    inputs = []
    for v in model.graph.input:
        if v.name in weights:
            continue
        t = v.type.tensor_type
        dtype = (np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name
                 if t.elem_type else "?")
        inputs.append((v.name, dtype, [d.dim_value if d.HasField("dim_value") else d.dim_param
                                       for d in t.shape.dim]))
    return inputs, [v.name for v in model.graph.output]


def load_onnx(path: str | Path, load_weights: bool = True) -> onnx.ModelProto:
    """onnx.load with one-line errors for missing and corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"model file not found: {path}")
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except Exception as exc:  # protobuf DecodeError, missing external data, ...
        raise BackendError(f"{path} is not a readable ONNX model "
                           f"({type(exc).__name__}: {exc})") from None


def check_onnx(path: str | Path) -> None:
    """``onnx.checker`` over a written file (by path: also past protobuf's 2 GB); one line if it
    fails. The export cache runs it before publishing an export."""
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # ValidationError, DecodeError, a missing external data file
        raise BackendError(f"{path} fails the ONNX checker ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def read_onnx_info(path: str | Path) -> tuple[ModelInfo, dict[str, str]]:
    """(ModelInfo, raw metadata) of an exported graph."""
    model = load_onnx(path, load_weights=False)
    meta = {p.key: p.value for p in model.metadata_props}
    return info_from_metadata(meta, path), meta


def _save(model: onnx.ModelProto, path: Path) -> None:
    """Write atomically; graphs over protobuf's 2 GB limit get an external ``.data`` file."""
    large = model.ByteSize() > 1_800_000_000
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp), save_as_external_data=large, location=path.name + ".data")


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's passes log every rewrite (and benign "skipping constant folding" notes):
    keep them to errors unless DEBUG logging is on."""
    loggers = [logging.getLogger(n) for n in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    if not log.isEnabledFor(logging.DEBUG):
        for lg in loggers:
            lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(model: Mask2Former, path: str | Path, spec: ExportSpec, *, source: str = "",
                source_sha256: str = "", verify: bool = True) -> onnx.ModelProto:
    """Trace ``InferenceGraph(model)`` at ``spec``'s fixed shape and write it to ``path``.

    ``model`` is moved to the CPU in fp32 (export runs there). Returns the written ModelProto.

    With ``verify`` the written file is run in ONNX Runtime on the tracing input and compared to
    eager PyTorch (same class ids on >= 99.9 % of pixels, anomaly maps within 1e-4 relative).
    """
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        raise BackendError("ONNX export needs the onnxscript package (pip install onnxscript)") \
            from None
    path = Path(path)
    model = model.eval().cpu().float()
    # channels-last per-pixel part: same numbers, ONNX Runtime's faster layout (README "Export");
    # verified against the torch backend's [B, K, H, W] graph
    graph = InferenceGraph(model, spec.scores, spec.mode, channels_last=True).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (spec.batch, 3, spec.height, spec.width), dtype=torch.uint8,
                           generator=gen)
    with torch.inference_mode():  # also fills the position-embedding caches
        reference = [t.numpy() for t in InferenceGraph(model, spec.scores, spec.mode)(images)]
    log.info("exporting %dx%d batch %d (%s, scores %s)", spec.height, spec.width, spec.batch,
             spec.mode, ",".join(spec.scores))
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(graph, (images,), None, dynamo=True, input_names=[INPUT_NAME],
                                    output_names=list(OUTPUT_NAMES), opset_version=spec.opset,
                                    optimize=True, verbose=False)
    proto = program.model_proto
    fp32_nodes = fp32_node_names(proto)
    for node in proto.graph.node:
        keep = [p for p in node.metadata_props if p.key not in _DROP_NODE_META]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.helper.set_model_props(proto, metadata(model.cfg, spec, fp32_nodes, source,
                                                source_sha256))
    proto.doc_string = (f"rba_ros RbA / Mask2Former ({model.cfg.name}): uint8 RGB images -> "
                        f"class ids, winning-class confidence, anomaly scores {spec.scores}")
    proto.graph.name = f"rba_{model.cfg.name}"
    _save(proto, path)
    if verify:
        verify_export(path, images.numpy(), reference)
    return proto


def verify_export(path: str | Path, images: np.ndarray, reference: list[np.ndarray],
                  max_rel: float = 1e-4, min_agree: float = 0.999) -> None:
    """Run ``path`` in ONNX Runtime (CPU) and compare with the eager outputs ``reference``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    class_ids, confidence, scores = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
    agree = float((class_ids == reference[0]).mean())
    rel = relative_error(scores, reference[2])
    if agree < min_agree or rel > max_rel:
        raise BackendError(f"{path}: the exported graph disagrees with PyTorch (class ids agree "
                           f"on {100 * agree:.3f} % of pixels, anomaly maps differ by {rel:.2e} "
                           f"relative); please report this")
    log.info("verified against PyTorch: class ids agree on %.3f %%, scores rel. error %.1e",
             100 * agree, rel)


def relative_error(a: np.ndarray, ref: np.ndarray) -> float:
    """max |a - ref| / max |ref|: the error relative to the map's magnitude."""
    ref = np.asarray(ref, np.float64)
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / max(np.abs(ref).max(), 1e-12))
