"""Backbones: any timm model through ``features_only``, returning res2..res5 (strides 4..32).

Other backbones (the detectron2-exact Swin of the released checkpoints) register themselves in
``BACKBONES`` under their own name; everything else is looked up in timm.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..dataconf import ConfigError
from .config import BackboneConfig

FEATURE_NAMES = ("res2", "res3", "res4", "res5")
STRIDES = (4, 8, 16, 32)

# name -> factory(BackboneConfig) -> nn.Module with the Backbone interface below
BACKBONES: dict[str, Callable[[BackboneConfig], nn.Module]] = {}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an NCHW tensor (parameter names of nn.LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class TimmBackbone(nn.Module):
    """A timm ``features_only`` model reduced to the four stride-4..32 outputs, NCHW."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        import timm

        kwargs = dict(cfg.kwargs)
        if cfg.drop_path_rate:
            kwargs["drop_path_rate"] = cfg.drop_path_rate
        try:
            probe = timm.create_model(cfg.name, pretrained=False, features_only=True, **kwargs)
        except RuntimeError as exc:  # timm: "Unknown model (...)"
            raise ConfigError("backbone.name", str(exc)) from None
        except TypeError as exc:
            raise ConfigError("backbone.kwargs", f"{cfg.name}: {exc}") from None
        reductions = probe.feature_info.reduction()
        missing = [s for s in STRIDES if s not in reductions]
        if missing:
            raise ConfigError("backbone.name",
                              f"{cfg.name} has no features at strides {missing} "
                              f"(it has {reductions}); res2..res5 need strides {list(STRIDES)}")
        # the last feature at each stride (e.g. after a stage, not its stem)
        picks = [max(i for i, r in enumerate(reductions) if r == s) for s in STRIDES]
        if picks == list(range(len(reductions))):
            self.body = probe
        else:
            out_indices = tuple(probe.feature_info.out_indices[i] for i in picks)
            self.body = timm.create_model(cfg.name, pretrained=False, features_only=True,
                                          out_indices=out_indices, **kwargs)
        channels = self.body.feature_info.channels()
        if list(channels) != list(cfg.channels):
            raise ConfigError("backbone.channels",
                              f"{list(cfg.channels)} does not match {cfg.name}'s stage channels "
                              f"{list(channels)}")
        self.channels_last = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return list(feats)


class Backbone(nn.Module):
    """Body (timm or registered) + optional per-stage output norms; returns {res2..res5: NCHW}."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        factory = BACKBONES.get(cfg.name, TimmBackbone)
        self.body = factory(cfg)
        self.channels = list(cfg.channels)
        if cfg.out_norm == "layernorm":
            self.out_norms = nn.ModuleList(LayerNorm2d(c) for c in cfg.channels)
        else:
            self.out_norms = None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.body(x)
        if self.out_norms is not None:
            feats = [norm(f) for norm, f in zip(self.out_norms, feats)]
        return dict(zip(FEATURE_NAMES, feats))
