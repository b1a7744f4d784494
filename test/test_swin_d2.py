"""The d2_swin backbone against a slow, direct re-statement of detectron2's D2SwinTransformer.

The reference below is written from detectron2's algorithm (Mask2Former's ``backbone/swin.py``),
not from our code: explicit loops over windows, region labels and relative offsets, weights read
under detectron2's key names. Sizes are downscaled 720x1280 / 1024x2048 inputs and odd sizes,
where no stage is a multiple of the window and the last stages are smaller than the window.
"""
from __future__ import annotations

import math
import types

import pytest
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerBlock

from rba_core.dataconf import ConfigError
from rba_core.model import BackboneConfig
from rba_core.model.backbone import BACKBONES, Backbone

EMBED, DEPTHS, HEADS = 16, (2, 2, 2, 2), (1, 2, 2, 4)


def make_backbone(window: int, patch: int = 4) -> Backbone:
    cfg = BackboneConfig(name="d2_swin", channels=[EMBED * 2 ** i for i in range(4)],
                         out_norm="layernorm", drop_path_rate=0.3,
                         kwargs={"embed_dim": EMBED, "depths": list(DEPTHS),
                                 "num_heads": list(HEADS), "window_size": window,
                                 "patch_size": patch, "pretrain_img_size": 384})
    torch.manual_seed(0)
    model = Backbone(cfg).double().eval()
    norms = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    with torch.no_grad():  # every parameter random and O(1), so that masks and padding matter
        for name, p in model.named_parameters():
            if id(p) in norms:
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif "relative_position_bias_table" in name:
                p.copy_(torch.randn_like(p))
            else:  # weights ~ 1/sqrt(fan_in), biases ~ 0.5
                p.copy_(torch.randn_like(p) / math.sqrt(p[0].numel() if p.dim() > 1 else 4))
    return model


def detectron2_weights(model: Backbone) -> dict[str, torch.Tensor]:
    """Our backbone's weights under detectron2's names (merging sits at the end of stage s)."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("out_norms."):
            _, i, rest = k.split(".", 2)
            out[f"norm{i}.{rest}"] = v
        elif ".downsample." in k:
            _, s, rest = k[len("body."):].split(".", 2)
            out[f"layers.{int(s) - 1}.{rest}"] = v
        else:
            out[k[len("body."):]] = v
    return out


# ---- slow reference: detectron2's SwinTransformer, restated -------------------------------------
def ln(x, p, name):
    return F.layer_norm(x, x.shape[-1:], p[f"{name}.weight"], p[f"{name}.bias"], eps=1e-5)


def rel_bias(table: torch.Tensor, ws: int) -> torch.Tensor:
    """[heads, N, N]: bias[h, n, m] = table[(dy + ws - 1) * (2 ws - 1) + dx + ws - 1, h]."""
    n = ws * ws
    idx = torch.empty(n, n, dtype=torch.long)
    for a in range(n):
        for b in range(n):
            dy, dx = a // ws - b // ws, a % ws - b % ws
            idx[a, b] = (dy + ws - 1) * (2 * ws - 1) + dx + ws - 1
    return table[idx].permute(2, 0, 1)


def region(i: int, size: int, ws: int, shift: int) -> int:
    """detectron2's h/w slices (0, -ws), (-ws, -shift), (-shift, None) of the padded size."""
    return 0 if i < size - ws else (1 if i < size - shift else 2)


def ref_block(x, p, name, heads, ws, shift):
    b, h, w, c = x.shape
    y = ln(x, p, f"{name}.norm1")
    hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
    yp = torch.zeros(b, hp, wp, c, dtype=x.dtype)
    yp[:, :h, :w] = y  # pad right / bottom with zeros, BEFORE the shift
    bias = rel_bias(p[f"{name}.attn.relative_position_bias_table"], ws)
    out = torch.zeros_like(yp)
    hd = c // heads
    for wi in range(hp // ws):
        for wj in range(wp // ws):
            src_r, src_c, labels = [], [], []
            for a in range(ws):
                for bb in range(ws):
                    r, col = wi * ws + a, wj * ws + bb  # position in the shifted image
                    src_r.append((r + shift) % hp)  # shifted[r] = padded[r + shift]
                    src_c.append((col + shift) % wp)
                    labels.append(region(r, hp, ws, shift) * 3 + region(col, wp, ws, shift)
                                  if shift else 0)
            tok = yp[:, src_r, src_c]  # [B, N, C]
            qkv = tok @ p[f"{name}.attn.qkv.weight"].T + p[f"{name}.attn.qkv.bias"]
            q, k, v = (t.reshape(b, -1, heads, hd).transpose(1, 2) for t in qkv.chunk(3, -1))
            lab = torch.tensor(labels)
            mask = (lab[:, None] != lab[None, :]).to(x.dtype) * -100.0
            attn = (q * hd ** -0.5) @ k.transpose(-1, -2) + bias[None] + mask
            o = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, c)
            o = o @ p[f"{name}.attn.proj.weight"].T + p[f"{name}.attn.proj.bias"]
            out[:, src_r, src_c] = o  # reverse shift: write back where the token came from
    x = x + out[:, :h, :w]
    m = ln(x, p, f"{name}.norm2") @ p[f"{name}.mlp.fc1.weight"].T + p[f"{name}.mlp.fc1.bias"]
    m = F.gelu(m)
    return x + m @ p[f"{name}.mlp.fc2.weight"].T + p[f"{name}.mlp.fc2.bias"]


def ref_merge(x, p, name):
    b, h, w, c = x.shape
    x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    return ln(x, p, f"{name}.norm") @ p[f"{name}.reduction.weight"].T


def ref_swin(img, p, ws, patch=4, depths=DEPTHS, heads=HEADS):
    """detectron2 weights ``p`` (names without ``backbone.``) -> [res2..res5] after norm0..3."""
    h, w = img.shape[-2:]
    img = F.pad(img, (0, (patch - w % patch) % patch, 0, (patch - h % patch) % patch))
    x = F.conv2d(img, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=patch)
    x = ln(x.permute(0, 2, 3, 1), p, "patch_embed.norm")
    outs = []
    for s in range(4):
        for i in range(depths[s]):
            shift = 0 if i % 2 == 0 else ws // 2
            x = ref_block(x, p, f"layers.{s}.blocks.{i}", heads[s], ws, shift)
        outs.append(ln(x, p, f"norm{s}").permute(0, 3, 1, 2))
        if s < 3:
            x = ref_merge(x, p, f"layers.{s}.downsample")
    return outs


# ---- tests ---------------------------------------------------------------------------------------
CASES = [  # (H, W, window): stage sizes
    (180, 320, 12),  # 720x1280 / 4: 45x80, 23x40, 12x20, 6x10 (last stage < window)
    (256, 512, 12),  # 1024x2048 / 4: 64x128, 32x64, 16x32, 8x16
    (181, 318, 7),  # odd: patch-embed padding 184x320, odd merge 23 -> 12
]


@pytest.mark.parametrize("h,w,ws", CASES)
def test_matches_detectron2_reference(h, w, ws):
    model = make_backbone(ws)
    img = torch.randn(2, 3, h, w, dtype=torch.float64)
    with torch.no_grad():
        ours = list(model(img).values())
        ref = ref_swin(img, detectron2_weights(model), ws)
    for i, (a, r) in enumerate(zip(ours, ref)):
        assert a.shape == r.shape, f"res{i + 2}"
        assert (a - r).abs().max().item() < 1e-9, f"res{i + 2}"
    assert [tuple(o.shape[-2:]) for o in ours][0] == (math.ceil(h / 4), math.ceil(w / 4))


def timm_order(model: Backbone) -> Backbone:
    """The same weights with timm's window attention (shift, then pad)."""
    for m in model.modules():
        if isinstance(m, SwinTransformerBlock):
            m._attn = types.MethodType(SwinTransformerBlock._attn, m)
    return model


def test_timm_order_differs_only_when_stages_are_not_window_multiples():
    img = torch.randn(1, 3, 180, 320, dtype=torch.float64)
    with torch.no_grad():
        d2 = make_backbone(12)(img)["res2"]
        timm = timm_order(make_backbone(12))(img)["res2"]
    assert (d2 - timm).abs().max().item() > 1e-2  # pad-then-shift matters at 45x80
    img = torch.randn(1, 3, 128, 128, dtype=torch.float64)  # every stage a multiple of window 4
    with torch.no_grad():
        d2 = make_backbone(4)(img)["res5"]
        timm = timm_order(make_backbone(4))(img)["res5"]
    assert (d2 - timm).abs().max().item() < 1e-9


def test_parameter_names_follow_timm():
    names = set(make_backbone(12).state_dict())
    assert "body.layers.1.downsample.reduction.weight" in names  # detectron2: layers.0.downsample
    assert "body.layers.0.blocks.1.attn.relative_position_bias_table" in names
    assert not any("relative_position_index" in n or "attn_mask" in n for n in names)
    assert not any(n.startswith("body.layers.0.downsample") for n in names)


def test_registered_and_bad_kwargs_name_the_field():
    assert "d2_swin" in BACKBONES
    cfg = BackboneConfig(name="d2_swin", channels=[16, 32, 64, 128],
                         kwargs={"embed_dim": 16, "depths": [2, 2, 2, 2],
                                 "num_heads": [1, 2, 2, 4], "window_size": 7, "qk_scale": 1.0})
    with pytest.raises(ConfigError, match="backbone.kwargs"):
        Backbone(cfg)
    cfg.kwargs.pop("qk_scale")
    cfg.channels = [16, 32, 64, 64]
    with pytest.raises(ConfigError, match="backbone.channels"):
        Backbone(cfg)


@pytest.mark.parametrize("h,w,same", [(384, 384, True), (384, 640, False)])
def test_timm_swin_with_the_same_weights(h, w, same):
    """timm's own Swin loads our weights as they are (same names and layout) and agrees with
    detectron2 only where a stage is a multiple of, and larger than, the window."""
    timm = pytest.importorskip("timm")
    ours = make_backbone(12)
    ref = timm.create_model("swin_base_patch4_window12_384", pretrained=False, features_only=True,
                            embed_dim=EMBED, depths=DEPTHS, num_heads=HEADS,
                            img_size=(h, w)).double().eval()
    state = {k[len("body."):].replace("layers.", "layers_", 1): v
             for k, v in ours.state_dict().items() if k.startswith("body.")}
    ref.load_state_dict(state, strict=True)
    img = torch.randn(1, 3, h, w, dtype=torch.float64)
    with torch.no_grad():
        a = list(ours(img).values())
        b = [norm(f.permute(0, 3, 1, 2)) for norm, f in zip(ours.out_norms, ref(img))]  # NHWC
    diff = [(x - y).abs().max().item() for x, y in zip(a, b)]
    if same:
        assert max(diff[:3]) < 1e-9
        assert diff[3] > 1e-2  # res5 is 12x12: timm drops the shift there, detectron2 does not
    else:
        assert diff[0] > 1e-2  # 96x160: shift-then-pad differs from pad-then-shift
