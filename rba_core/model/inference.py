"""Semantic inference: class logits + mask logits -> per-class map L(x) [B, K, H, W] (paper Eq. 2).

``exact`` follows the reference order: upsample the mask *logits* to the padded input size
(bilinear, ``align_corners=False``), sigmoid, ``einsum`` with softmax-minus-void, crop.
``fast`` does the einsum at 1/4 resolution and upsamples the K-channel result instead: Q/K times
less upsampling and memory, an approximation whose AP cost ``rba eval`` measures.

Both modes upsample only the rows and columns that the cropped image needs (``upsample_crop``):
the same numbers as upsampling the whole padded map and cropping, without computing the padding.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

InferenceMode = Literal["exact", "fast"]
MODES = ("exact", "fast")


def class_probs(pred_logits: torch.Tensor) -> torch.Tensor:
    """[B, Q, K+1] -> [B, Q, K]: softmax over all K+1 entries, then drop the no-object column."""
    return pred_logits.softmax(-1)[..., :-1]


def _needed(out_len: int, in_len: int, scale: float) -> int:
    """Input samples that bilinear upsampling (align_corners=False) by ``scale`` reads for its
    first ``out_len`` outputs: output i reads floor(s) and floor(s) + 1, s = (i + .5) / scale - .5."""
    return min(in_len, math.floor((out_len - 0.5) / scale - 0.5) + 2)


def upsample_crop(x: torch.Tensor, image_size: tuple[int, int],
                  padded_size: tuple[int, int]) -> torch.Tensor:
    """x [B, C, h, w] at 1/s of ``padded_size`` -> [B, C, H', W'] whose top-left ``image_size``
    equals ``interpolate(x, padded_size, bilinear)`` there; H' >= H, W' >= W (uncropped rest).

    The input is cut to the rows/columns that the image's pixels read, then upsampled by the same
    scale (same source coordinates and weights), so the padding is never computed.
    """
    (h, w), (ph, pw) = image_size, padded_size
    sh, sw = ph / x.shape[-2], pw / x.shape[-1]
    rows, cols = _needed(h, x.shape[-2], sh), _needed(w, x.shape[-1], sw)
    if (rows, cols) == tuple(x.shape[-2:]) or sh < 1 or sw < 1:
        return F.interpolate(x, size=padded_size, mode="bilinear", align_corners=False)
    return F.interpolate(x[..., :rows, :cols], scale_factor=(sh, sw), mode="bilinear",
                         align_corners=False)


def semantic_inference(pred_logits: torch.Tensor, pred_masks: torch.Tensor,
                       image_size: tuple[int, int], padded_size: tuple[int, int],
                       mode: InferenceMode = "exact", crop: bool = True) -> torch.Tensor:
    """pred_logits [B,Q,K+1], pred_masks [B,Q,h,w] (1/4 of padded) -> sem [B,K,H,W] (cropped).

    ``crop=False`` leaves a few rows/columns beyond H, W (``upsample_crop``) for the caller to
    crop later: per-pixel work after this (scores, argmax) then crops fewer channels.
    """
    h, w = image_size
    probs = class_probs(pred_logits.float()).transpose(1, 2)  # [B, K, Q]
    masks = pred_masks.float()
    if mode == "exact":
        masks = upsample_crop(masks, image_size, padded_size).sigmoid()  # [B, Q, H', W']
        sem = _mix(probs, masks)
    elif mode == "fast":
        sem = upsample_crop(_mix(probs, masks.sigmoid()), image_size, padded_size)
    else:
        raise ValueError(f"inference mode must be one of {MODES}, got {mode!r}")
    return sem[:, :, :h, :w] if crop else sem


def _mix(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """sum_q P_qk M_q: probs [B, K, Q], masks [B, Q, H, W] -> [B, K, H, W] (one MatMul)."""
    b, q, hh, ww = masks.shape
    return torch.matmul(probs, masks.reshape(b, q, hh * ww)).reshape(b, -1, hh, ww)
