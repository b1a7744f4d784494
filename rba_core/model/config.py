"""ModelConfig: a dataclass tree that fully describes a Mask2Former / RbA model.

One config + one state dict is a complete model: the config is embedded in our checkpoints and in
exported ONNX metadata. ``ModelConfig.from_dict`` names the bad field; ``ModelConfig.preset(name)``
returns the architectures we know (the released RbA models, stock Mask2Former layouts, ``tiny``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from ..classes import CAMVID_CLASSES, CAMVID_COLORS, CITYSCAPES_CLASSES, CITYSCAPES_COLORS
from ..dataconf import ConfigError, check, from_dict, to_dict


@dataclass
class BackboneConfig:
    """Feature extractor producing res2..res5 (strides 4, 8, 16, 32).

    ``name`` is any timm model name (built with ``features_only``), or ``d2_swin`` for the
    detectron2-exact Swin of the released RbA checkpoints. ``kwargs`` go to the constructor.
    """
    name: str = "resnet18"
    channels: list[int] = field(default_factory=lambda: [64, 128, 256, 512])  # res2..res5
    out_norm: Literal["none", "layernorm"] = "none"  # per-stage output norm (D2 Swin: norm0..3)
    drop_path_rate: float = 0.0
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        check(len(self.channels) == 4, "channels", "needs 4 entries (res2..res5)")
        check(all(c > 0 for c in self.channels), "channels", "must be positive")
        check(0.0 <= self.drop_path_rate < 1.0, "drop_path_rate", "must be in [0, 1)")


@dataclass
class PixelDecoderConfig:
    """MSDeformAttn pixel decoder: deformable encoder on 1 or 3 levels, then an FPN to 1/4."""
    conv_dim: int = 256
    mask_dim: int = 256
    encoder_layers: int = 6
    encoder_heads: int = 8
    encoder_points: int = 4
    encoder_ffn_dim: int = 1024
    encoder_levels: Literal[1, 3] = 1  # 1: res5 only (RbA release); 3: res3..res5 (Mask2Former)
    dropout: float = 0.0
    norm_groups: int = 32

    def __post_init__(self):
        for name in ("conv_dim", "mask_dim", "encoder_heads", "encoder_points", "encoder_ffn_dim",
                     "norm_groups"):
            check(getattr(self, name) > 0, name, "must be positive")
        check(self.encoder_layers >= 0, "encoder_layers", "must be >= 0")
        check(self.conv_dim % self.encoder_heads == 0, "conv_dim",
              f"{self.conv_dim} is not divisible by encoder_heads={self.encoder_heads}")
        check(self.conv_dim % 2 == 0, "conv_dim", "must be even (sine position embedding)")
        check(self.conv_dim % self.norm_groups == 0, "norm_groups",
              f"GroupNorm({self.norm_groups}) does not divide conv_dim={self.conv_dim}")
        check(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")


@dataclass
class DecoderConfig:
    """Masked-attention transformer decoder.

    ``layers`` counts masked-attention layers after the query-only prediction; detectron2's
    ``DEC_LAYERS`` equals ``layers + 1`` (the RbA release uses DEC_LAYERS 2, i.e. ``layers: 1``).
    """
    layers: int = 1
    levels: int = 3  # pixel-decoder levels cycled through (Mask2Former 3; the RbA release 1)
    num_queries: int = 100
    hidden_dim: int = 256
    heads: int = 8
    ffn_dim: int = 2048
    pre_norm: bool = False
    mask_embed_layers: int = 3
    dropout: float = 0.0

    def __post_init__(self):
        check(self.layers >= 0, "layers", "must be >= 0")
        check(1 <= self.levels <= 3, "levels", "must be 1, 2 or 3 (the pixel decoder gives 3)")
        for name in ("num_queries", "hidden_dim", "heads", "ffn_dim", "mask_embed_layers"):
            check(getattr(self, name) > 0, name, "must be positive")
        check(self.hidden_dim % self.heads == 0, "hidden_dim",
              f"{self.hidden_dim} is not divisible by heads={self.heads}")
        check(self.hidden_dim % 2 == 0, "hidden_dim", "must be even (sine position embedding)")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model: architecture, classes, input normalisation."""
    name: str = "custom"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    class_names: list[str] = field(default_factory=lambda: list(CITYSCAPES_CLASSES))
    colors: list[list[int]] = field(default_factory=lambda: copy.deepcopy(CITYSCAPES_COLORS))
    ignore_value: int = 255
    pixel_mean: list[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])
    pixel_std: list[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])
    size_divisibility: int = 32

    def __post_init__(self):
        check(len(self.class_names) > 0, "class_names", "needs at least one class")
        check(len(set(self.class_names)) == len(self.class_names), "class_names",
              "contains duplicates")
        check(len(self.colors) == len(self.class_names), "colors",
              f"has {len(self.colors)} entries for {len(self.class_names)} classes")
        for i, c in enumerate(self.colors):
            check(len(c) == 3 and all(0 <= v <= 255 for v in c), f"colors.{i}",
                  f"must be an RGB triple in 0..255, got {c}")
        check(len(self.pixel_mean) == 3, "pixel_mean", "needs 3 values (RGB)")
        check(len(self.pixel_std) == 3 and all(s > 0 for s in self.pixel_std), "pixel_std",
              "needs 3 positive values (RGB)")
        check(self.size_divisibility > 0 and self.size_divisibility % 32 == 0,
              "size_divisibility", "must be a positive multiple of 32 (res5 stride)")
        check(0 <= self.ignore_value <= 255, "ignore_value", "must be in 0..255")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # -- (de)serialisation -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return from_dict(cls, data)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ModelConfig":
        """A named architecture (see ``PRESETS``); ``overrides`` are merged as nested dicts."""
        if name not in PRESETS:
            raise ConfigError("preset", f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
        data = copy.deepcopy(PRESETS[name])
        data["name"] = name
        return cls.from_dict(merge(data, overrides))


def merge(base: dict, overrides: dict) -> dict:
    """Recursive dict merge: mappings merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _swin(embed: int, heads: list[int], depths=(2, 2, 18, 2)) -> dict:
    return {"name": "d2_swin", "channels": [embed, 2 * embed, 4 * embed, 8 * embed],
            "out_norm": "layernorm", "drop_path_rate": 0.3,
            "kwargs": {"embed_dim": embed, "depths": list(depths), "num_heads": heads,
                       "window_size": 12, "patch_size": 4, "pretrain_img_size": 384}}


_CITYSCAPES = {"class_names": CITYSCAPES_CLASSES, "colors": CITYSCAPES_COLORS, "ignore_value": 255}
_RBA_HEAD = {"pixel_decoder": {"encoder_levels": 1}, "decoder": {"layers": 1, "levels": 1}}

PRESETS: dict[str, dict] = {
    # The released RbA models: Swin-B/L, deformable encoder on res5 only, one decoder layer.
    "rba_swin_b_1dl": {"backbone": _swin(128, [4, 8, 16, 32]), **_RBA_HEAD, **_CITYSCAPES},
    "rba_swin_l_1dl": {"backbone": _swin(192, [6, 12, 24, 48]), **_RBA_HEAD, **_CITYSCAPES},
    # Stock Mask2Former semantic models (3-level encoder, 9 decoder layers).
    "m2f_swin_b_cityscapes": {"backbone": _swin(128, [4, 8, 16, 32]),
                              "pixel_decoder": {"encoder_levels": 3}, "decoder": {"layers": 9},
                              **_CITYSCAPES},
    "m2f_swin_l_cityscapes": {"backbone": _swin(192, [6, 12, 24, 48]),
                              "pixel_decoder": {"encoder_levels": 3}, "decoder": {"layers": 9},
                              **_CITYSCAPES},
    # CPU-sized model for tests and the embedded default model (CamVid classes).
    "tiny": {
        "backbone": {"name": "resnet18", "channels": [64, 128, 256, 512]},
        "pixel_decoder": {"conv_dim": 64, "mask_dim": 64, "encoder_layers": 1, "encoder_heads": 4,
                          "encoder_points": 4, "encoder_ffn_dim": 128, "encoder_levels": 1,
                          "norm_groups": 16},
        "decoder": {"layers": 1, "levels": 1, "num_queries": 32, "hidden_dim": 64, "heads": 4,
                    "ffn_dim": 256},
        "class_names": CAMVID_CLASSES, "colors": CAMVID_COLORS, "ignore_value": 11,
    },
}
