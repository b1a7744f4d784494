"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

Sampling uses ``grid_sample`` (bilinear, zero padding, ``align_corners=False`` on ``2*loc-1``),
exactly the reference ``ms_deform_attn_core_pytorch``: no custom CUDA op, exportable to ONNX
(GridSample, opset >= 16) and TensorRT.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn(value: torch.Tensor, shapes: list[tuple[int, int]],
                   locations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Deformable attention core.

    value:     [B, S, M, D]           (S = sum of H*W over levels, M heads, D channels per head)
    locations: [B, Lq, M, L, P, 2]    normalised (x, y) in [0, 1]
    weights:   [B, Lq, M, L, P]       softmax over L*P
    returns    [B, Lq, M*D]
    """
    b, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = locations.shape
    grids = 2 * locations - 1
    sampled = []
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        # [B, h*w, M, D] -> [B*M, D, h, w]
        v = value[:, start:start + h * w].flatten(2).transpose(1, 2).reshape(b * m, d, h, w)
        start += h * w
        # [B, Lq, M, P, 2] -> [B*M, Lq, P, 2]
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))  # [B*M, D, Lq, P]
    # [B, Lq, M, L, P] -> [B*M, 1, Lq, L*P]
    w = weights.transpose(1, 2).reshape(b * m, 1, lq, n_levels * n_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * w).sum(-1)  # [B*M, D, Lq]
    return out.view(b, m * d, lq).transpose(1, 2)


def ms_deform_attn_gather(value: torch.Tensor, shapes: list[tuple[int, int]],
                          reference_points: torch.Tensor, offsets: torch.Tensor,
                          weights: torch.Tensor) -> torch.Tensor:
    """``ms_deform_attn`` on ``reference_points + offsets / (W, H)`` as weighted gathers
    (``F.embedding_bag``, one per level): the same numbers as ``grid_sample``'s bilinear sampling.

    value [B, S, M, D], reference_points [B or 1, Lq, L, 2], offsets [B, Lq, M, L, P, 2] (pixels of
    each level), weights [B, Lq, M, L, P] -> [B, Lq, M*D]. Each (batch, query, head) output sums
    P * 4 value rows per level: the bilinear corners of every point, weighted by attention x
    bilinear weight. Each level's map gets a zero border (1 pixel before, 2 after) and coordinates
    are clamped into it: a corner outside the map reads zeros, as ``grid_sample``'s zero padding.
    Tensors are laid out [level, B, Lq, M*P] so that every elementwise step runs on long rows.
    For eager inference (``MSDeformAttn`` picks it); training and export keep ``grid_sample``
    (TensorRT has no EmbeddingBag).
    """
    b, s, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = offsets.shape
    dev, dt = offsets.device, offsets.dtype
    off = offsets.permute(3, 5, 0, 1, 2, 4).reshape(n_levels, 2, b, lq, m * n_points)
    att = weights.permute(3, 0, 1, 2, 4).reshape(n_levels, b, lq, m * n_points)
    heads = torch.arange(b * m, device=dev, dtype=dt).view(b, 1, m, 1)
    out, start = None, 0
    for lvl, (h, w) in enumerate(shapes):
        # [B, h*w, M, D] -> [B, M, h+3, w+3, D] with a zero border -> rows of one table
        v = value[:, start:start + h * w].view(b, h, w, m, d).permute(0, 3, 1, 2, 4)
        table = F.pad(v, (0, 0, 1, 2, 1, 2)).reshape(-1, d)
        start += h * w
        pitch, rows = w + 3, (h + 3) * (w + 3)
        ref = reference_points[:, :, lvl]  # [B or 1, Lq, 2]
        # loc = ref + off / size, then grid_sample's arithmetic: ((2 loc - 1 + 1) size - 1) / 2
        x = (off[lvl, 0] / w).add_(ref[..., :1]).mul_(2).sub_(1).add_(1).mul_(w).sub_(1).div_(2)
        y = (off[lvl, 1] / h).add_(ref[..., 1:]).mul_(2).sub_(1).add_(1).mul_(h).sub_(1).div_(2)
        x, y = x.clamp_(-1, w), y.clamp_(-1, h)  # outside the map: onto the zero border
        x0, y0 = x.floor(), y.floor()
        fx, fy = x.sub_(x0), y.sub_(y0)
        base = heads.expand(b, 1, m, n_points).reshape(b, 1, -1) * rows + pitch + 1
        first = y0.mul_(pitch).add_(x0).add_(base).long()  # (b, head) table; float exact < 2**24
        corners = torch.tensor([0, 1, pitch, pitch + 1], device=dev)
        idx = first[..., None] + corners  # [B, Lq, M*P, 4]: y0x0, y0x1, y1x0, y1x1
        wy1 = att[lvl] * fy
        wts = (torch.stack((att[lvl] - wy1, wy1), -1)[..., :, None]
               * torch.stack((1 - fx, fx), -1)[..., None, :])  # [B, Lq, M*P, 2, 2]
        part = F.embedding_bag(idx.view(b * lq * m, -1), table,  # bags: (b, query, head)
                               per_sample_weights=wts.view(b * lq * m, -1).to(table.dtype),
                               mode="sum")
        out = part if out is None else out.add_(part)
    return out.view(b, lq, m * d)


def _exporting() -> bool:
    return (torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()
            or torch.jit.is_tracing() or torch.jit.is_scripting())


class MSDeformAttn(nn.Module):
    """Deformable attention module (parameter names as in Deformable DETR / Mask2Former)."""

    def __init__(self, d_model: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, value: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        """query [B, Lq, C], reference_points [B or 1, Lq, L, 2], value [B, S, C] -> [B, Lq, C]."""
        b, lq, _ = query.shape
        m, n_levels, n_points = self.n_heads, self.n_levels, self.n_points
        v = self.value_proj(value).view(b, value.shape[1], m, self.d_model // m)
        offsets = self.sampling_offsets(query).view(b, lq, m, n_levels, n_points, 2)
        weights = self.attention_weights(query).view(b, lq, m, n_levels * n_points)
        weights = weights.softmax(-1).view(b, lq, m, n_levels, n_points)
        if not (torch.is_grad_enabled() or _exporting()):  # eager inference: gathers
            return self.output_proj(ms_deform_attn_gather(v, shapes, reference_points, offsets,
                                                          weights))
        # offsets are in pixels of each level: normalise by (W, H)
        normalizer = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype,
                                  device=query.device)
        locations = (reference_points[:, :, None, :, None, :]
                     + offsets / normalizer[None, None, None, :, None, :])
        return self.output_proj(ms_deform_attn(v, shapes, locations, weights))
