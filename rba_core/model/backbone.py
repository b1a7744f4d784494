"""Backbones returning res2..res5 (strides 4..32): ours, by name, or any timm model.

The registry follows timm's ``_registry.py``: ``register_backbone`` adds a factory and
``is_backbone`` asks for a name; any other name must be a timm model (``timm.is_model``), built
through ``features_only``. An unknown name is one ConfigError naming ours and close timm names.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Callable

import torch
from torch import nn

from ..dataconf import ConfigError
from .config import BackboneConfig

FEATURE_NAMES = ("res2", "res3", "res4", "res5")
STRIDES = (4, 8, 16, 32)

# name -> factory(BackboneConfig) -> nn.Module returning [res2..res5] NCHW, or "module:factory"
# (imported when first built: declaring a backbone has no import side effects)
BACKBONES: dict[str, str | Callable[[BackboneConfig], nn.Module]] = {
    "d2_swin": "rba_core.model.swin_d2:build_d2_swin",  # detectron2's Swin (released RbA)
}


def register_backbone(name: str, factory: str | Callable[[BackboneConfig], nn.Module]) -> None:
    """Add a backbone under ``name`` (as timm's ``register_model`` adds a model)."""
    if name in BACKBONES:
        raise ValueError(f"backbone {name!r} is registered already")
    BACKBONES[name] = factory


def is_backbone(name: str) -> bool:
    """One of ours, or a timm model name (pretrained tags such as ``.a1_in1k`` allowed)."""
    import timm

    return name in BACKBONES or timm.is_model(name)


def create_body(cfg: BackboneConfig) -> nn.Module:
    """The feature extractor named by ``cfg.name``; an unknown name is one ConfigError."""
    factory = BACKBONES.get(cfg.name)
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    if factory is not None:
        return factory(cfg)
    if not is_backbone(cfg.name):
        import timm

        near = difflib.get_close_matches(cfg.name, [*BACKBONES, *timm.list_models()], n=3)
        raise ConfigError("backbone.name", f"unknown backbone {cfg.name!r}: ours are "
                          f"{', '.join(sorted(BACKBONES))}, else any timm model "
                          f"(timm.list_models())" + (f"; close: {', '.join(near)}" if near else ""))
    return TimmBackbone(cfg)


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
            self.body = timm.create_model(cfg.name, pretrained=False, features_only=True,
                                          **kwargs)
        except TypeError as exc:
            raise ConfigError("backbone.kwargs", f"{cfg.name}: {exc}") from None
        reductions = self.body.feature_info.reduction()
        missing = [s for s in STRIDES if s not in reductions]
        if missing:
            raise ConfigError("backbone.name",
                              f"{cfg.name} has no features at strides {missing} "
                              f"(it has {reductions}); res2..res5 need strides {list(STRIDES)}")
        # the last feature at each stride (e.g. after a stage, not its stem); the others (a
        # stride-2 stem) are intermediate results the network computes anyway
        self.picks = [max(i for i, r in enumerate(reductions) if r == s) for s in STRIDES]
        channels = [self.body.feature_info.channels()[i] for i in self.picks]
        if list(channels) != list(cfg.channels):
            raise ConfigError("backbone.channels",
                              f"{list(cfg.channels)} does not match {cfg.name}'s stage channels "
                              f"{list(channels)}")
        self.channels_last = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        feats = [feats[i] for i in self.picks]
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return feats


class Backbone(nn.Module):
    """Body (ours or timm) + optional per-stage output norms; returns {res2..res5: NCHW}."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.body = create_body(cfg)
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
