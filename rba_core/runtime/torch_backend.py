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
        self.graph = InferenceGraph(model.eval().to(self.device), score_names, mode).eval()
        cfg = model.cfg
        self.info = ModelInfo(list(cfg.class_names), [list(c) for c in cfg.colors],
                              list(score_names), mode, config=cfg.to_dict())

    def _input(self, images: np.ndarray) -> torch.Tensor:
        images = check_images(images, self.info)
        return torch.from_numpy(images).to(self.device, non_blocking=True)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.fp16)

    def _result(self, class_ids, confidence, scores) -> InferenceResult:
        scores = scores.float().cpu().numpy()
        return InferenceResult(class_ids.cpu().numpy(), confidence.float().cpu().numpy(),
                               {n: scores[:, i] for i, n in enumerate(self.info.score_names)})

    @torch.inference_mode()
    def infer(self, images: np.ndarray) -> InferenceResult:
        with self._autocast():
            outputs = self.graph(self._input(images))
        return self._result(*outputs)

    @torch.inference_mode()
    def infer_modes(self, images: np.ndarray, modes: list[str]) -> dict[str, InferenceResult]:
        """One network pass; each inference mode post-processes the same raw outputs (timed)."""
        x = self._input(images)
        t0 = time.perf_counter()
        with self._autocast():
            raw = self.graph.model(x, with_aux=False)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        network_s = time.perf_counter() - t0
        results = {}
        for mode in modes:
            t0 = time.perf_counter()
            with self._autocast():
                outputs = self.graph.heads(self.graph.to_semantic(raw, x.shape[-2:], mode))
            results[mode] = self._result(*outputs)
            results[mode].timing = {"network_s": network_s,
                                    "postprocess_s": time.perf_counter() - t0}
        return results
