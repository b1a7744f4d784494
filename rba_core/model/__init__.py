"""rba_core.model: Mask2Former with timm backbones, as used by RbA.

backbone (timm ``features_only`` or D2 Swin) -> pixel decoder (MSDeformAttn + FPN) ->
masked-attention transformer decoder -> class logits + mask logits -> semantic inference.
"""
from .config import (CAMVID_CLASSES, CAMVID_COLORS, CITYSCAPES_CLASSES, CITYSCAPES_COLORS,
                     PRESETS, BackboneConfig, DecoderConfig, ModelConfig, PixelDecoderConfig)
from .inference import MODES, class_probs, semantic_inference
from .mask2former import Mask2Former, build_model, padded_size

__all__ = ["ModelConfig", "BackboneConfig", "PixelDecoderConfig", "DecoderConfig", "PRESETS",
           "Mask2Former", "build_model", "padded_size", "semantic_inference", "class_probs",
           "MODES", "CITYSCAPES_CLASSES", "CITYSCAPES_COLORS", "CAMVID_CLASSES", "CAMVID_COLORS"]
