"""Eager PyTorch backend (CPU or CUDA): any input size, the reference for the other backends."""
from __future__ import annotations

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

    @torch.inference_mode()
    def infer(self, images: np.ndarray) -> InferenceResult:
        images = check_images(images, self.info)
        x = torch.from_numpy(images).to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.fp16):
            class_ids, confidence, scores = self.graph(x)
        scores = scores.float().cpu().contiguous().numpy()
        return InferenceResult(class_ids.cpu().contiguous().numpy(),
                               confidence.float().cpu().contiguous().numpy(),
                               {n: scores[:, i] for i, n in enumerate(self.info.score_names)})
