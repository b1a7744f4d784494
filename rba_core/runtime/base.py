"""The backend protocol: every runtime (torch, ONNX Runtime, TensorRT) returns the same thing."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..errors import RbaError


class BackendError(RbaError):
    """A backend cannot be created or run (missing runtime, bad model file, bad input)."""


@dataclass
class InferenceResult:
    """Per-batch outputs at input resolution."""
    class_ids: np.ndarray          # [B, H, W] int32, index into ``classes``
    confidence: np.ndarray         # [B, H, W] float32, L_k of the winning class
    scores: dict[str, np.ndarray]  # name -> [B, H, W] float32, higher = more anomalous
    timing: dict[str, float] = field(default_factory=dict)  # seconds, from ``infer_modes``

    def frame(self, i: int) -> "FrameOutputs":
        return FrameOutputs(self.class_ids[i], self.confidence[i],
                            {k: v[i] for k, v in self.scores.items()})


@dataclass
class FrameOutputs:
    class_ids: np.ndarray
    confidence: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ModelInfo:
    """What a backend knows about its model (from our config or the ONNX metadata)."""
    class_names: list[str]
    colors: list[list[int]]
    score_names: list[str]
    mode: str
    input_size: tuple[int, int] | None = None  # fixed (H, W), or None when any size works
    batch_size: int | None = None              # fixed batch, or None
    config: dict = field(default_factory=dict)


class Backend(Protocol):
    name: str
    info: ModelInfo

    def infer(self, images: np.ndarray) -> InferenceResult:
        """images: uint8 RGB [B, 3, H, W] (H, W = ``info.input_size`` when fixed)."""

    def infer_modes(self, images: np.ndarray, modes: list[str]) -> dict[str, InferenceResult]:
        """One network pass post-processed in each of ``modes`` (torch: any; an engine: its
        ``info.mode``); ``timing``: ``network_s`` + ``postprocess_s``, or ``inference_s``."""


def single_mode(backend: Backend, images: np.ndarray, modes: list[str]
                ) -> dict[str, InferenceResult]:
    """``infer_modes`` of an engine with its one inference mode baked in."""
    if list(modes) != [backend.info.mode]:
        raise BackendError(f"this {backend.name} model was exported with --inference "
                           f"{backend.info.mode}; other modes need the torch backend")
    t0 = time.perf_counter()
    result = backend.infer(images)
    result.timing = {"inference_s": time.perf_counter() - t0}
    return {backend.info.mode: result}


def check_images(images: np.ndarray, info: ModelInfo) -> np.ndarray:
    """Validate a batch against the backend's fixed shape; one clear error otherwise."""
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[1] != 3:
        shape = getattr(images, "shape", None)
        raise BackendError(f"expected uint8 images [B, 3, H, W], got shape {shape}")
    if images.dtype != np.uint8:
        raise BackendError(f"expected uint8 images, got {images.dtype}")
    if info.input_size is not None and tuple(images.shape[2:]) != tuple(info.input_size):
        raise BackendError(f"this model was exported for {info.input_size[0]}x{info.input_size[1]} "
                           f"input, got {images.shape[2]}x{images.shape[3]}")
    if info.batch_size is not None and images.shape[0] != info.batch_size:
        raise BackendError(f"this model was exported for batch {info.batch_size}, "
                           f"got {images.shape[0]}")
    return np.ascontiguousarray(images)
