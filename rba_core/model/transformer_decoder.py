"""Masked-attention transformer decoder (Mask2Former) with static shapes.

Queries first predict from the learnable query features alone, then each layer does masked
cross-attention on one level of the pixel decoder (round robin, coarse first), self-attention and
an FFN, and predicts again. The attention mask blocks pixels whose predicted mask probability is
< 0.5; rows that would be fully blocked are unblocked with a static expression (no ``torch.where``
on data) so the graph exports without NonZero/ScatterND.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DecoderConfig
from .position import PositionEmbeddingSine


class MultiheadAttention(nn.Module):
    """Attention with ``nn.MultiheadAttention``'s parameter layout, sequence-first [L, B, C].

    Written out so that a boolean mask becomes an additive bias (exports as plain ops) and the
    state dict keys (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) match detectron2's.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.dim, self.heads = dim, heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = dropout
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, blocked: torch.Tensor | None = None):
        """query [Lq, B, C], key/value [Lk, B, C], blocked [B*heads, Lq, Lk] bool (True = masked)."""
        lq, b, c = query.shape
        lk = key.shape[0]
        h, hd = self.heads, c // self.heads
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        q = F.linear(query, wq, bq).reshape(lq, b * h, hd).transpose(0, 1)  # [B*h, Lq, hd]
        k = F.linear(key, wk, bk).reshape(lk, b * h, hd).transpose(0, 1)
        v = F.linear(value, wv, bv).reshape(lk, b * h, hd).transpose(0, 1)
        attn = torch.bmm(q * (hd ** -0.5), k.transpose(1, 2))  # [B*h, Lq, Lk]
        if blocked is not None:
            attn = attn.masked_fill(blocked, float("-inf"))
        attn = attn.softmax(-1)
        if self.training and self.dropout > 0:
            attn = F.dropout(attn, self.dropout)
        out = torch.bmm(attn, v).transpose(0, 1).reshape(lq, b, c)
        return self.out_proj(out)


class AttentionLayer(nn.Module):
    """Residual attention block (post-norm by default): x = norm(x + attn(x + pos, mem + pos, mem))."""

    def __init__(self, dim: int, heads: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.attn = MultiheadAttention(dim, heads, dropout)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x, query_pos, memory=None, memory_pos=None, blocked=None):
        if self.pre_norm:
            y = self.norm(x)
            if memory is None:
                memory, memory_pos = y, query_pos
            return x + self.dropout(self.attn(y + query_pos, memory + memory_pos, memory, blocked))
        if memory is None:
            memory, memory_pos = x, query_pos
        return self.norm(x + self.dropout(self.attn(x + query_pos, memory + memory_pos, memory,
                                                    blocked)))


class FFNLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x):
        y = self.norm(x) if self.pre_norm else x
        y = self.linear2(self.dropout(F.relu(self.linear1(y))))
        return x + self.dropout(y) if self.pre_norm else self.norm(x + self.dropout(y))


class DecoderLayer(nn.Module):
    """Masked cross-attention -> self-attention -> FFN (Mask2Former order)."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        d = cfg.hidden_dim
        self.cross_attn = AttentionLayer(d, cfg.heads, cfg.dropout, cfg.pre_norm)
        self.self_attn = AttentionLayer(d, cfg.heads, cfg.dropout, cfg.pre_norm)
        self.ffn = FFNLayer(d, cfg.ffn_dim, cfg.dropout, cfg.pre_norm)

    def forward(self, x, query_pos, src, src_pos, blocked):
        x = self.cross_attn(x, query_pos, src, src_pos, blocked)
        x = self.self_attn(x, query_pos)
        return self.ffn(x)


class MLP(nn.Module):
    """``layers`` linear layers with ReLU in between (names ``layers.{i}`` as in Mask2Former)."""

    def __init__(self, din: int, dhidden: int, dout: int, layers: int):
        super().__init__()
        dims = [din] + [dhidden] * (layers - 1) + [dout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskedTransformerDecoder(nn.Module):
    """Queries -> class logits [B, Q, K+1] and mask logits [B, Q, H/4, W/4] per layer."""

    def __init__(self, cfg: DecoderConfig, in_dim: int, mask_dim: int, num_classes: int):
        super().__init__()
        d = cfg.hidden_dim
        self.cfg = cfg
        self.heads = cfg.heads
        self.levels = cfg.levels
        self.pe = PositionEmbeddingSine(d // 2)
        # detectron2 uses a 1x1 conv only when the pixel decoder's width differs from ours
        self.input_proj = nn.ModuleList(
            nn.Conv2d(in_dim, d, 1) if in_dim != d else nn.Identity() for _ in range(cfg.levels))
        for proj in self.input_proj:
            if isinstance(proj, nn.Conv2d):
                nn.init.kaiming_uniform_(proj.weight, a=1)
                nn.init.zeros_(proj.bias)
        self.level_embed = nn.Embedding(cfg.levels, d)
        self.query_feat = nn.Embedding(cfg.num_queries, d)
        self.query_embed = nn.Embedding(cfg.num_queries, d)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.class_embed = nn.Linear(d, num_classes + 1)
        self.mask_embed = MLP(d, d, mask_dim, cfg.mask_embed_layers)

    def predict(self, x: torch.Tensor, mask_features: torch.Tensor, attn_size=None):
        """Heads on queries x [Q, B, C]: (class [B,Q,K+1], masks [B,Q,h,w], blocked or None)."""
        out = self.decoder_norm(x).transpose(0, 1)  # [B, Q, C]
        logits = self.class_embed(out)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(out), mask_features)
        blocked = None
        if attn_size is not None:
            m = F.interpolate(masks, size=attn_size, mode="bilinear", align_corners=False)
            blocked = (m.sigmoid() < 0.5).flatten(2)  # [B, Q, hw]
            blocked = blocked & ~blocked.all(-1, keepdim=True)  # never block a whole row
            b, q, hw = blocked.shape
            blocked = blocked.unsqueeze(1).expand(b, self.heads, q, hw).reshape(b * self.heads, q, hw)
            blocked = blocked.detach()
        return logits, masks, blocked

    def forward(self, features: list[torch.Tensor], mask_features: torch.Tensor,
                with_aux: bool = True) -> dict:
        """features: levels coarse->fine [B, C, h, w] (the first ``levels`` are used);
        mask_features [B, Cm, H/4, W/4]."""
        srcs, poss, sizes = [], [], []
        for i in range(self.levels):
            f = features[i]
            sizes.append((int(f.shape[-2]), int(f.shape[-1])))
            poss.append(self.pe(f).flatten(2).permute(2, 0, 1))  # [hw, 1, C]
            src = self.input_proj[i](f).flatten(2) + self.level_embed.weight[i][None, :, None]
            srcs.append(src.permute(2, 0, 1))  # [hw, B, C]
        b = mask_features.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(1).expand(-1, b, -1)
        x = self.query_feat.weight.unsqueeze(1).expand(-1, b, -1)
        n = len(self.layers)
        logits, masks, blocked = self.predict(x, mask_features, sizes[0] if n else None)
        aux = [{"pred_logits": logits, "pred_masks": masks}]
        for i, layer in enumerate(self.layers):
            lvl = i % self.levels
            x = layer(x, query_pos, srcs[lvl], poss[lvl], blocked)
            nxt = sizes[(i + 1) % self.levels] if i + 1 < n else None
            logits, masks, blocked = self.predict(x, mask_features, nxt)
            aux.append({"pred_logits": logits, "pred_masks": masks})
        out = {"pred_logits": logits, "pred_masks": masks}
        if with_aux:
            out["aux_outputs"] = aux[:-1]
        return out
