"""Eager PyTorch backend (CPU or CUDA): any input size, the reference for the other backends."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..model import Mask2Former
from .base import BackendError, InferenceResult, ModelInfo, check_images
from .graph import InferenceGraph


class TorchBackend:
    name = "torch"

    def __init__(self, model: Mask2Former, score_names: list[str], mode: str = "exact",
                 device: str | None = None, fp16: bool = False):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if fp16 and not str(device).startswith("cuda"):
            raise BackendError("fp16 inference needs a CUDA device")
        self.device = torch.device(device)
        self.fp16 = fp16
        self.precision = "fp16" if fp16 else "fp32"
        self.graph = InferenceGraph(model.eval().to(self.device), score_names, mode).eval()
        cfg = model.cfg
        self.info = ModelInfo(list(cfg.class_names), [list(c) for c in cfg.colors],
                              list(score_names), mode, config=cfg.to_dict())

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.fp16)

    @torch.inference_mode()
    def infer(self, images: np.ndarray) -> InferenceResult:
        return self.infer_modes(images, [self.info.mode], timed=False)[self.info.mode]

    @torch.inference_mode()
    def infer_modes(self, images: np.ndarray, modes: list[str],
                    timed: bool = True) -> dict[str, InferenceResult]:
        """One network pass; each inference mode post-processes the same raw outputs (``timed``:
        each part timed, with a CUDA synchronisation between them)."""
        x = torch.from_numpy(check_images(images, self.info)).to(self.device, non_blocking=True)
        t0 = time.perf_counter()
        with self._autocast():
            raw = self.graph.model(x, with_aux=False)
        if timed and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        network_s, results = time.perf_counter() - t0, {}
        for mode in modes:
            t0 = time.perf_counter()
            with self._autocast():
                class_ids, confidence, scores = self.graph.heads(
                    self.graph.semantic(raw, x.shape[-2:], mode))
            scores = scores.float().cpu().numpy()
            timing = {"network_s": network_s, "postprocess_s": time.perf_counter() - t0}
            results[mode] = InferenceResult(
                class_ids.cpu().numpy(), confidence.float().cpu().numpy(),
                {n: scores[:, i] for i, n in enumerate(self.info.score_names)},
                timing if timed else {})
        return results
