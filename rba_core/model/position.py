"""Sine position embedding of Mask2Former (DETR's, normalised to [0, 2*pi]).

The embedding depends only on the feature-map size, so it is computed once per size and cached:
in an exported graph with static shapes it becomes a constant.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def sine_position_embedding(height: int, width: int, num_pos_feats: int,
                            temperature: float = 10000.0, scale: float = 2 * math.pi,
                            device=None) -> torch.Tensor:
    """[1, 2*num_pos_feats, H, W]: (y features, x features), sin/cos interleaved as in DETR."""
    eps = 1e-6
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    y = y / (height + eps) * scale  # cumsum of ones, normalised by the last row (Mask2Former)
    x = x / (width + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_x = x[:, None] / dim_t  # [W, F]
    pos_y = y[:, None] / dim_t  # [H, F]
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
    pos = torch.cat((pos_y[:, None, :].expand(height, width, num_pos_feats),
                     pos_x[None, :, :].expand(height, width, num_pos_feats)), dim=2)
    return pos.permute(2, 0, 1).unsqueeze(0)


class PositionEmbeddingSine(nn.Module):
    """Cached sine embedding for a feature map ``x`` [B, C, H, W] -> [1, 2F, H, W]."""

    def __init__(self, num_pos_feats: int):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self._cache: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (int(x.shape[-2]), int(x.shape[-1]), x.device, x.dtype)
        pos = self._cache.get(key)
        if pos is None:
            pos = sine_position_embedding(key[0], key[1], self.num_pos_feats, device=x.device)
            pos = pos.to(x.dtype)
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[key] = pos
        return pos
