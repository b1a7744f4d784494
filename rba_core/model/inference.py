"""Semantic inference: class logits + mask logits -> per-class map L(x) [B, K, H, W] (paper Eq. 2).

``exact`` follows the reference order: upsample the mask *logits* to the padded input size
(bilinear, ``align_corners=False``), sigmoid, ``einsum`` with softmax-minus-void, crop.
``fast`` does the einsum at 1/4 resolution and upsamples the K-channel result instead: Q/K times
less upsampling and memory, an approximation whose AP cost ``rba eval`` measures.

Both modes upsample only the rows and columns that the cropped image needs (``upsample_crop``):
the same numbers as upsampling the whole padded map and cropping, without computing the padding.

``channels_last`` computes the same numbers in [B, H, W, C] layout (what ``rba export`` traces):
ONNX Runtime's CPU Resize is about twice as fast on [1, h, w, Q] as on [1, Q, h, w], the mixing
becomes a plain [H*W, Q] x [Q, K] MatMul, and the per-pixel heads reduce over contiguous memory.
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


def resize(x: torch.Tensor, size: tuple[int, int] | None = None,
           scale: tuple[float, float] | None = None, channels_last: bool = False) -> torch.Tensor:
    """Bilinear (``align_corners=False``) to ``size`` or by ``scale``: x [B, C, h, w], or
    [B, h, w, C] with ``channels_last`` (exported as one ONNX Resize over dims 1, 2; TensorRT's
    linear resize takes the innermost three dims, the third with scale 1)."""
    if not channels_last:
        return F.interpolate(x, size=size, scale_factor=scale, mode="bilinear",
                             align_corners=False)
    if not torch.onnx.is_in_onnx_export():
        return resize(x.permute(0, 3, 1, 2), size, scale).permute(0, 2, 3, 1)
    b, h, w, c = x.shape
    if size is not None:  # sizes given: ONNX and torch both map with in/out ratios
        inputs = (x, None, None, torch.tensor([b, size[0], size[1], c], dtype=torch.int64))
        out = (b, size[0], size[1], c)
    else:
        inputs = (x, None, torch.tensor([1.0, scale[0], scale[1], 1.0]))
        out = (b, math.floor(h * scale[0]), math.floor(w * scale[1]), c)
    return torch.onnx.ops.symbolic(
        "Resize", inputs, {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
        dtype=x.dtype, shape=out)


def upsample_crop(x: torch.Tensor, image_size: tuple[int, int],
                  padded_size: tuple[int, int], channels_last: bool = False) -> torch.Tensor:
    """x [B, C, h, w] at 1/s of ``padded_size`` -> [B, C, H', W'] whose top-left ``image_size``
    equals ``interpolate(x, padded_size, bilinear)`` there; H' >= H, W' >= W (uncropped rest).
    ``channels_last``: [B, h, w, C] -> [B, H', W', C].

    The input is cut to the rows/columns that the image's pixels read, then upsampled by the same
    scale (same source coordinates and weights), so the padding is never computed.
    """
    (h, w), (ph, pw) = image_size, padded_size
    hw = x.shape[1:3] if channels_last else x.shape[-2:]
    sh, sw = ph / hw[0], pw / hw[1]
    rows, cols = _needed(h, hw[0], sh), _needed(w, hw[1], sw)
    if (rows, cols) == tuple(hw) or sh < 1 or sw < 1:
        return resize(x, size=padded_size, channels_last=channels_last)
    x = x[:, :rows, :cols] if channels_last else x[..., :rows, :cols]
    return resize(x, scale=(sh, sw), channels_last=channels_last)


def semantic_inference(pred_logits: torch.Tensor, pred_masks: torch.Tensor,
                       image_size: tuple[int, int], padded_size: tuple[int, int],
                       mode: InferenceMode = "exact", crop: bool = True,
                       channels_last: bool = False) -> torch.Tensor:
    """pred_logits [B,Q,K+1], pred_masks [B,Q,h,w] (1/4 of padded) -> sem [B,K,H,W] (cropped;
    [B,H,W,K] with ``channels_last``).

    ``crop=False`` leaves a few rows/columns beyond H, W (``upsample_crop``) for the caller to
    crop later: per-pixel work after this (scores, argmax) then crops fewer channels.
    """
    if mode not in MODES:
        raise ValueError(f"inference mode must be one of {MODES}, got {mode!r}")
    h, w = image_size
    if channels_last:
        probs = class_probs(pred_logits.float())[:, None]      # [B, 1, Q, K]
        masks = pred_masks.float().permute(0, 2, 3, 1)         # [B, h, w, Q]
        if mode == "exact":  # [B, H', W', Q] @ [B, 1, Q, K] -> [B, H', W', K]
            sem = upsample_crop(masks, image_size, padded_size, True).sigmoid() @ probs
        else:
            sem = upsample_crop(masks.sigmoid() @ probs, image_size, padded_size, True)
        return sem[:, :h, :w] if crop else sem
    probs = class_probs(pred_logits.float()).transpose(1, 2)  # [B, K, Q]
    masks = pred_masks.float()
    if mode == "exact":
        masks = upsample_crop(masks, image_size, padded_size).sigmoid()  # [B, Q, H', W']
        sem = _mix(probs, masks)
    else:
        sem = upsample_crop(_mix(probs, masks.sigmoid()), image_size, padded_size)
    return sem[:, :, :h, :w] if crop else sem


def _mix(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """sum_q P_qk M_q: probs [B, K, Q], masks [B, Q, H, W] -> [B, K, H, W] (one MatMul)."""
    b, q, hh, ww = masks.shape
    return torch.matmul(probs, masks.reshape(b, q, hh * ww)).reshape(b, -1, hh, ww)
