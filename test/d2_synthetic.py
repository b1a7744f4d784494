"""Synthetic detectron2 state dicts with the key names and shapes of Mask2Former / RbA checkpoints.

Written from detectron2's module structure (Mask2Former's ``swin.py``, ``msdeformattn.py``,
``mask2former_transformer_decoder.py`` and the RbA variant where the decoder attends as many levels
as the deformable encoder), independently of rba_core. ``device="meta"`` gives full-size key sets
without allocating weights.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

PD, PR = "sem_seg_head.pixel_decoder.", "sem_seg_head.predictor."


@dataclass
class D2Arch:
    """detectron2 config values (MODEL.SWIN / SEM_SEG_HEAD / MASK_FORMER)."""
    embed: int = 128
    depths: tuple = (2, 2, 18, 2)
    heads: tuple = (4, 8, 16, 32)
    window: int = 12
    patch: int = 4
    convs_dim: int = 256  # SEM_SEG_HEAD.CONVS_DIM
    mask_dim: int = 256
    enc_layers: int = 6  # TRANSFORMER_ENC_LAYERS
    enc_heads: int = 8
    enc_points: int = 4
    enc_ffn: int = 1024  # hard-coded in MSDeformAttnPixelDecoder.from_config
    enc_in: tuple = ("res5",)  # DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES
    hidden: int = 256
    dec_layers: int = 2  # MASK_FORMER.DEC_LAYERS (masked-attention layers + 1)
    nheads: int = 8
    dim_ff: int = 2048
    queries: int = 100
    classes: int = 19
    rba_decoder_levels: bool = True  # RbA: decoder levels = len(enc_in); stock Mask2Former: 3


SWIN_B_1DL = D2Arch()
SWIN_L_1DL = D2Arch(embed=192, heads=(6, 12, 24, 48))
M2F_SWIN_B_CITYSCAPES = D2Arch(enc_in=("res3", "res4", "res5"), dec_layers=10,
                               rba_decoder_levels=False)
# the released structure at CPU size (heads as released: 8 in the pixel decoder and decoder)
TINY_1DL = D2Arch(embed=16, depths=(2, 2, 2, 2), heads=(1, 2, 2, 4), window=7, convs_dim=64,
                  mask_dim=32, enc_layers=2, enc_heads=8, enc_points=2, enc_ffn=48, hidden=64,
                  nheads=8, dim_ff=96, queries=12)


def d2_state_dict(a: D2Arch, device: str = "cpu", seed: int = 0) -> OrderedDict:
    """detectron2 ``model`` state dict of architecture ``a`` (random O(1) weights, or meta)."""
    g = torch.Generator().manual_seed(seed)
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()

    def add(name, *shape, kind="w"):
        if device == "meta":
            sd[name] = torch.empty(shape, device="meta")
            return
        t = torch.randn(shape, generator=g)
        if kind == "norm":  # LayerNorm / GroupNorm weight
            t = 1 + 0.2 * t
        elif kind == "b":
            t = 0.2 * t
        elif len(shape) > 1:
            t = t / (torch.tensor(shape[1:]).prod().float().sqrt())
        sd[name] = t

    def linear(name, out, inp, bias=True):
        add(f"{name}.weight", out, inp)
        if bias:
            add(f"{name}.bias", out, kind="b")

    def norm(name, dim):
        add(f"{name}.weight", dim, kind="norm")
        add(f"{name}.bias", dim, kind="b")

    # backbone: D2SwinTransformer
    add("backbone.patch_embed.proj.weight", a.embed, 3, a.patch, a.patch)
    add("backbone.patch_embed.proj.bias", a.embed, kind="b")
    norm("backbone.patch_embed.norm", a.embed)
    dims = [a.embed * 2 ** i for i in range(4)]
    w = a.window
    for s, dim in enumerate(dims):
        for i in range(a.depths[s]):
            p = f"backbone.layers.{s}.blocks.{i}."
            norm(p + "norm1", dim)
            add(p + "attn.relative_position_bias_table", (2 * w - 1) ** 2, a.heads[s])
            sd[p + "attn.relative_position_index"] = torch.zeros(w * w, w * w, dtype=torch.long,
                                                                 device=device)
            linear(p + "attn.qkv", 3 * dim, dim)
            linear(p + "attn.proj", dim, dim)
            norm(p + "norm2", dim)
            linear(p + "mlp.fc1", 4 * dim, dim)
            linear(p + "mlp.fc2", dim, 4 * dim)
        if s < 3:
            linear(f"backbone.layers.{s}.downsample.reduction", 2 * dim, 4 * dim, bias=False)
            norm(f"backbone.layers.{s}.downsample.norm", 4 * dim)
        norm(f"backbone.norm{s}", dim)

    # pixel decoder: MSDeformAttnPixelDecoder
    c = a.convs_dim
    res = {"res2": dims[0], "res3": dims[1], "res4": dims[2], "res5": dims[3]}
    levels = len(a.enc_in)
    for i, f in enumerate(reversed(a.enc_in)):  # coarse -> fine
        add(f"{PD}input_proj.{i}.0.weight", c, res[f], 1, 1)
        add(f"{PD}input_proj.{i}.0.bias", c, kind="b")
        norm(f"{PD}input_proj.{i}.1", c)
    add(PD + "transformer.level_embed", levels, c)
    for i in range(a.enc_layers):
        p = f"{PD}transformer.encoder.layers.{i}."
        linear(p + "self_attn.sampling_offsets", a.enc_heads * levels * a.enc_points * 2, c)
        linear(p + "self_attn.attention_weights", a.enc_heads * levels * a.enc_points, c)
        linear(p + "self_attn.value_proj", c, c)
        linear(p + "self_attn.output_proj", c, c)
        norm(p + "norm1", c)
        linear(p + "linear1", a.enc_ffn, c)
        linear(p + "linear2", c, a.enc_ffn)
        norm(p + "norm2", c)
    stride = {"res3": 8, "res4": 16, "res5": 32}[a.enc_in[0]]
    n_fpn = {8: 1, 16: 2, 32: 3}[stride]  # log2(stride) - log2(common_stride 4)
    for idx, f in enumerate(["res2", "res3", "res4"][:n_fpn]):
        add(f"{PD}adapter_{idx + 1}.weight", c, res[f], 1, 1)  # Conv2d(bias=False, norm=GN)
        norm(f"{PD}adapter_{idx + 1}.norm", c)
        add(f"{PD}layer_{idx + 1}.weight", c, c, 3, 3)
        norm(f"{PD}layer_{idx + 1}.norm", c)
    add(PD + "mask_features.weight", a.mask_dim, c, 1, 1)
    add(PD + "mask_features.bias", a.mask_dim, kind="b")

    # predictor: MultiScaleMaskedTransformerDecoder
    h = a.hidden
    for i in range(a.dec_layers - 1):
        for kind, attn in (("self", "self_attn"), ("cross", "multihead_attn")):
            p = f"{PR}transformer_{kind}_attention_layers.{i}."
            add(p + f"{attn}.in_proj_weight", 3 * h, h)
            add(p + f"{attn}.in_proj_bias", 3 * h, kind="b")
            linear(p + f"{attn}.out_proj", h, h)
            norm(p + "norm", h)
        p = f"{PR}transformer_ffn_layers.{i}."
        linear(p + "linear1", a.dim_ff, h)
        linear(p + "linear2", h, a.dim_ff)
        norm(p + "norm", h)
    norm(PR + "decoder_norm", h)
    add(PR + "query_feat.weight", a.queries, h)
    add(PR + "query_embed.weight", a.queries, h)
    add(PR + "level_embed.weight", levels if a.rba_decoder_levels else 3, h)
    if c != h:
        for i in range(levels if a.rba_decoder_levels else 3):
            add(f"{PR}input_proj.{i}.weight", h, c, 1, 1)  # detectron2 Conv2d 1x1
            add(f"{PR}input_proj.{i}.bias", h, kind="b")
    linear(PR + "class_embed", a.classes + 1, h)
    for j, (o, i) in enumerate([(h, h), (h, h), (a.mask_dim, h)]):
        linear(f"{PR}mask_embed.layers.{j}", o, i)
    sd["criterion.empty_weight"] = torch.ones(a.classes + 1, device=device)
    return sd
