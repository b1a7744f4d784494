"""Pick and build a backend for a model file (``auto``: TensorRT, else ONNX Runtime, else torch)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..checkpoint import load_model
from ..model import Mask2Former, ModelConfig, build_model
from ..scoring import parse_scores
from .base import Backend, BackendError

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


def load_backend(model: str | Path | None = None, backend: str = "auto",
                 scores: str | list[str] = "rba", mode: str = "exact",
                 device: str | None = None, fp16: bool = False) -> Backend:
    """Build a backend; errors are one line (BackendError / CheckpointError)."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    score_names = parse_scores(scores)
    spec = resolve_model_path(model)
    if backend in ("auto", "torch"):
        from .torch_backend import TorchBackend

        return TorchBackend(load_torch_model(spec, device or "cpu"), score_names, mode,
                            device=device, fp16=fp16)
    raise BackendError(f"backend {backend!r} is not available yet")
