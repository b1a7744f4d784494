"""detectron2's Swin (``D2SwinTransformer`` of Mask2Former), built from timm's Swin pieces.

The released RbA / Mask2Former checkpoints were trained with detectron2's Swin, which differs from
timm's in the shifted-window attention only:

* detectron2 pads each stage to a multiple of the window *before* the cyclic shift and builds the
  shift mask from the padded size; timm shifts first, then pads. Padded tokens (zeros after
  ``norm1``) take part in the attention as keys in detectron2. The two differ whenever a stage's
  size is not a multiple of the window (every stage at 1024x2048 with window 12).
* detectron2 always uses the full window and always shifts; timm shrinks the window / drops the
  shift when a stage is smaller than the window.

Everything else is timm's: ``PatchEmbed`` (right/bottom padding to the patch size), ``PatchMerging``
(same 2x2 order and odd-size padding), ``WindowAttention`` (relative position bias table, the
-100 shift mask), ``Mlp``, ``DropPath`` and the parameter names. Stage layout follows timm: the
patch merging that detectron2 keeps at the *end* of ``layers.{s}`` is ``layers.{s+1}.downsample``
here.
The per-stage output LayerNorms (detectron2's ``norm0..3``) are ``Backbone.out_norms``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.swin_transformer import (PatchMerging, SwinTransformerBlock, window_partition,
                                          window_reverse)
from torch import nn

from ..dataconf import ConfigError
from .config import BackboneConfig


class D2SwinBlock(SwinTransformerBlock):
    """timm's Swin block with detectron2's order in the window attention: pad, then shift."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, **kwargs):
        # always_partition: never shrink the window or drop the shift (detectron2 never does);
        # dynamic_mask: the shift mask depends on the padded input size, built per call.
        super().__init__(dim, input_resolution=(window_size, window_size), num_heads=num_heads,
                         window_size=window_size, shift_size=shift_size, always_partition=True,
                         dynamic_mask=True, **kwargs)

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, H, W, C] (after norm1) -> windowed attention [B, H, W, C]."""
        _, h, w, c = x.shape
        wh, ww = self.window_size
        x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))  # pad first ...
        hp, wp = x.shape[1:3]
        shift = tuple(self.shift_size)
        mask = None
        if any(shift):  # ... then shift, with the mask of the padded size
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
            mask = self.get_attn_mask(x)  # [nW, wh*ww, wh*ww], 0 / -100
        windows = window_partition(x, self.window_size).view(-1, self.window_area, c)
        windows = self.attn(windows, mask=mask)
        x = window_reverse(windows.view(-1, wh, ww, c), self.window_size, hp, wp)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x[:, :h, :w].contiguous()


class D2SwinStage(nn.Module):
    """[patch merging] + blocks, NHWC in and out (timm's stage layout and names)."""

    def __init__(self, dim: int, out_dim: int, depth: int, num_heads: int, window_size: int,
                 downsample: bool, drop_path: list[float], mlp_ratio: float, qkv_bias: bool):
        super().__init__()
        self.downsample = PatchMerging(dim, out_dim) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[
            D2SwinBlock(out_dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                        mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=drop_path[i])
            for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class D2SwinTransformer(nn.Module):
    """Swin backbone numerically equal to detectron2's; returns res2..res5 as NCHW (no out norms).

    Arguments are detectron2's ``MODEL.SWIN`` options (``ape``: absolute position embedding,
    ``pretrain_img_size`` only sizes it). Any input size works (padding as in detectron2).
    """

    def __init__(self, embed_dim: int = 96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                 window_size: int = 7, patch_size: int = 4, pretrain_img_size: int = 224,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, ape: bool = False,
                 patch_norm: bool = True, drop_path_rate: float = 0.2, in_chans: int = 3):
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(f"depths and num_heads need 4 stages, got {list(depths)} and "
                             f"{list(num_heads)}")
        self.patch_embed = PatchEmbed(pretrain_img_size, patch_size, in_chans, embed_dim,
                                      norm_layer=nn.LayerNorm if patch_norm else None,
                                      output_fmt="NHWC", strict_img_size=False,
                                      dynamic_img_pad=True)
        if ape:  # detectron2 layout [1, C, Hp, Wp], resized bicubically to the input
            grid = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid, grid))
            trunc_normal_(self.absolute_pos_embed, std=0.02)
        else:
            self.absolute_pos_embed = None
        n = sum(depths)  # stochastic depth decay (torch.linspace, in Python: meta-device safe)
        dpr = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]
        dims = [embed_dim * 2 ** i for i in range(4)]
        self.layers = nn.ModuleList(
            D2SwinStage(dims[max(i - 1, 0)], dims[i], depths[i], num_heads[i], window_size,
                        downsample=i > 0, drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
                        mlp_ratio=mlp_ratio, qkv_bias=qkv_bias)
            for i in range(4))
        self.num_features = dims

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [B, 3, H, W] -> [res2 .. res5], each [B, C_i, ceil(H / 4 / 2^i), ...]."""
        x = self.patch_embed(x)  # [B, H/4, W/4, C]
        if self.absolute_pos_embed is not None:
            pos = F.interpolate(self.absolute_pos_embed, size=x.shape[1:3], mode="bicubic")
            x = x + pos.permute(0, 2, 3, 1)
        outs = []
        for stage in self.layers:
            x = stage(x)
            outs.append(x.permute(0, 3, 1, 2))
        return outs


def build_d2_swin(cfg: BackboneConfig) -> D2SwinTransformer:
    """``BACKBONES["d2_swin"]``: kwargs are ``MODEL.SWIN`` options in lower case."""
    kwargs = dict(cfg.kwargs)
    kwargs["drop_path_rate"] = cfg.drop_path_rate
    try:
        body = D2SwinTransformer(**kwargs)
    except TypeError as exc:  # unknown or missing keyword
        raise ConfigError("backbone.kwargs", f"d2_swin: {exc}") from None
    except ValueError as exc:
        raise ConfigError("backbone.kwargs", str(exc)) from None
    if list(body.num_features) != list(cfg.channels):
        raise ConfigError("backbone.channels",
                          f"{list(cfg.channels)} does not match d2_swin's stage channels "
                          f"{body.num_features} (embed_dim x 1, 2, 4, 8)")
    return body

