"""ONNX Runtime backend: runs an ``rba export`` graph with the best available execution provider.

Provider order: TensorRT EP (engine cache under the rba_ros cache folder), CUDA EP, CPU. The
session uses ONNX Runtime's full graph optimisation; on CPU the default thread count is the number
of cores this process may use (``os.sched_getaffinity``), without spin-waiting, which matters on
small shared CPUs (a spinning pool steals the cycles other processes need). ``fp16`` only affects
the TensorRT EP and applies to the whole graph (no fp32 pins): the ``tensorrt`` backend is the
accurate way to run fp16.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .base import BackendError, InferenceResult, check_images, single_mode
from .engine_cache import cache_root
from .graph import OUTPUT_NAMES
from .onnx_export import INPUT_NAME, check_graph_io, info_from_metadata

log = logging.getLogger(__name__)

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
# int8 on CPU: ONNX Runtime's QDQ propagation moves the QuantizeLinear after the stem's MaxPool in
# front of it, so the pool runs on uint8 NCHW in a slow generic kernel (66 of 678 ms at 720x1280);
# without it the pool stays fp32 NCHWc (9 ms). Same outputs: max commutes with quantization.
INT8_CPU_DISABLED_OPTIMIZERS = ["QDQPropagationTransformer"]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cuda_device_id(device: str | None) -> int:
    """``cuda:N`` -> N; ``cuda`` / None -> 0 (torch's and ONNX Runtime's default GPU)."""
    if device is None or str(device) == "cuda":
        return 0
    kind, _, index = str(device).partition(":")
    if kind != "cuda" or not index.isdigit():
        raise BackendError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    return int(index)


def providers_for(device: str | None = None, fp16: bool = False) -> list:
    """Execution providers for ``device``: cpu -> CPU only; cuda[:N] / None -> the best
    available, the GPU ones on device N."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    return best_providers(fp16, cuda_device_id(device))


def best_providers(fp16: bool = False, device_id: int = 0) -> list:
    """Available providers in ``PROVIDER_ORDER``, with options (CPU always last)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    out = []
    for name in PROVIDER_ORDER:
        if name not in available:
            continue
        if name == "TensorrtExecutionProvider":
            cache = cache_root() / "ort_trt"
            out.append((name, {"device_id": device_id, "trt_fp16_enable": fp16,
                               "trt_engine_cache_enable": True,
                               "trt_engine_cache_path": str(cache)}))
        elif name == "CUDAExecutionProvider":
            out.append((name, {"device_id": device_id}))
        else:
            out.append(name)
    return out


def session_options(threads: int | None = None):
    """Full graph optimisation, ``threads`` intra-op threads (default: the usable cores), no
    inter-op parallelism, no spin-waiting (it steals the cycles of other processes)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or available_cores()
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def cpu_model_bytes(path: Path) -> bytes | None:
    """An int8 QDQ graph in its CPU form (``int8_cpu.cpu_int8_model``), serialized; None for any
    other graph (the session then reads the file itself)."""
    from .onnx_export import load_onnx

    model = load_onnx(path, load_weights=False)
    if {p.key: p.value for p in model.metadata_props}.get("precision") != "int8":
        return None
    from .int8_cpu import cpu_int8_model, u8s8_saturates

    saturating = u8s8_saturates()
    if saturating:
        log.info("int8 on an x86 CPU without VNNI: weights to 7 bits (ONNX Runtime's u8s8 "
                 "kernels would saturate with 8-bit weights)")
    return cpu_int8_model(load_onnx(path), saturating).SerializeToString()


class OnnxRuntimeBackend:
    """``infer(uint8 [B,3,H,W]) -> InferenceResult`` on an exported graph (fixed B, H, W)."""
    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list | None = None, threads: int | None = None,
                 fp16: bool | None = None, score_names: list[str] | None = None):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise BackendError(f"model file not found: {path}")
        providers = providers or best_providers(bool(fp16))
        model, disabled = str(path), []
        first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        if first == "CPUExecutionProvider" and (cpu_int8 := cpu_model_bytes(path)):
            model, disabled = cpu_int8, INT8_CPU_DISABLED_OPTIMIZERS
        try:
            self.session = ort.InferenceSession(model, session_options(threads),
                                                providers=providers, disabled_optimizers=disabled)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / ...
            raise BackendError(f"{path} cannot be loaded by ONNX Runtime "
                               f"({type(exc).__name__}: {str(exc).strip().splitlines()[0]})") \
                from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = info_from_metadata(meta, path)
        check_graph_io([(i.name, i.type.removeprefix("tensor(").removesuffix(")"), i.shape)
                        for i in self.session.get_inputs()],
                       [o.name for o in self.session.get_outputs()], self.info, path)
        self.graph_scores = list(self.info.score_names)
        self.info.score_names = select_scores(self.graph_scores, score_names, path)
        self.providers = self.session.get_providers()
        self.precision = ("int8" if meta.get("precision") == "int8" else "fp16"
                          if fp16 and self.providers[0] == "TensorrtExecutionProvider" else "fp32")
        log.info("onnxruntime: %s with %s", path.name, ", ".join(self.providers))

    def infer(self, images: np.ndarray) -> InferenceResult:
        images = check_images(images, self.info)
        class_ids, confidence, scores = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        return to_result(class_ids, confidence, scores, self.graph_scores, self.info.score_names)

    infer_modes = single_mode


def select_scores(graph_scores: list[str], wanted: list[str] | None, path) -> list[str]:
    """The requested subset of the scores baked into a graph (all of them when None)."""
    if wanted is None:
        return list(graph_scores)
    missing = [s for s in wanted if s not in graph_scores]
    if missing:
        raise BackendError(f"{path} computes the scores {', '.join(graph_scores)}, not "
                           f"{', '.join(missing)}; re-export it with --scores "
                           f"{','.join(dict.fromkeys(graph_scores + missing))}")
    return list(wanted)


def to_result(class_ids, confidence, scores, graph_scores: list[str],
              wanted: list[str]) -> InferenceResult:
    """Graph outputs (numpy) -> InferenceResult with the ``wanted`` score maps."""
    index = {n: i for i, n in enumerate(graph_scores)}
    return InferenceResult(np.asarray(class_ids, np.int32), np.asarray(confidence, np.float32),
                           {n: np.asarray(scores[:, index[n]], np.float32) for n in wanted})
