"""Model shapes, padding/cropping, inference modes and gradient flow on small configs."""
import math

import pytest
import torch

from rba_core.model import ModelConfig, build_model, padded_size, semantic_inference

torch.manual_seed(0)


def small(**overrides):
    """The tiny preset, shrunk further so the tests stay fast."""
    base = {"decoder": {"num_queries": 8, "ffn_dim": 64},
            "pixel_decoder": {"encoder_ffn_dim": 64}}
    for k, v in overrides.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return ModelConfig.preset("tiny", **base)


BACKBONES = {
    "resnet18": [64, 128, 256, 512],
    "convnext_atto": [40, 80, 160, 320],
    "mobilenetv3_small_050": [8, 16, 24, 288],
    "swin_tiny_patch4_window7_224": [96, 192, 384, 768],  # NHWC timm features
}


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("levels, layers", [(1, 1), (3, 4)])
def test_output_shapes(backbone, levels, layers):
    kwargs = {}
    if backbone.startswith("swin"):
        kwargs = {"img_size": (96, 128), "strict_img_size": False}
    cfg = small(backbone={"name": backbone, "channels": BACKBONES[backbone], "kwargs": kwargs},
                pixel_decoder={"encoder_levels": levels}, decoder={"layers": layers})
    model = build_model(cfg).train()
    x = torch.randint(0, 256, (2, 3, 96, 128), dtype=torch.uint8)
    out = model(x)
    k, q = cfg.num_classes, cfg.decoder.num_queries
    assert out["pred_logits"].shape == (2, q, k + 1)
    assert out["pred_masks"].shape == (2, q, 24, 32)
    assert len(out["aux_outputs"]) == layers
    for aux in out["aux_outputs"]:
        assert aux["pred_logits"].shape == (2, q, k + 1)
        assert aux["pred_masks"].shape == (2, q, 24, 32)
    assert "aux_outputs" not in model.eval()(x)


@pytest.mark.parametrize("h, w", [(101, 77), (33, 250), (64, 64)])
def test_odd_sizes_are_padded_then_cropped(h, w):
    model = build_model(small()).eval()
    x = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8)
    ph, pw = padded_size(h, w, 32)
    assert ph % 32 == 0 and pw % 32 == 0 and ph - h < 32 and pw - w < 32
    assert model(x)["pred_masks"].shape[-2:] == (ph // 4, pw // 4)
    for mode in ("exact", "fast"):
        assert model.semantic(x, mode).shape == (1, 11, h, w)


def test_padding_is_zero_after_normalisation():
    model = build_model(small())
    x = torch.full((1, 3, 40, 50), 7, dtype=torch.uint8)
    y = model.preprocess(x)
    assert y.shape == (1, 3, 64, 64)
    expected = (7 - torch.tensor(model.cfg.pixel_mean)) / torch.tensor(model.cfg.pixel_std)
    assert torch.allclose(y[0, :, 0, 0], expected)
    assert (y[:, :, 40:] == 0).all() and (y[:, :, :, 50:] == 0).all()


def test_float_and_uint8_inputs_agree():
    model = build_model(small()).eval()
    x = torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8)
    assert torch.allclose(model.semantic(x), model.semantic(x.float()))


def test_exact_mode_matches_reference_order():
    """exact = upsample logits to padded size, sigmoid, einsum(softmax minus void), crop."""
    torch.manual_seed(1)
    logits = torch.randn(1, 5, 4)
    masks = torch.randn(1, 5, 8, 12)
    sem = semantic_inference(logits, masks, (30, 45), (32, 48), "exact")
    up = torch.nn.functional.interpolate(masks, size=(32, 48), mode="bilinear",
                                         align_corners=False).sigmoid()
    probs = logits.softmax(-1)[..., :-1]
    ref = torch.zeros(1, 3, 32, 48)
    for c in range(3):
        for q in range(5):
            ref[0, c] += probs[0, q, c] * up[0, q]
    assert torch.allclose(sem, ref[:, :, :30, :45], atol=1e-6)


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("image, padded", [((30, 45), (32, 48)), ((32, 48), (32, 48)),
                                           ((61, 97), (64, 128))])
def test_channels_last_is_the_same_inference(mode, image, padded):
    """[B, H, W, K] layout (what rba export traces) = the reference order's [B, K, H, W]."""
    torch.manual_seed(3)
    logits, masks = torch.randn(2, 7, 5) * 2, torch.randn(2, 7, padded[0] // 4, padded[1] // 4) * 4
    ref = semantic_inference(logits, masks, image, padded, mode)
    for crop in (True, False):
        nhwc = semantic_inference(logits, masks, image, padded, mode, crop=crop,
                                  channels_last=True)
        assert nhwc.shape[-1] == 4 and nhwc.shape[1:3] >= image
        assert torch.allclose(nhwc[:, :image[0], :image[1]].permute(0, 3, 1, 2), ref, atol=1e-6)


def test_fast_and_exact_agree_on_smooth_masks():
    torch.manual_seed(2)
    ys = torch.linspace(0, 1, 48)[:, None]
    xs = torch.linspace(0, 1, 64)[None, :]
    q = 6
    phase = torch.rand(q, 2) * 2 * math.pi
    masks = torch.stack([3 * torch.sin(2 * math.pi * xs + phase[i, 0])
                         * torch.cos(math.pi * ys + phase[i, 1]) for i in range(q)])[None]
    logits = torch.randn(1, q, 5) * 3
    exact = semantic_inference(logits, masks, (180, 250), (192, 256), "exact")
    fast = semantic_inference(logits, masks, (180, 250), (192, 256), "fast")
    assert fast.shape == exact.shape
    assert (fast - exact).abs().max() < 2e-3
    assert (fast.argmax(1) == exact.argmax(1)).float().mean() > 0.995


def test_unknown_inference_mode_is_an_error():
    with pytest.raises(ValueError, match="exact"):
        semantic_inference(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4, 4), (16, 16), (16, 16),
                           "slow")


@pytest.mark.parametrize("levels, layers", [(1, 1), (3, 3)])
def test_gradients_reach_every_trainable_parameter(levels, layers):
    cfg = small(pixel_decoder={"encoder_levels": levels, "encoder_layers": 2},
                decoder={"layers": layers})
    model = build_model(cfg).train()
    # Some initialisations zero a path on purpose (timm's zero-init of residual BNs, the zero
    # sampling-offset weights); jitter every parameter so the test sees the wiring, not the init.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    x = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    out = model(x)
    loss = sum(o["pred_logits"].square().mean() + o["pred_masks"].sigmoid().mean()
               for o in [out] + out["aux_outputs"])
    loss.backward()
    dead = [n for n, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert dead == []


def test_batch_items_are_independent():
    model = build_model(small()).eval()
    a = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    b = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    both = model.semantic(torch.cat([a, b]))
    assert torch.allclose(both[:1], model.semantic(a), atol=1e-5)
    assert torch.allclose(both[1:], model.semantic(b), atol=1e-5)


def test_unknown_backbone_is_a_config_error():
    from rba_core.dataconf import ConfigError

    with pytest.raises(ConfigError, match="backbone.name"):
        build_model(small(backbone={"name": "no_such_net_xyz"}))
    with pytest.raises(ConfigError, match="backbone.channels.*stage channels"):
        build_model(small(backbone={"name": "resnet18", "channels": [1, 2, 3, 4]}))
