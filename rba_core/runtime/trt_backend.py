"""TensorRT backend: builds (once) and runs an engine for an ``rba export`` graph.

The engine is built with the ``tensorrt`` Python API from the ONNX file (fp32 without TF32, fp16
or int8 as README "Export" and "int8" say; with a workspace limit) and cached by ``EngineCache``.
fp16 is TensorRT 10's weakly typed build: ``BuilderFlag.FP16``, and every layer from an ONNX node
in the graph's ``fp32_nodes`` metadata pinned to fp32 (TensorRT >= 11: fp32, with a warning).
Inference uses device buffers allocated once (torch CUDA tensors bound with
``set_tensor_address``), pinned host buffers and ``execute_async_v3`` on a private stream.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from ..files import file_sha256
from .base import BackendError, InferenceResult, check_images, single_mode
from .engine_cache import EngineCache, EngineKey
from .graph import OUTPUT_NAMES
from .onnx_export import INPUT_NAME, check_graph_io, info_from_metadata, load_onnx, proto_io
from .ort_backend import select_scores, to_result

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_GB = 4.0
_LAYER_META = re.compile(r"\[ONNX Layer: ([^\]]+)\]")


def trt_unavailable_reason() -> str | None:
    """None when TensorRT can run here, else why not (one line)."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising OSError
        return f"the tensorrt Python package is not importable ({type(exc).__name__}: {exc})"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device is available"
    return None


def gpu_identity(device) -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of a torch CUDA device."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


def node_of_layer(layer_name: str, metadata: str, nodes: set[str]) -> str | None:
    """The ONNX node a TensorRT layer was parsed from: the parser's ``[ONNX Layer: NAME]``
    metadata when present, else the layer name (minus the ``_N`` suffixes the parser appends to
    keep names unique); None for layers that match no node."""
    match = _LAYER_META.search(metadata or "")
    if match and match.group(1) in nodes:
        return match.group(1)
    name = layer_name
    while name not in nodes:
        stem, sep, tail = name.rpartition("_")
        if not sep or not tail.isdigit():
            return None
        name = stem
    return name


def _pin_fp32(trt, network, fp32_nodes: set[str], all_nodes: set[str]) -> int:
    """Pin layers of ``fp32_nodes`` (and their float outputs) to fp32; returns how many."""
    floats = (trt.float32, trt.float16)
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        node = node_of_layer(layer.name, getattr(layer, "metadata", "") or "", all_nodes)
        outputs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype in floats]
        if node in fp32_nodes and outputs:
            layer.precision = trt.float32
            for j in outputs:
                layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def build_engine(onnx_path: str | Path, fp16: bool, fp32_nodes: set[str], all_nodes: set[str],
                 workspace_gb: float = DEFAULT_WORKSPACE_GB, int8: bool = False) -> bytes:
    """Parse the ONNX file and build a serialized engine (fp32, or fp16 with fp32 pins)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # TensorRT 8.x: explicit batch must be asked for
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if not fp16 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32 (the parity reference)
    if int8 and hasattr(trt.BuilderFlag, "INT8"):  # explicit quantization from the QDQ nodes
        config.set_flag(trt.BuilderFlag.INT8)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        pinned = _pin_fp32(trt, network, fp32_nodes, all_nodes)
        log.info("fp16 engine: %d of %d layers pinned to fp32", pinned, network.num_layers)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError(f"TensorRT could not build an engine for {onnx_path} "
                           f"(see the TensorRT messages above)")
    return bytes(plan)


class TensorRTBackend:
    """``infer(uint8 [B,3,H,W]) -> InferenceResult`` with a cached TensorRT engine."""
    name = "tensorrt"

    def __init__(self, path: str | Path, fp16: bool | None = None,
                 cache_dir: str | Path | None = None, device: str | None = None,
                 workspace_gb: float = DEFAULT_WORKSPACE_GB, score_names: list[str] | None = None):
        reason = trt_unavailable_reason()
        if reason:
            raise BackendError(f"the TensorRT backend is unavailable: {reason}")
        import tensorrt as trt
        import torch

        path = Path(path)
        proto = load_onnx(path, load_weights=False)
        meta = {p.key: p.value for p in proto.metadata_props}
        self.info = info_from_metadata(meta, path)
        check_graph_io(*proto_io(proto), self.info, path)
        self.graph_scores = list(self.info.score_names)
        self.info.score_names = select_scores(self.graph_scores, score_names, path)
        if fp16 is None:
            fp16 = meta.get("precision") == "fp16"
        if fp16 and not hasattr(trt.BuilderFlag, "FP16"):
            log.warning("TensorRT %s builds strongly typed networks only: building an fp32 engine "
                        "(fp16 would need a mixed-precision ONNX)", trt.__version__)
            fp16 = False
        int8 = meta.get("precision") == "int8"  # a QDQ graph from `rba export --int8`
        self.precision = ("int8+fp16" if fp16 else "int8") if int8 else ("fp16" if fp16 else "fp32")
        self.device = torch.device(device or "cuda")
        if self.device.type != "cuda":
            raise BackendError(f"the TensorRT backend runs on CUDA devices, not {self.device}")
        if self.device.index is None:  # set_device and engines need an explicit index
            self.device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(self.device)
        gpu, capability = gpu_identity(self.device)
        key = EngineKey(file_sha256(path), trt.__version__, gpu, capability, self.precision)
        fp32_nodes = set(json.loads(meta.get("fp32_nodes", "[]")))
        all_nodes = {n.name for n in proto.graph.node}
        del proto

        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = runtime = trt.Runtime(self.logger)  # must outlive the engine
        engines = []

        def accept(data: bytes) -> bool:
            engines.append(runtime.deserialize_cuda_engine(data))
            return engines[-1] is not None

        self.cache = EngineCache(cache_dir)
        data, built = self.cache.get_or_build(
            key, path, lambda: build_engine(path, fp16, fp32_nodes, all_nodes, workspace_gb, int8),
            accept)
        self.engine = engines[-1] if not built else runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise BackendError(f"TensorRT cannot deserialize the engine built for {path}")
        self.engine_path = self.cache.path(key, path)
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        self._allocate(trt, torch)

    def _allocate(self, trt, torch) -> None:
        """One device tensor per I/O tensor (bound once), pinned host copies for the transfers."""
        by_name = {"float32": torch.float32, "float16": torch.float16, "int32": torch.int32,
                   "int64": torch.int64, "int8": torch.int8, "uint8": torch.uint8,
                   "bool": torch.bool}
        dtypes = {getattr(trt, n): t for n, t in by_name.items() if hasattr(trt, n)}  # 8.x: no int64
        self.device_buffers, self.host_buffers = {}, {}
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        missing = {INPUT_NAME, *OUTPUT_NAMES} - set(names)
        if missing:
            raise BackendError(f"the engine lacks the tensors {sorted(missing)} (has {names})")
        for name in names:
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = dtypes[self.engine.get_tensor_dtype(name)]
            self.device_buffers[name] = torch.empty(shape, dtype=dtype, device=self.device)
            self.host_buffers[name] = torch.empty(shape, dtype=dtype).pin_memory()
            self.context.set_tensor_address(name, self.device_buffers[name].data_ptr())

    def infer(self, images: np.ndarray) -> InferenceResult:
        import torch

        images = check_images(images, self.info)
        host, dev = self.host_buffers, self.device_buffers
        host[INPUT_NAME].numpy()[...] = images
        with torch.cuda.stream(self.stream):
            dev[INPUT_NAME].copy_(host[INPUT_NAME], non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise BackendError("TensorRT inference failed (see the TensorRT messages above)")
            for name in OUTPUT_NAMES:
                host[name].copy_(dev[name], non_blocking=True)
        self.stream.synchronize()
        class_ids, confidence, scores = (host[n].numpy().copy() for n in OUTPUT_NAMES)
        return to_result(class_ids, confidence.astype(np.float32), scores.astype(np.float32),
                         self.graph_scores, self.info.score_names)

    infer_modes = single_mode
