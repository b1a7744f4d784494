"""Import detectron2 checkpoints of Mask2Former / RbA (Swin backbone) into our model, strictly.

Every key of the detectron2 state dict is either mapped by one rule below, or known to be unused
at inference and dropped (``criterion.empty_weight``, ``relative_position_index`` / ``attn_mask``
buffers; ``pixel_mean`` / ``pixel_std`` are checked against the config), or it is an error. After
mapping, the result must match our model's keys and shapes exactly; all offending keys are
reported at once in a :class:`ConversionError`.

=============================================  =============================================
detectron2                                     ours
=============================================  =============================================
backbone.patch_embed / absolute_pos_embed      backbone.body.patch_embed / absolute_pos_embed
backbone.layers.{s}.blocks.{i}.*               backbone.body.layers.{s}.blocks.{i}.*
backbone.layers.{s}.downsample.*               backbone.body.layers.{s+1}.downsample.* (timm)
backbone.norm{i}                               backbone.out_norms.{i}
pixel_decoder.input_proj.{l}.{0,1}             pixel_decoder.input_proj.{l}.{conv,norm}
pixel_decoder.transformer.level_embed          pixel_decoder.encoder.level_embed
pixel_decoder.transformer.encoder.layers.{i}   pixel_decoder.encoder.layers.{i}
pixel_decoder.adapter_{k}[.norm]               pixel_decoder.adapters.{k-1}.{conv,norm}
pixel_decoder.layer_{k}[.norm]                 pixel_decoder.layers.{k-1}.{conv,norm}
pixel_decoder.mask_features                    pixel_decoder.mask_features
predictor.transformer_cross_attention_layers   decoder.layers.{i}.cross_attn.{attn,norm}
  .{i}.{multihead_attn,norm}
predictor.transformer_self_attention_layers    decoder.layers.{i}.self_attn.{attn,norm}
  .{i}.{self_attn,norm}
predictor.transformer_ffn_layers.{i}           decoder.layers.{i}.ffn
predictor.{query_feat,query_embed,level_embed, decoder.{same}
  decoder_norm,class_embed,mask_embed,input_proj}
=============================================  =============================================

(``pixel_decoder`` / ``predictor`` are under ``sem_seg_head.``.) The RbA release runs its decoder on
one level (``predictor.level_embed`` [1, C]): ``decoder.levels`` is read from that shape.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..dataconf import ConfigError
from ..model import ModelConfig, build_model
from ..model.config import merge
from .io import CheckpointError
from .safe_pickle import load_pickle

log = logging.getLogger(__name__)

D2_PD, D2_PR = "sem_seg_head.pixel_decoder.", "sem_seg_head.predictor."
PD, PR = re.escape(D2_PD), re.escape(D2_PR)
_WB = r"(weight|bias)"


def _shift(offset: int, template: str) -> Callable[[re.Match], str]:
    """Replacement that renumbers group 1 by ``offset`` (detectron2 -> our indexing)."""
    return lambda m: template.format(int(m[1]) + offset, *m.groups()[1:])


# (detectron2 key regex, our key: template for Match.expand or a function of the match)
_RULES = [
    # Swin backbone
    (r"backbone\.patch_embed\.(proj|norm)\." + _WB, r"backbone.body.patch_embed.\1.\2"),
    (r"backbone\.absolute_pos_embed", "backbone.body.absolute_pos_embed"),
    (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1"
     r"|mlp\.fc2)\." + _WB, r"backbone.body.layers.\1.blocks.\2.\3.\4"),
    (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table",
     r"backbone.body.layers.\1.blocks.\2.attn.relative_position_bias_table"),
    (r"backbone\.layers\.(\d+)\.downsample\.(norm\.weight|norm\.bias|reduction\.weight)",
     _shift(1, "backbone.body.layers.{}.downsample.{}")),
    (r"backbone\.norm(\d+)\." + _WB, r"backbone.out_norms.\1.\2"),
    # pixel decoder (MSDeformAttnPixelDecoder)
    (PD + r"input_proj\.(\d+)\.0\." + _WB, r"pixel_decoder.input_proj.\1.conv.\2"),
    (PD + r"input_proj\.(\d+)\.1\." + _WB, r"pixel_decoder.input_proj.\1.norm.\2"),
    (PD + r"transformer\.level_embed", "pixel_decoder.encoder.level_embed"),
    (PD + r"transformer\.encoder\.layers\.(\d+)\.(self_attn\.(?:sampling_offsets|attention_weights"
     r"|value_proj|output_proj)|norm1|norm2|linear1|linear2)\." + _WB,
     r"pixel_decoder.encoder.layers.\1.\2.\3"),
    (PD + r"adapter_(\d+)\.weight", _shift(-1, "pixel_decoder.adapters.{}.conv.weight")),
    (PD + r"adapter_(\d+)\.norm\." + _WB, _shift(-1, "pixel_decoder.adapters.{}.norm.{}")),
    (PD + r"layer_(\d+)\.weight", _shift(-1, "pixel_decoder.layers.{}.conv.weight")),
    (PD + r"layer_(\d+)\.norm\." + _WB, _shift(-1, "pixel_decoder.layers.{}.norm.{}")),
    (PD + r"mask_features\." + _WB, r"pixel_decoder.mask_features.\1"),
    # transformer decoder (MultiScaleMaskedTransformerDecoder)
    (PR + r"transformer_cross_attention_layers\.(\d+)\.multihead_attn\.(in_proj_weight|in_proj_bias"
     r"|out_proj\.weight|out_proj\.bias)", r"decoder.layers.\1.cross_attn.attn.\2"),
    (PR + r"transformer_cross_attention_layers\.(\d+)\.norm\." + _WB,
     r"decoder.layers.\1.cross_attn.norm.\2"),
    (PR + r"transformer_self_attention_layers\.(\d+)\.self_attn\.(in_proj_weight|in_proj_bias"
     r"|out_proj\.weight|out_proj\.bias)", r"decoder.layers.\1.self_attn.attn.\2"),
    (PR + r"transformer_self_attention_layers\.(\d+)\.norm\." + _WB,
     r"decoder.layers.\1.self_attn.norm.\2"),
    (PR + r"transformer_ffn_layers\.(\d+)\.(linear1|linear2|norm)\." + _WB,
     r"decoder.layers.\1.ffn.\2.\3"),
    (PR + r"(query_feat|query_embed|level_embed)\.weight", r"decoder.\1.weight"),
    (PR + r"(decoder_norm|class_embed)\." + _WB, r"decoder.\1.\2"),
    (PR + r"mask_embed\.layers\.(\d+)\." + _WB, r"decoder.mask_embed.layers.\1.\2"),
    (PR + r"input_proj\.(\d+)\." + _WB, r"decoder.input_proj.\1.\2"),
]
RULES: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    (re.compile(p), r) for p, r in _RULES]

# saved by detectron2 but not used at inference (loss weights, derived buffers)
DROPPED = [re.compile(p) for p in (r"criterion\.empty_weight", r".*\.relative_position_index",
                                   r".*\.attn_mask")]
NORMALISATION = ("pixel_mean", "pixel_std")  # non-persistent in Mask2Former; checked if present


class ConversionError(CheckpointError):
    """A detectron2 checkpoint does not map onto the architecture (keys or shapes)."""


def map_key(key: str) -> str | None:
    """Our name for a detectron2 key (None: no rule matches)."""
    for pattern, repl in RULES:
        m = pattern.fullmatch(key)
        if m:
            return m.expand(repl) if isinstance(repl, str) else repl(m)
    return None


def dropped_keys(state_dict: dict[str, Any]) -> list[str]:
    """The keys ``convert_detectron2`` discards (unused at inference)."""
    return [k for k in state_dict
            if k in NORMALISATION or any(p.fullmatch(k) for p in DROPPED)]


def _as_tensor(key: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        return torch.from_numpy(np.ascontiguousarray(value))
    raise ConversionError(f"{key}: expected a tensor or numeric array, got {type(value).__name__}"
                          + (f" of dtype {value.dtype}" if isinstance(value, np.ndarray) else ""))


def _listing(title: str, items: list[str], limit: int = 25) -> str:
    shown = items[:limit] + ([f"... and {len(items) - limit} more"] if len(items) > limit else [])
    return f"{len(items)} {title}:\n  " + "\n  ".join(shown)


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Our state dict's keys and shapes for ``config``, without allocating the weights."""
    with torch.device("meta"):
        model = build_model(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert_detectron2(state_dict: dict[str, Any], config: ModelConfig) -> dict[str, torch.Tensor]:
    """detectron2 ``model`` state dict (tensors or numpy arrays) -> our state dict for ``config``.

    Raises :class:`ConversionError` listing every unmapped, missing and mis-shaped key.
    """
    expected = expected_shapes(config)
    out: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}  # ours -> detectron2
    unmapped, problems = [], []
    for key, value in state_dict.items():
        if key in NORMALISATION:
            want = torch.tensor(getattr(config, key), dtype=torch.float64)
            got = _as_tensor(key, value).double().flatten()
            if got.shape != want.shape or not torch.allclose(got, want, atol=1e-3):
                problems.append(f"{key} is {got.tolist()}, the config has {want.tolist()}")
            continue
        if any(p.fullmatch(key) for p in DROPPED):
            continue
        ours = map_key(key)
        if ours is None:
            unmapped.append(key)
            continue
        if ours in source:
            problems.append(f"{key} and {source[ours]} both map to {ours}")
        tensor = _as_tensor(key, value)
        out[ours], source[ours] = (tensor.float() if tensor.is_floating_point() else tensor), key
    missing = sorted(set(expected) - set(out))
    unexpected = sorted(f"{source[k]} -> {k}" for k in set(out) - set(expected))
    shapes = sorted(f"{source[k]} -> {k}: checkpoint {tuple(v.shape)} vs model {expected[k]}"
                    for k, v in out.items() if k in expected and tuple(v.shape) != expected[k])
    if unmapped or missing or unexpected or shapes or problems:
        parts = [_listing(t, items) for t, items in (
            ("unmapped detectron2 key(s)", unmapped), ("missing key(s)", missing),
            ("key(s) the architecture does not have", unexpected), ("mis-shaped key(s)", shapes),
            ("other problem(s)", problems)) if items]
        hint = ("" if not (missing or unexpected or shapes) else
                "\n(check the preset against the checkpoint: infer_config_from_keys reads the "
                "architecture from the keys)")
        raise ConversionError(f"detectron2 checkpoint does not match model {config.name!r}:\n"
                              + "\n".join(parts) + hint)
    return {k: v.contiguous() for k, v in out.items()}


def _count(keys, pattern: str) -> int:
    """1 + the largest index captured by ``pattern`` among ``keys`` (0 when none)."""
    idx = [int(m[1]) for k in keys if (m := re.fullmatch(pattern, k))]
    return max(idx) + 1 if idx else 0


_SWIN_DEFAULTS = {"mlp_ratio": 4.0, "qkv_bias": True, "patch_norm": True, "ape": False}


def _swin_from_keys(shape: dict, base: ModelConfig) -> dict:
    embed, _, patch, _ = shape["backbone.patch_embed.proj.weight"]
    block0 = "backbone.layers.{}.blocks.0."
    table = shape[block0.format(0) + "attn.relative_position_bias_table"][0]  # (2w - 1)^2
    inherited = base.backbone.kwargs if base.backbone.name == "d2_swin" else {}
    kwargs = {**inherited, "embed_dim": embed, "patch_size": patch,
              "window_size": (round(table ** 0.5) + 1) // 2,
              "depths": [_count(shape, r"backbone\.layers\.%d\.blocks\.(\d+)\.norm1\.weight" % s)
                         for s in range(4)],
              "num_heads": [shape[block0.format(s) + "attn.relative_position_bias_table"][1]
                            for s in range(4)]}
    extra = {"mlp_ratio": shape[block0.format(0) + "mlp.fc1.weight"][0] / embed,
             "qkv_bias": block0.format(0) + "attn.qkv.bias" in shape,
             "patch_norm": "backbone.patch_embed.norm.weight" in shape,
             "ape": "backbone.absolute_pos_embed" in shape}
    for name, value in extra.items():  # written where they differ from detectron2's defaults
        if name in kwargs or value != _SWIN_DEFAULTS[name]:
            kwargs[name] = value
    if extra["ape"]:
        kwargs["pretrain_img_size"] = shape["backbone.absolute_pos_embed"][-1] * patch
    return {"name": "d2_swin", "channels": [embed * 2 ** i for i in range(4)], "kwargs": kwargs,
            "out_norm": "layernorm" if "backbone.norm0.weight" in shape else "none"}


def _pixel_decoder_from_keys(shape: dict, base: ModelConfig) -> dict:
    layer0 = D2_PD + "transformer.encoder.layers.0."
    levels, conv = shape[D2_PD + "transformer.level_embed"]
    out = {"conv_dim": conv, "encoder_levels": levels,
           "mask_dim": shape[D2_PD + "mask_features.weight"][0],
           "encoder_layers": _count(shape, PD + r"transformer\.encoder\.layers\.(\d+)\.norm1"
                                           r"\.weight")}
    if out["encoder_layers"]:
        per_head = shape[layer0 + "self_attn.attention_weights.weight"][0] // levels
        heads = base.pixel_decoder.encoder_heads  # heads x points is all the keys tell
        if per_head % heads:
            raise ConversionError(f"encoder attention_weights has {per_head * levels} outputs, "
                                  f"not a multiple of encoder_heads x levels = {heads} x {levels}")
        out.update(encoder_points=per_head // heads,
                   encoder_ffn_dim=shape[layer0 + "linear1.weight"][0])
    return out


def _decoder_from_keys(shape: dict) -> dict:
    queries, hidden = shape[D2_PR + "query_feat.weight"]
    out = {"num_queries": queries, "hidden_dim": hidden,
           "levels": shape[D2_PR + "level_embed.weight"][0],  # RbA: 1, Mask2Former: 3
           "layers": _count(shape, PR + r"transformer_ffn_layers\.(\d+)\.norm\.weight"),
           "mask_embed_layers": _count(shape, PR + r"mask_embed\.layers\.(\d+)\.weight")}
    if out["layers"]:
        out["ffn_dim"] = shape[D2_PR + "transformer_ffn_layers.0.linear1.weight"][0]
    return out


def infer_config_from_keys(state_dict: dict[str, Any], base: ModelConfig
                           ) -> tuple[ModelConfig, list[str]]:
    """``base`` with its architecture read from the checkpoint's keys and shapes.

    Returns the config and the adjustments made to ``base`` ("field: preset -> checkpoint").
    Depths, widths, window, numbers of encoder/decoder layers and levels, queries come from the
    keys; classes, input normalisation and what the keys do not determine (heads, norm groups,
    pre-norm, drop path) come from ``base``. A class count that differs from ``base`` is an error.
    """
    shape = {k: tuple(_as_tensor(k, v).shape) for k, v in state_dict.items()}
    try:
        overrides = {"backbone": _swin_from_keys(shape, base),
                     "pixel_decoder": _pixel_decoder_from_keys(shape, base),
                     "decoder": _decoder_from_keys(shape)}
        classes = shape[D2_PR + "class_embed.weight"][0] - 1
    except KeyError as exc:
        raise ConversionError(f"not a detectron2 Swin Mask2Former checkpoint: it has no {exc} "
                              f"(its keys start with {', '.join(list(shape)[:4])})") from None
    if classes != base.num_classes:
        raise ConversionError(
            f"the checkpoint predicts {classes} classes but preset {base.name!r} has "
            f"{base.num_classes} ({', '.join(base.class_names[:4])}, ...): use a preset with the "
            "checkpoint's classes")
    base_dict = base.to_dict()
    try:
        cfg = ModelConfig.from_dict(merge(base_dict, overrides))
    except ConfigError as exc:
        raise ConversionError(f"the checkpoint's architecture is not supported: {exc}") from None
    return cfg, _differences(base_dict, cfg.to_dict())


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            out += _differences(before, value, f"{prefix}{key}.")
        elif value != before:
            out.append(f"{prefix}{key}: {before} -> {value}")
    return out


def load_detectron2(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """(model state dict, other top-level entries such as trainer state) of a .pth / .pkl file,
    read without running code (see :mod:`.safe_pickle`)."""
    obj = load_pickle(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj["model"], [k for k in obj if k != "model"]
    if isinstance(obj, dict) and obj and all(isinstance(v, (torch.Tensor, np.ndarray))
                                             for v in obj.values()):
        return obj, []  # a bare state dict
    raise ConversionError(f"{path}: expected a detectron2 checkpoint ({{'model': state_dict, "
                          f"...}}) or a state dict, got {type(obj).__name__}"
                          + (f" with keys {list(obj)[:5]}" if isinstance(obj, dict) else ""))
