"""Eager inference's deformable attention (weighted gathers) against ``grid_sample``'s."""
from __future__ import annotations

import torch

from rba_core.model import ModelConfig, build_model
from rba_core.model.msdeform import MSDeformAttn, ms_deform_attn, ms_deform_attn_gather


def rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_gathers_equal_grid_sample_inside_and_outside_the_maps():
    """Reference: the released pure-PyTorch core (grid_sample, bilinear, zero padding)."""
    torch.manual_seed(0)
    shapes = [(5, 7), (10, 13), (19, 26)]  # odd sizes: no symmetry hides an index mix-up
    b, m, d, n_levels, n_points = 2, 4, 8, len(shapes), 3
    s = sum(h * w for h, w in shapes)
    lq = 50
    value = torch.randn(b, s, m, d)
    ref = torch.rand(b, lq, n_levels, 2) * 1.4 - 0.2  # some reference points off the map
    offsets = torch.randn(b, lq, m, n_levels, n_points, 2) * 4  # pixels; many land outside
    weights = torch.rand(b, lq, m, n_levels, n_points)
    size = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float32)
    locations = ref[:, :, None, :, None, :] + offsets / size[None, None, None, :, None, :]
    assert ((locations < 0) | (locations > 1)).any()
    expected = ms_deform_attn(value, shapes, locations, weights)
    got = ms_deform_attn_gather(value, shapes, ref, offsets, weights)
    assert got.shape == expected.shape == (b, lq, m * d)
    assert rel(got, expected) < 1e-5


def test_module_uses_gathers_only_for_inference():
    torch.manual_seed(1)
    attn = MSDeformAttn(32, 2, 4, 2).eval()
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)
    shapes = [(6, 8), (3, 4)]
    s = sum(h * w for h, w in shapes)
    q, v = torch.randn(1, s, 32), torch.randn(1, s, 32)
    ref = torch.rand(1, s, 2, 2)
    with torch.enable_grad():
        train_path = attn(q, ref, v, shapes)
    assert train_path.requires_grad  # grid_sample: differentiable, exportable
    with torch.inference_mode():
        infer_path = attn(q, ref, v, shapes)
    assert rel(infer_path, train_path.detach()) < 1e-5


def test_swin_mask2former_outputs_unchanged_by_the_inference_path():
    """Whole model (3-level encoder, 9 decoder layers): eager inference vs the grad path."""
    torch.manual_seed(0)
    cfg = ModelConfig.preset("m2f_swin_b_cityscapes", backbone={
        "channels": [32, 64, 128, 256], "drop_path_rate": 0.0,
        "kwargs": {"embed_dim": 32, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 4, 8],
                   "window_size": 7, "pretrain_img_size": 224}},
        pixel_decoder={"conv_dim": 64, "mask_dim": 64, "encoder_layers": 2,
                       "encoder_ffn_dim": 128, "norm_groups": 16},
        decoder={"hidden_dim": 64, "ffn_dim": 128, "num_queries": 20})
    model = build_model(cfg).eval()
    for mod in model.modules():  # trained-like offsets, not the zero init
        if isinstance(mod, MSDeformAttn):
            torch.nn.init.normal_(mod.sampling_offsets.weight, std=0.05)
    x = torch.randint(0, 256, (1, 3, 96, 160), dtype=torch.uint8)
    with torch.enable_grad():
        ref = model(x, with_aux=False)
    with torch.inference_mode():
        out = model(x, with_aux=False)
    for key in ("pred_logits", "pred_masks"):
        assert rel(out[key], ref[key].detach()) < 1e-5
