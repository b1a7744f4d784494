"""MSDeformAttn pixel decoder (Mask2Former), with 1 (RbA release) or 3 encoder levels.

res5 (and res4, res3 with 3 levels) -> 1x1 conv + GN -> deformable encoder (post-norm layers)
-> FPN top-down over the remaining finer levels down to res2 -> 1x1 conv = mask features (1/4).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .config import PixelDecoderConfig
from .msdeform import MSDeformAttn
from .position import PositionEmbeddingSine


class ConvNorm(nn.Sequential):
    """Conv2d (+ GroupNorm) (+ ReLU); names ``conv``/``norm`` for readable state dicts."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int, bias: bool, relu: bool):
        layers = [("conv", nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)),
                  ("norm", nn.GroupNorm(groups, cout))]
        if relu:
            layers.append(("relu", nn.ReLU(inplace=True)))
        super().__init__(OrderedDict(layers))
        nn.init.kaiming_uniform_(self.conv.weight, a=1)  # detectron2 c2_xavier_fill
        if bias:
            nn.init.zeros_(self.conv.bias)


class DeformEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention, then FFN."""

    def __init__(self, cfg: PixelDecoderConfig):
        super().__init__()
        d = cfg.conv_dim
        self.self_attn = MSDeformAttn(d, cfg.encoder_levels, cfg.encoder_heads, cfg.encoder_points)
        self.norm1 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, cfg.encoder_ffn_dim)
        self.linear2 = nn.Linear(cfg.encoder_ffn_dim, d)
        self.norm2 = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, src, pos, reference_points, shapes):
        src = self.norm1(src + self.dropout(self.self_attn(src + pos, reference_points, src, shapes)))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout(ffn))


class DeformEncoder(nn.Module):
    """Encoder over the flattened levels; ``level_embed`` is added to the position embedding."""

    def __init__(self, cfg: PixelDecoderConfig):
        super().__init__()
        self.level_embed = nn.Parameter(torch.empty(cfg.encoder_levels, cfg.conv_dim))
        self.layers = nn.ModuleList(DeformEncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        for p in self.layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def reference_points(shapes, device, dtype) -> torch.Tensor:
        """[1, S, L, 2] pixel-centre reference points (x, y) in [0, 1] (no padding masks)."""
        refs = []
        for h, w in shapes:
            ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
            xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
            ref = torch.stack((xs[None, :].expand(h, w), ys[:, None].expand(h, w)), -1)
            refs.append(ref.reshape(-1, 2))
        ref = torch.cat(refs, 0)[None, :, None, :].expand(1, -1, len(shapes), 2)
        return ref.to(dtype)

    def forward(self, srcs: list[torch.Tensor], pos: list[torch.Tensor]) -> torch.Tensor:
        """srcs/pos: per level [B, C, H, W] (coarse to fine) -> memory [B, S, C]."""
        shapes = [(int(s.shape[-2]), int(s.shape[-1])) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        lvl_pos = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[i].view(1, 1, -1)
                             for i, p in enumerate(pos)], 1)
        ref = self.reference_points(shapes, src.device, src.dtype)
        for layer in self.layers:
            src = layer(src, lvl_pos, ref, shapes)
        return src


class PixelDecoder(nn.Module):
    """Returns (mask_features [B, mask_dim, H/4, W/4], multi-scale features coarse->fine (3))."""

    def __init__(self, cfg: PixelDecoderConfig, in_channels: list[int]):
        super().__init__()
        self.cfg = cfg
        d, g = cfg.conv_dim, cfg.norm_groups
        n_enc = cfg.encoder_levels
        self.encoder_features = ["res5", "res4", "res3"][:n_enc]  # coarse -> fine
        enc_channels = {"res3": in_channels[1], "res4": in_channels[2], "res5": in_channels[3]}
        self.input_proj = nn.ModuleList(nn.Sequential(OrderedDict(
            conv=nn.Conv2d(enc_channels[f], d, 1), norm=nn.GroupNorm(g, d)))
            for f in self.encoder_features)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj.conv.weight, gain=1)
            nn.init.zeros_(proj.conv.bias)
        self.pe = PositionEmbeddingSine(d // 2)
        self.encoder = DeformEncoder(cfg)
        # FPN on the levels finer than the encoder's: res2 (+ res3, res4 with one level)
        self.fpn_features = ["res2", "res3", "res4"][:4 - n_enc]  # fine -> coarse
        self.adapters = nn.ModuleList(ConvNorm(in_channels[i], d, 1, g, bias=False, relu=False)
                                      for i in range(len(self.fpn_features)))
        self.layers = nn.ModuleList(ConvNorm(d, d, 3, g, bias=False, relu=True)
                                    for _ in self.fpn_features)
        self.mask_features = nn.Conv2d(d, cfg.mask_dim, 1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)

    def forward(self, features: dict[str, torch.Tensor]):
        device_type = features["res5"].device.type
        with torch.autocast(device_type, enabled=False):  # kept in fp32, as in the reference
            return self._forward(features)

    def _forward(self, features: dict[str, torch.Tensor]):
        srcs = [proj(features[f].float()) for proj, f in zip(self.input_proj, self.encoder_features)]
        pos = [self.pe(s) for s in srcs]
        memory = self.encoder(srcs, pos)  # [B, S, C]
        b = memory.shape[0]
        outs, start = [], 0
        for s in srcs:
            h, w = s.shape[-2:]
            outs.append(memory[:, start:start + h * w].transpose(1, 2).reshape(b, -1, h, w))
            start += h * w
        for idx in reversed(range(len(self.fpn_features))):  # top-down: coarse -> fine
            x = self.adapters[idx](features[self.fpn_features[idx]].float())
            x = x + F.interpolate(outs[-1], size=x.shape[-2:], mode="bilinear", align_corners=False)
            outs.append(self.layers[idx](x))
        return self.mask_features(outs[-1]), outs[:3]
