"""The inference graph: uint8 images -> class ids, winning-class confidence, anomaly scores.

The same module runs eagerly in the torch backend and is what ``rba export`` traces to ONNX, so
every backend returns the same outputs computed the same way.
"""
from __future__ import annotations

import torch
from torch import nn

from ..model import Mask2Former, padded_size, semantic_inference
from ..scoring import get_score

OUTPUT_NAMES = ("class_ids", "confidence", "scores")


class InferenceGraph(nn.Module):
    """images uint8 [B,3,H,W] -> (class_ids int32 [B,H,W], confidence [B,H,W], scores [B,S,H,W]).

    ``confidence`` is L_k(x) of the winning class k (its mask-weighted class probability);
    ``scores`` stacks the requested anomaly scores in ``score_names`` order (higher = anomalous).
    ``channels_last``: the per-pixel part runs in [B, H, W, K] layout (same numbers; what
    ``rba export`` traces, ONNX Runtime's faster layout); eager torch is faster in [B, K, H, W].
    """

    def __init__(self, model: Mask2Former, score_names: list[str], mode: str = "exact",
                 channels_last: bool = False):
        super().__init__()
        self.model = model
        self.score_names = list(score_names)
        self.score_fns = [get_score(n) for n in self.score_names]
        self.mode = mode
        self.channels_last = channels_last

    def semantic(self, out: dict, size, mode: str | None = None, crop: bool = True
                 ) -> torch.Tensor:
        """The network's raw outputs -> L(x) [B,K,H,W] ([B,H,W,K] channels-last) at ``size``
        (H, W), in ``mode`` (``crop=False``: H' >= H rows, W' >= W columns)."""
        h, w = int(size[0]), int(size[1])
        return semantic_inference(out["pred_logits"], out["pred_masks"], (h, w),
                                  padded_size(h, w, self.model.cfg.size_divisibility),
                                  mode or self.mode, crop=crop, channels_last=self.channels_last)

    def heads(self, sem: torch.Tensor):
        """L(x) [B,K,H,W] ([B,H,W,K] channels-last) -> the three outputs."""
        dim = -1 if self.channels_last else 1
        confidence, class_ids = sem.max(dim=dim)
        scores = torch.stack([fn(sem, dim) for fn in self.score_fns], dim=1)
        return class_ids.to(torch.int32), confidence, scores

    def forward(self, images: torch.Tensor):
        h, w = int(images.shape[-2]), int(images.shape[-1])
        out = self.model(images, with_aux=False)
        class_ids, confidence, scores = self.heads(self.semantic(out, (h, w), crop=False))
        # per-pixel heads commute with the crop: crop 2 + S channels instead of K
        return class_ids[:, :h, :w], confidence[:, :h, :w], scores[:, :, :h, :w]
