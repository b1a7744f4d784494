"""Pick and build a backend for a model file (``auto``: TensorRT, else ONNX Runtime, else torch).

The ONNX exporter and TensorRT load only for the backends that need them."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..checkpoint import load_model
from ..files import file_sha256
from ..model import Mask2Former, ModelConfig, build_model
from ..scoring import parse_scores
from .base import Backend, BackendError
from .engine_cache import CacheEntry, cache_root

if TYPE_CHECKING:
    from .onnx_export import ExportSpec

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "weights" / "default.safetensors"
PRESET_PREFIX = "preset:"


def resolve_model_path(model: str | Path | None) -> str:
    """``None``/'' -> the embedded default model; otherwise the given path or ``preset:NAME``."""
    if model is None or str(model) in ("", "default"):
        if not DEFAULT_MODEL.is_file():
            raise BackendError(f"no model given and the embedded default model is missing "
                               f"({DEFAULT_MODEL}); pass a model file or preset:NAME")
        return str(DEFAULT_MODEL)
    model = str(model)
    if model.startswith(PRESET_PREFIX):
        return model
    if Path(model).is_dir():
        raise BackendError(f"{model} is a folder, not a model file (.safetensors or .onnx)")
    if not Path(model).is_file():
        raise BackendError(f"model file not found: {model}")
    return model


def load_torch_model(model: str | Path | None, device: str = "cpu") -> Mask2Former:
    """A Mask2Former from our .safetensors, or ``preset:NAME`` with random weights (for tests)."""
    spec = resolve_model_path(model)
    if spec.startswith(PRESET_PREFIX):
        name = spec[len(PRESET_PREFIX):]
        log.warning("using preset %s with RANDOM weights (outputs are meaningless)", name)
        return build_model(ModelConfig.preset(name)).eval().to(device)
    if spec.endswith((".pth", ".pkl")):
        raise BackendError(f"{spec} is a detectron2 checkpoint: convert it first with "
                           f"`rba convert {spec} OUT.safetensors --preset ...`")
    if spec.endswith(".onnx"):
        raise BackendError(f"{spec} is an ONNX graph: use the onnxruntime or tensorrt backend")
    return load_model(spec, device)


def export_onnx(*args, **kwargs):  # the exporter loads on first use
    from .onnx_export import export_onnx as export
    return export(*args, **kwargs)


def _onnx_cache_path(model_path: str, sha256: str, spec: ExportSpec,
                     cache_dir: str | Path | None) -> Path:
    """Where the export of one of our checkpoints at ``spec`` is cached (keyed by its sha256)."""
    root = (Path(cache_dir) if cache_dir else cache_root()) / "onnx"
    name = (f"{Path(model_path).stem}-{sha256[:16]}-{spec.height}x{spec.width}"
            f"-b{spec.batch}-{spec.mode}-{'+'.join(spec.scores)}.onnx")
    return root / name


def _export_for(spec_path: str, spec: ExportSpec, cache_dir, tmp: Path,
                model: Mask2Former | None = None) -> Path:
    """The ONNX graph of a .safetensors model / preset at ``spec``: cached export, or a new one
    (built under the cache entry's lock, checked, published atomically: see ``CacheEntry``), of
    ``model`` when given (a preset's random weights must be those the caller runs)."""
    from dataclasses import asdict

    from .onnx_export import FORMAT, check_onnx

    def export(path: Path) -> None:
        log.info("exporting %s to %s (once per model and input size)", spec_path, path)
        export_onnx(model if model is not None else load_torch_model(spec_path), path, spec,
                    source=Path(spec_path).name, source_sha256=sha)

    if spec_path.startswith(PRESET_PREFIX):  # random weights: never cached
        path, sha = tmp / f"{spec_path[len(PRESET_PREFIX):]}.onnx", ""
        export(path)
        return path
    sha = file_sha256(spec_path)
    key = {"format": FORMAT, "source_sha256": sha, "source_size": Path(spec_path).stat().st_size,
           "spec": asdict(spec)}
    entry = CacheEntry(_onnx_cache_path(spec_path, sha, spec, cache_dir), key,
                       {"source": str(Path(spec_path).resolve())})
    return entry.get_or_build(export, validate=check_onnx)[0]


def _int8_for(onnx_path: Path, cache_dir, tmp: Path) -> Path:
    """The int8 QDQ version of an fp32 graph, calibrated on the packaged demo frames (cached)."""
    from .onnx_export import load_onnx
    from .quantize import DEFAULT_FRAMES, demo_frames, quantize_int8, read_frames

    if {p.key: p.value for p in load_onnx(onnx_path, False).metadata_props}.get(
            "precision") == "int8":
        return onnx_path
    root = (Path(cache_dir) if cache_dir else cache_root()) / "onnx"
    path = (tmp if str(onnx_path).startswith(str(tmp)) else root) / \
        f"{onnx_path.stem}-{file_sha256(onnx_path)[:16]}-int8.onnx"
    if path.is_file():
        log.info("using cached int8 graph %s", path)
        return path
    log.info("int8: quantizing %s, calibrated on the packaged demo frames (for your camera, use "
             "`rba export --int8 --calibration DIR_OR_BAG`)", onnx_path.name)
    quantize_int8(onnx_path, path, read_frames(demo_frames(), DEFAULT_FRAMES),
                  source="the packaged demo frames")
    return path


def _pick(backend: str, is_onnx: bool) -> str:
    """Resolve ``auto``: TensorRT if usable, else ONNX Runtime, else torch."""
    if backend != "auto":
        return backend
    from .trt_backend import trt_unavailable_reason

    reason = trt_unavailable_reason()
    if reason is None:
        log.info("auto backend: tensorrt")
        return "tensorrt"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if is_onnx:
            raise BackendError("cannot run an ONNX model: neither TensorRT nor onnxruntime is "
                               "installed") from None
        log.info("auto backend: torch (TensorRT: %s; onnxruntime is not installed)", reason)
        return "torch"
    log.info("auto backend: onnxruntime (TensorRT: %s)", reason)
    return "onnxruntime"


def load_backend(model: str | Path | None = None, backend: str = "auto",
                 scores: str | list[str] | None = None, mode: str | None = None,
                 device: str | None = None, fp16: bool | None = None, *,
                 input_size: tuple[int, int] | None = None, batch_size: int = 1,
                 threads: int | None = None, cache_dir: str | Path | None = None,
                 int8: bool = False, warmup: str = "wait") -> Backend:
    """Build a backend; every backend returns the same ``InferenceResult``.

    ``model``: our ``.safetensors`` (any backend; ONNX Runtime and TensorRT first export it, at
    ``input_size`` (H, W) and ``batch_size``, to the cache), an ``.onnx`` from ``rba export``
    (onnxruntime / tensorrt; scores and mode are those baked into it), ``preset:NAME`` or None
    (the embedded default). ``scores``/``mode`` default to the graph's, or rba/exact.
    Without ``input_size`` a ``.safetensors`` on onnxruntime / tensorrt gets a
    ``SizeAdaptiveBackend`` (one graph per frame size, exported when first seen); ``warmup``:
    while a size builds, ``wait`` for it or run it on ``torch`` (see ``adaptive``).
    ``fp16``: torch autocast on CUDA; TensorRT engine precision (None: the export's preference);
    ``threads``: ONNX Runtime CPU threads; ``cache_dir``: engine / export cache folder.
    ``int8``: run the int8 QDQ graph (ONNX Runtime, TensorRT int8 engine); an fp32 graph is
    quantized once into the cache, calibrated on the packaged demo frames.
    Errors are one line (BackendError / CheckpointError).
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    try:
        score_names = parse_scores(scores) if scores is not None else None
    except ValueError as exc:
        raise BackendError(str(exc)) from None
    spec_path = resolve_model_path(model)
    is_onnx = spec_path.lower().endswith(".onnx")
    chosen = _pick(backend, is_onnx)
    if chosen == "torch":
        if int8:
            raise BackendError("int8 runs on the onnxruntime and tensorrt backends (a QDQ graph): "
                               "choose one of them")
        return _torch_backend(load_torch_model(spec_path, device or "cpu"), score_names, mode,
                              device, fp16)
    graph = dict(chosen=chosen, batch_size=batch_size, score_names=score_names, mode=mode,
                 device=device, fp16=fp16, threads=threads, cache_dir=cache_dir, int8=int8)
    if not is_onnx and input_size is None:
        return _adaptive(spec_path, warmup, graph)
    result = _graph_backend(spec_path, None if is_onnx else input_size, **graph)
    if is_onnx and mode and mode != result.info.mode:
        log.warning("%s was exported with %s inference; the requested %s inference has no effect "
                    "(re-export to change it)", spec_path, result.info.mode, mode)
    return result


def _torch_backend(model: Mask2Former, score_names, mode, device, fp16) -> Backend:
    from .torch_backend import TorchBackend

    return TorchBackend(model, score_names or ["rba"], mode or "exact", device=device,
                        fp16=bool(fp16))


def _graph_backend(spec_path: str, input_size: tuple[int, int] | None, *, chosen: str,
                   batch_size: int, score_names, mode, device, fp16, threads, cache_dir,
                   int8: bool, model: Mask2Former | None = None) -> Backend:
    """ONNX Runtime / TensorRT on an ``.onnx`` (``input_size`` None), or on the export of a
    ``.safetensors`` / preset (``model``: its loaded weights) at ``input_size``."""
    from .onnx_export import ExportSpec

    with tempfile.TemporaryDirectory(prefix="rba_") as tmp:
        if input_size is None:
            onnx_path = Path(spec_path)
        else:
            spec = ExportSpec(int(input_size[0]), int(input_size[1]), batch_size,
                              score_names or ["rba"], mode or "exact")
            onnx_path = _export_for(spec_path, spec, cache_dir, Path(tmp), model)
        if int8:
            onnx_path = _int8_for(onnx_path, cache_dir, Path(tmp))
        if chosen == "onnxruntime":
            from .ort_backend import OnnxRuntimeBackend, providers_for

            return OnnxRuntimeBackend(onnx_path, providers_for(device, bool(fp16)), threads,
                                      fp16, score_names)
        from .trt_backend import TensorRTBackend

        engine_dir = (Path(tmp) / "engines" if spec_path.startswith(PRESET_PREFIX)
                      else (Path(cache_dir) / "engines" if cache_dir else None))
        return TensorRTBackend(onnx_path, fp16, engine_dir, device, score_names=score_names)


def _adaptive(spec_path: str, warmup: str, graph: dict) -> Backend:
    """A ``SizeAdaptiveBackend``: ``graph``'s backend exported per frame size, torch meanwhile."""
    import copy

    from .adaptive import SizeAdaptiveBackend

    torch_model = load_torch_model(spec_path, "cpu")
    # a preset's random weights exist only in memory: builds (in their own thread) export a copy
    source = copy.deepcopy(torch_model) if spec_path.startswith(PRESET_PREFIX) else None
    on_cpu = _torch_backend(torch_model, graph["score_names"], graph["mode"], "cpu", False)

    def make_torch() -> Backend:
        import torch

        device = graph["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cpu":
            return on_cpu
        return _torch_backend(torch_model.to(device), graph["score_names"], graph["mode"],
                              device, graph["fp16"])

    def build(size: tuple[int, int]) -> Backend:
        return _graph_backend(spec_path, size, model=source, **graph)

    return SizeAdaptiveBackend(graph["chosen"], _precision(graph), on_cpu.info,
                               graph["batch_size"], build, make_torch, warmup)


def _precision(graph: dict) -> str:
    if graph["int8"]:
        return "int8+fp16" if graph["fp16"] and graph["chosen"] == "tensorrt" else "int8"
    return "fp16" if graph["fp16"] and graph["chosen"] == "tensorrt" else "fp32"
