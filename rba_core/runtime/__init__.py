"""rba_core.runtime: one backend interface over torch, ONNX Runtime and TensorRT."""
from .base import Backend, BackendError, FrameOutputs, InferenceResult, ModelInfo
from .graph import InferenceGraph
from .loader import BACKENDS, DEFAULT_MODEL, load_backend, load_torch_model, resolve_model_path

__all__ = ["Backend", "BackendError", "FrameOutputs", "InferenceResult", "ModelInfo",
           "InferenceGraph", "BACKENDS", "DEFAULT_MODEL", "load_backend", "load_torch_model",
           "resolve_model_path"]
