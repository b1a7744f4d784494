"""rba_core.runtime: one backend interface over torch, ONNX Runtime and TensorRT.

Only the protocol (``base``) loads with the package; other names load their module on first use.
"""
import importlib

from .base import Backend, BackendError, FrameOutputs, InferenceResult, ModelInfo

_LAZY = {name: module for module, names in {
    "adaptive": ("SizeAdaptiveBackend", "backend_status", "status_text"),
    "engine_cache": ("EngineCache", "EngineKey", "cache_root"),
    "graph": ("InferenceGraph",),
    "loader": ("BACKENDS", "DEFAULT_MODEL", "load_backend", "load_torch_model",
               "resolve_model_path"),
    "onnx_export": ("ExportSpec", "export_onnx", "read_onnx_info"),
    "trt_check": ("TrtCompatError", "check_model", "require_trt_compatible"),
}.items() for name in names}

__all__ = ["Backend", "BackendError", "FrameOutputs", "InferenceResult", "ModelInfo", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
