"""detectron2 -> ours: key map on synthetic checkpoints with the released key names and shapes.

Full-size Swin-B/L and stock Mask2Former key sets are checked on meta tensors (no weights). At CPU
size, gradients of each model output with respect to each *detectron2* tensor (through the
conversion, ``functional_call``) show where every weight lands; the expected sets follow
detectron2's data flow (stage s merges into s+1, norm{i} only on res{i+2}, adapter_k / layer_k on
res{k+1}, the query-only prediction uses query_feat only, ...).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch.func import functional_call

from d2_synthetic import (M2F_SWIN_B_CITYSCAPES, PD, PR, SWIN_B_1DL, SWIN_L_1DL, TINY_1DL, D2Arch,
                          d2_state_dict)
from rba_core.checkpoint import (ConversionError, convert_detectron2, infer_config_from_keys,
                                 load_model)
from rba_core.checkpoint.detectron2 import dropped_keys, expected_shapes
from rba_core.cli import main
from rba_core.model import ModelConfig, build_model
from test_swin_d2 import ref_swin

TINY_3L = D2Arch(**{**TINY_1DL.__dict__, "enc_in": ("res3", "res4", "res5"), "dec_layers": 4,
                    "rba_decoder_levels": False})


def tiny(arch=TINY_1DL, preset="rba_swin_b_1dl", seed=0):
    sd = d2_state_dict(arch, seed=seed)
    cfg, _ = infer_config_from_keys(sd, ModelConfig.preset(preset))
    return sd, cfg


# ---- full-size key sets (meta tensors) ---------------------------------------------------------
@pytest.mark.parametrize("arch,preset", [(SWIN_B_1DL, "rba_swin_b_1dl"),
                                         (SWIN_L_1DL, "rba_swin_l_1dl"),
                                         (M2F_SWIN_B_CITYSCAPES, "m2f_swin_b_cityscapes")])
def test_full_size_released_layouts_match_presets(arch, preset):
    sd = d2_state_dict(arch, device="meta")
    cfg, adjusted = infer_config_from_keys(sd, ModelConfig.preset(preset))
    assert adjusted == []  # the preset is exactly the released architecture
    out = convert_detectron2(sd, cfg)
    assert {k: tuple(v.shape) for k, v in out.items()} == expected_shapes(cfg)
    kept = [k for k in sd if k not in dropped_keys(sd)]
    assert len(out) == len(kept)
    assert sum(v.numel() for v in out.values()) == sum(sd[k].numel() for k in kept)
    assert all(v.is_meta for v in out.values())


def test_released_swin_b_numbers():
    """Independent figures of the release: 24 Swin blocks, DEC_LAYERS 2, 19 classes."""
    sd = d2_state_dict(SWIN_B_1DL, device="meta")
    cfg, _ = infer_config_from_keys(sd, ModelConfig.preset("rba_swin_b_1dl"))
    assert cfg.backbone.kwargs["depths"] == [2, 2, 18, 2] and cfg.decoder.layers == 1
    assert cfg.pixel_decoder.encoder_levels == 1 and cfg.pixel_decoder.encoder_layers == 6
    dropped = dropped_keys(sd)
    assert len(dropped) == 24 + 1  # relative_position_index per block + criterion.empty_weight


# ---- where each weight lands -------------------------------------------------------------------
def influence(sd, cfg, names=None, size=(32, 64)):
    """{output name: detectron2 keys with a non-zero gradient on it}."""
    src = {k: (v.clone().requires_grad_() if v.is_floating_point() else v) for k, v in sd.items()}
    ours = convert_detectron2(src, cfg)
    model = build_model(cfg).eval()

    def sub(prefix):
        return {k[len(prefix):]: v for k, v in ours.items() if k.startswith(prefix)}

    torch.manual_seed(1)
    x = model.preprocess(torch.randint(0, 256, (1, 3, *size), dtype=torch.uint8))
    feats = functional_call(model.backbone, sub("backbone."), (x,))
    mf, ms = functional_call(model.pixel_decoder, sub("pixel_decoder."), (feats,))
    dec = functional_call(model.decoder, sub("decoder."), (ms, mf), {"with_aux": True})
    outputs = {**feats, "level0": ms[0], "level1": ms[1], "level2": ms[2], "mask_features": mf,
               "query_only_logits": dec["aux_outputs"][0]["pred_logits"],
               "logits": dec["pred_logits"], "masks": dec["pred_masks"]}
    keys = [k for k in sd if src[k].requires_grad and k not in dropped_keys(sd)]
    found = {}
    for name in names or outputs:
        o = outputs[name]
        grads = torch.autograd.grad((o * torch.randn_like(o)).sum(), [src[k] for k in keys],
                                    retain_graph=True, allow_unused=True)
        found[name] = {k for k, g in zip(keys, grads) if g is not None and g.abs().max() > 0}
    return found, keys, src, outputs


def test_every_rba_weight_lands_where_detectron2_uses_it():
    sd, cfg = tiny()
    found, keys, _, _ = influence(sd, cfg)

    def having(*prefixes):
        return {k for k in keys if k.startswith(prefixes)}

    stage = [having(f"backbone.layers.{s}.blocks.") for s in range(4)]
    merge = [having(f"backbone.layers.{s}.downsample.") for s in range(3)]  # end of stage s
    path = having("backbone.patch_embed.")
    res = []
    for i in range(4):
        path = path | stage[i] | (merge[i - 1] if i else set())
        res.append(path | having(f"backbone.norm{i}."))
    level0 = res[3] | having(PD + "input_proj.0.", PD + "transformer.")
    level1 = level0 | res[2] | having(PD + "adapter_3.", PD + "layer_3.")  # res4
    level2 = level1 | res[1] | having(PD + "adapter_2.", PD + "layer_2.")  # res3
    mask_features = level2 | res[0] | having(PD + "adapter_1.", PD + "layer_1.",
                                             PD + "mask_features.")
    predictor = having(PR)
    expected = {
        "res2": res[0], "res3": res[1], "res4": res[2], "res5": res[3],
        "level0": level0, "level1": level1, "level2": level2, "mask_features": mask_features,
        # prediction from the learnable queries alone
        "query_only_logits": having(PR + "query_feat.", PR + "decoder_norm.", PR + "class_embed."),
        # one masked-attention layer on level 0 (the encoder output); the mask is detached
        "logits": level0 | (predictor - having(PR + "mask_embed.")),
        "masks": mask_features | (predictor - having(PR + "class_embed.")),
    }
    for name, want in expected.items():
        assert found[name] == want, (name, sorted(found[name] ^ want)[:8])
    assert set().union(*found.values()) == set(keys)  # nothing converted and then unused


def test_stock_three_level_layout_uses_levels_round_robin():
    for dec_layers, used_rows in ((4, {0, 1, 2}), (3, {0, 1})):
        arch = D2Arch(**{**TINY_3L.__dict__, "dec_layers": dec_layers})
        sd, cfg = tiny(arch, "m2f_swin_b_cityscapes")
        assert cfg.pixel_decoder.encoder_levels == 3 and cfg.decoder.layers == dec_layers - 1
        names = ["level0", "level1", "level2", "logits", "masks"] if dec_layers == 4 else []
        found, keys, src, outputs = influence(sd, cfg, names)
        if names:
            assert set().union(*found.values()) == set(keys)
            assert found["level0"] == found["level1"] == found["level2"]  # one deformable encoder
            assert not any(k.startswith(PD + "adapter_2") for k in keys)  # FPN only for res2
        grad = torch.autograd.grad(outputs["logits"].sum(), src[PR + "level_embed.weight"],
                                   retain_graph=True)[0]
        assert {i for i in range(3) if grad[i].abs().max() > 0} == used_rows


def test_backbone_matches_the_detectron2_reference_after_conversion():
    sd, cfg = tiny()
    model = build_model(cfg).eval()
    model.load_state_dict(convert_detectron2(sd, cfg), strict=True)
    img = torch.randint(0, 256, (1, 3, 70, 100), dtype=torch.uint8)
    x = model.preprocess(img)
    with torch.no_grad():
        ours = list(model.backbone(x).values())
        ref = ref_swin(x, {k[len("backbone."):]: v for k, v in sd.items()
                           if k.startswith("backbone.")}, TINY_1DL.window,
                       depths=TINY_1DL.depths, heads=TINY_1DL.heads)
    for a, r in zip(ours, ref):
        assert (a - r).abs().max().item() < 1e-4


def test_conversion_is_lossless_and_numpy_is_accepted():
    sd, cfg = tiny()
    out = convert_detectron2({k: v.numpy() for k, v in sd.items()}, cfg)
    kept = {k: v for k, v in sd.items() if k not in dropped_keys(sd)}
    values = sorted(hashlib.sha1(v.numpy().tobytes()).hexdigest() for v in kept.values())
    level = out["decoder.level_embed.weight"]
    assert torch.equal(level[0], sd[PR + "level_embed.weight"][0]) and not level[1:].any()
    out["decoder.level_embed.weight"] = level[:1]  # undo the padding of unused levels
    assert sorted(hashlib.sha1(v.numpy().tobytes()).hexdigest() for v in out.values()) == values
    model = build_model(cfg)
    model.load_state_dict(convert_detectron2(sd, cfg), strict=True)


# ---- loud failures -----------------------------------------------------------------------------
def test_unmapped_missing_and_misshaped_keys_are_all_listed():
    sd, cfg = tiny()
    sd[PR + "ood_pred.conv.weight"] = torch.zeros(2, 64, 1, 1)  # an RbA variant we do not support
    del sd[PD + "adapter_2.norm.bias"]
    sd[PD + "layer_2.weight"] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(ConversionError) as err:
        convert_detectron2(sd, cfg)
    msg = str(err.value)
    assert "1 unmapped detectron2 key(s):\n  sem_seg_head.predictor.ood_pred.conv.weight" in msg
    assert "1 missing key(s):\n  pixel_decoder.adapters.1.norm.bias" in msg
    assert ("sem_seg_head.pixel_decoder.layer_2.weight -> pixel_decoder.layers.1.conv.weight: "
            "checkpoint (64, 64, 1, 1) vs model (64, 64, 3, 3)") in msg


def test_wrong_classes_and_foreign_checkpoints_are_refused():
    sd = d2_state_dict(D2Arch(**{**TINY_1DL.__dict__, "classes": 11}))
    with pytest.raises(ConversionError, match="predicts 11 classes but preset 'rba_swin_b_1dl'"):
        infer_config_from_keys(sd, ModelConfig.preset("rba_swin_b_1dl"))
    resnet = {"backbone.res2.0.conv1.weight": torch.zeros(64, 64, 1, 1)}
    with pytest.raises(ConversionError, match="not a detectron2 Swin Mask2Former checkpoint"):
        infer_config_from_keys(resnet, ModelConfig.preset("rba_swin_b_1dl"))


def test_one_level_decoder_with_several_layers_keeps_its_level():
    """RbA's decoder attends as many levels as the encoder has (1): every layer uses level 0."""
    sd, cfg = tiny(D2Arch(**{**TINY_1DL.__dict__, "dec_layers": 3}))
    assert cfg.decoder.levels == 1 and cfg.decoder.layers == 2
    model = build_model(cfg)
    model.load_state_dict(convert_detectron2(sd, cfg), strict=True)
    assert model.decoder.level_embed.weight.shape[0] == 1


def test_input_normalisation_is_checked_when_present():
    sd, cfg = tiny()
    sd["pixel_mean"] = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    convert_detectron2(sd, cfg)
    sd["pixel_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    with pytest.raises(ConversionError, match="pixel_mean"):
        convert_detectron2(sd, cfg)


# ---- rba convert ---------------------------------------------------------------------------------
def test_rba_convert_cli(tmp_path, capsys):
    sd, cfg = tiny()
    src = tmp_path / "model_final.pth"
    torch.save({"model": sd, "iteration": 1999, "__author__": "synthetic"}, src)
    out = tmp_path / "rba.safetensors"
    assert main(["convert", str(src), str(out), "--preset", "swin_b_1dl_rba_ood_coco"]) == 0
    text = capsys.readouterr().out
    assert "classes:    19: road, sidewalk" in text
    assert "1 masked-attention layer(s) (detectron2 DEC_LAYERS 2)" in text
    assert "dropped:    9 unused key(s): relative_position_index x8, criterion.empty_weight" in text
    assert "trainer state: iteration, __author__" in text
    assert "backbone.kwargs.depths: [2, 2, 18, 2] -> [2, 2, 2, 2]" in text  # tiny, not Swin-B

    model = load_model(out)
    assert model.cfg.name == "swin_b_1dl_rba_ood_coco"
    assert model.info["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    ref = build_model(cfg).eval()
    ref.load_state_dict(convert_detectron2(sd, cfg))
    img = torch.randint(0, 256, (1, 3, 50, 70), dtype=torch.uint8)
    assert torch.equal(model.semantic(img), ref.semantic(img))

    bad = tmp_path / "bad.pth"
    torch.save({"model": {**sd, "sem_seg_head.predictor.extra": torch.zeros(1)}}, bad)
    assert main(["convert", str(bad), str(tmp_path / "bad.safetensors")]) == 2
    assert "sem_seg_head.predictor.extra" in capsys.readouterr().err
    assert not (tmp_path / "bad.safetensors").exists()


def test_auto_preset_and_numpy_pkl(tmp_path, capsys):
    import pickle

    sd = d2_state_dict(TINY_3L)
    src = tmp_path / "model_final.pkl"  # detectron2 model-zoo style: numpy arrays, pickle.dump
    with open(src, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in sd.items()}, "__author__": "zoo",
                     "matching_heuristics": True}, f, protocol=2)
    out = tmp_path / "m2f.safetensors"
    assert main(["convert", str(src), str(out)]) == 0
    assert "model:      m2f_swin_b_cityscapes" in capsys.readouterr().out
    model = load_model(out)
    assert model.cfg.decoder.layers == 3 and model.cfg.pixel_decoder.encoder_levels == 3
    assert np.allclose(model.state_dict()["decoder.query_feat.weight"].numpy(),
                       sd[PR + "query_feat.weight"].numpy())
