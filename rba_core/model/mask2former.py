"""Mask2Former meta-architecture: normalise + pad -> backbone -> pixel decoder -> decoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone
from .config import ModelConfig
from .inference import InferenceMode, semantic_inference
from .pixel_decoder import PixelDecoder
from .transformer_decoder import MaskedTransformerDecoder


def padded_size(height: int, width: int, divisibility: int) -> tuple[int, int]:
    """Smallest (H', W') >= (H, W) that are multiples of ``divisibility``."""
    return (-(-height // divisibility) * divisibility, -(-width // divisibility) * divisibility)


class Mask2Former(nn.Module):
    """Mask classification model; ``forward`` returns class and mask logits (+ aux outputs).

    Input: RGB images [B, 3, H, W], uint8 or float in 0..255, any H, W. Normalisation and
    right/bottom zero padding to ``size_divisibility`` happen inside, as in the released model.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg.backbone)
        self.pixel_decoder = PixelDecoder(cfg.pixel_decoder, cfg.backbone.channels)
        self.decoder = MaskedTransformerDecoder(cfg.decoder, cfg.pixel_decoder.conv_dim,
                                                cfg.pixel_decoder.mask_dim, cfg.num_classes)
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1),
                             persistent=False)

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] 0..255 -> normalised, zero-padded [B,3,H',W'] (padding after normalising)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        x = (images.float() - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        ph, pw = padded_size(int(h), int(w), self.cfg.size_divisibility)
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h))
        return x

    def forward(self, images: torch.Tensor, with_aux: bool | None = None) -> dict:
        """-> {pred_logits [B,Q,K+1], pred_masks [B,Q,H'/4,W'/4], aux_outputs (training)}."""
        x = self.preprocess(images)
        features = self.backbone(x)
        mask_features, multi_scale = self.pixel_decoder(features)
        if with_aux is None:
            with_aux = self.training
        return self.decoder(multi_scale, mask_features, with_aux=with_aux)

    @torch.no_grad()
    def semantic(self, images: torch.Tensor, mode: InferenceMode = "exact") -> torch.Tensor:
        """Per-class map L(x) [B, K, H, W] at input resolution (padding cropped)."""
        out = self(images, with_aux=False)
        h, w = images.shape[-2:]
        return semantic_inference(out["pred_logits"], out["pred_masks"], (int(h), int(w)),
                                  padded_size(int(h), int(w), self.cfg.size_divisibility), mode)


def build_model(cfg: ModelConfig) -> Mask2Former:
    """Model with freshly initialised (random) weights for ``cfg``."""
    return Mask2Former(cfg)
