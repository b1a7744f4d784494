"""rba_core.runtime: one backend interface over torch, ONNX Runtime and TensorRT."""
from .base import Backend, BackendError, FrameOutputs, InferenceResult, ModelInfo
from .engine_cache import EngineCache, EngineKey, cache_root
from .graph import InferenceGraph
from .loader import BACKENDS, DEFAULT_MODEL, load_backend, load_torch_model, resolve_model_path
from .onnx_export import ExportSpec, export_onnx, read_onnx_info
from .trt_check import TrtCompatError, check_model, require_trt_compatible

__all__ = ["Backend", "BackendError", "FrameOutputs", "InferenceResult", "ModelInfo",
           "InferenceGraph", "BACKENDS", "DEFAULT_MODEL", "load_backend", "load_torch_model",
           "resolve_model_path", "EngineCache", "EngineKey", "cache_root", "ExportSpec",
           "export_onnx", "read_onnx_info", "TrtCompatError", "check_model",
           "require_trt_compatible"]
