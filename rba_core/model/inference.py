"""Semantic inference: class logits + mask logits -> per-class map L(x) [B, K, H, W] (paper Eq. 2).

``exact`` follows the reference order: upsample the mask *logits* to the padded input size
(bilinear, ``align_corners=False``), sigmoid, ``einsum`` with softmax-minus-void, crop.
``fast`` does the einsum at 1/4 resolution and upsamples the K-channel result instead: Q/K times
less upsampling and memory, an approximation whose AP cost ``rba eval`` measures.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

InferenceMode = Literal["exact", "fast"]
MODES = ("exact", "fast")


def class_probs(pred_logits: torch.Tensor) -> torch.Tensor:
    """[B, Q, K+1] -> [B, Q, K]: softmax over all K+1 entries, then drop the no-object column."""
    return pred_logits.softmax(-1)[..., :-1]


def semantic_inference(pred_logits: torch.Tensor, pred_masks: torch.Tensor,
                       image_size: tuple[int, int], padded_size: tuple[int, int],
                       mode: InferenceMode = "exact") -> torch.Tensor:
    """pred_logits [B,Q,K+1], pred_masks [B,Q,h,w] (1/4 of padded) -> sem [B,K,H,W] (cropped)."""
    h, w = image_size
    probs = class_probs(pred_logits.float())
    masks = pred_masks.float()
    if mode == "exact":
        masks = F.interpolate(masks, size=padded_size, mode="bilinear", align_corners=False)
        masks = masks[:, :, :h, :w].sigmoid()
        return torch.einsum("bqc,bqhw->bchw", probs, masks)
    if mode == "fast":
        sem = torch.einsum("bqc,bqhw->bchw", probs, masks.sigmoid())
        sem = F.interpolate(sem, size=padded_size, mode="bilinear", align_corners=False)
        return sem[:, :, :h, :w]
    raise ValueError(f"inference mode must be one of {MODES}, got {mode!r}")
