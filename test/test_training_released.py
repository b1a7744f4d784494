"""Training details that must equal the released RbA / Mask2Former code (rba_reference.md,
"RbA fine-tuning as released"): resize, weight decay groups, RbA loss, outlier pool, recipes."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rba_core.model import ModelConfig, build_model
from rba_core.training.config import CAMVID_SHORT_SIDES, AugmentSpec, SolverSpec
from rba_core.training.optim import build_optimizer
from rba_core.training.transforms import TrainTransform, random_resize


# -- resize ----------------------------------------------------------------------------------
def test_camvid_short_sides_are_the_released_factors_on_360_px():
    # released: int(x * 0.1 * 1024) for x = 5..20 (512 ... 2048); the same factors on 360 px
    assert len(CAMVID_SHORT_SIDES) == 16
    assert CAMVID_SHORT_SIDES[0] == 180 and CAMVID_SHORT_SIDES[5] == 360
    assert CAMVID_SHORT_SIDES[-1] == 720
    assert all(b - a == 36 for a, b in zip(CAMVID_SHORT_SIDES, CAMVID_SHORT_SIDES[1:]))


def test_resize_draws_only_the_listed_short_sides():
    sides = [100, 150, 240]
    image = np.zeros((360, 480, 3), np.uint8)
    label = np.zeros((360, 480), np.uint8)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        im, lab = random_resize(image, label, sides, 0, rng)
        assert im.shape[:2] == lab.shape
        seen.add(im.shape[:2])
    # aspect 4:3 kept, long side rounded half up: 100 -> 133.33 -> 133, 150 -> 200, 240 -> 320
    assert seen == {(100, 133), (150, 200), (240, 320)}
    # portrait images: the short side is the width; max_size caps the long side
    im, _ = random_resize(np.zeros((400, 100, 3), np.uint8), np.zeros((400, 100), np.uint8),
                          [50], 0, rng)
    assert im.shape[:2] == (200, 50)
    im, _ = random_resize(np.zeros((400, 100, 3), np.uint8), np.zeros((400, 100), np.uint8),
                          [50], 120, rng)
    assert im.shape[:2] == (120, 30)


def test_resize_equals_pil_bilinear_and_nearest():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (36, 48, 3), dtype=np.uint8)
    label = rng.integers(0, 12, (36, 48), dtype=np.uint8)
    for side in (18, 72):  # shrink and enlarge
        im, lab = random_resize(image, label, [side], 0, np.random.default_rng(0))
        size = (im.shape[1], im.shape[0])
        np.testing.assert_array_equal(im, np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)))
        np.testing.assert_array_equal(lab, np.asarray(Image.fromarray(label).resize(size, Image.NEAREST)))
        assert set(np.unique(lab)) <= set(np.unique(label))  # no interpolated label values


def test_shrinking_is_antialiased():
    # a 1-px checkerboard halved: an antialiased filter averages it to ~127 everywhere, while plain
    # bilinear sampling at the pixel centres (OpenCV INTER_LINEAR) lands on single pixels
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    image = np.repeat(checker[..., None], 3, axis=2)
    im, _ = random_resize(image, checker, [32], 0, np.random.default_rng(0))
    assert im.shape[:2] == (32, 32)
    assert np.abs(im[2:-2, 2:-2].astype(float) - 127.5).max() < 2


def test_train_transform_output_is_the_crop():
    aug = AugmentSpec(short_sides=[64, 96], crop_size=[64, 64])
    t = TrainTransform(aug, ignore=11)
    im, lab = t(np.zeros((90, 120, 3), np.uint8), np.zeros((90, 120), np.uint8),
                np.random.default_rng(0))
    assert im.shape == (64, 64, 3) and lab.shape == (64, 64)


# -- weight decay groups -----------------------------------------------------------------------
def test_weight_decay_groups_as_released():
    """Released Mask2Former: norms and nn.Embedding at 0, everything else (the pixel decoder's
    level_embed included: a bare nn.Parameter) at the normal 0.05."""
    model = build_model(ModelConfig.preset("tiny"))
    opt, _ = build_optimizer(model, SolverSpec(weight_decay=0.05, lr=1e-4))
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    by_name = {n: wd[id(p)] for n, p in model.named_parameters()}
    assert by_name["pixel_decoder.encoder.level_embed"] == 0.05
    for name in ("decoder.level_embed.weight", "decoder.query_feat.weight",
                 "decoder.query_embed.weight", "decoder.decoder_norm.weight"):
        assert by_name[name] == 0.0, name
    assert by_name["decoder.class_embed.weight"] == 0.05
    assert by_name["decoder.mask_embed.layers.0.bias"] == 0.05
    # every BatchNorm / GroupNorm / LayerNorm parameter at 0, every conv weight at 0.05
    import torch.nn as nn
    for mod_name, mod in model.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}"
            if isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                assert by_name[full] == 0.0, full
            elif isinstance(mod, nn.Conv2d):
                assert by_name[full] == 0.05, full


# -- RbA loss: released criterion ---------------------------------------------------------------
def _upsample_align_corners(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling with align_corners=True, separably with np.interp: [h0, w0] -> [h, w]."""
    h0, w0 = x.shape
    ys, xs = np.linspace(0, h0 - 1, h), np.linspace(0, w0 - 1, w)
    rows = np.stack([np.interp(ys, np.arange(h0), x[:, j]) for j in range(w0)], 1)  # [h, w0]
    return np.stack([np.interp(xs, np.arange(w0), rows[i]) for i in range(h)], 0)


def _released_rba_term(logits: np.ndarray, masks: np.ndarray, labels: np.ndarray,
                       alpha: float = 5.0) -> float:
    """The released per-prediction outlier loss, by hand: logits [Q, K+1], masks [Q, h, w]."""
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)  # softmax over K+1
    sem = np.einsum("qk,qhw->khw", p[:, :-1], 1 / (1 + np.exp(-masks)))
    s = _upsample_align_corners(-np.tanh(sem).sum(0), *labels.shape)
    inlier = (labels != 254) & (labels != 255)
    loss = np.mean(np.maximum(s[inlier], 0) ** 2)  # always 0: s <= 0
    if (labels == 254).any():
        loss = 0.5 * (loss + np.mean(np.maximum(alpha - s[labels == 254], 0) ** 2))
    return loss


def _prediction(rng):
    import torch
    return {"pred_logits": torch.tensor(rng.normal(0, 2, (1, 3, 4)), dtype=torch.float32),
            "pred_masks": torch.tensor(rng.normal(0, 2, (1, 3, 2, 3)), dtype=torch.float32)}


@pytest.mark.parametrize("n_aux", [1, 3])  # decoder layers 1 (DEC_LAYERS 2) and 3
def test_rba_loss_on_final_and_every_aux_prediction_by_hand(n_aux):
    import torch

    from rba_core.training.config import LossSpec
    from rba_core.training.criterion import SetCriterion
    rng = np.random.default_rng(n_aux)
    outputs = _prediction(rng)
    outputs["aux_outputs"] = [_prediction(rng) for _ in range(n_aux)]
    labels = np.array([[0, 254, 1, 254, 255, 2, 254]] * 5)  # outlier, inlier and void pixels
    crit = SetCriterion(3, LossSpec(num_points=16, rba="hinge"), ignore_label=255)
    losses = crit(outputs, torch.tensor(labels)[None])
    names = ["loss_rba"] + [f"loss_rba_{i}" for i in range(n_aux)]
    assert sorted(k for k in losses if k.startswith("loss_rba")) == sorted(names)
    for name, out in zip(names, [outputs] + outputs["aux_outputs"]):
        ref = _released_rba_term(out["pred_logits"][0].numpy(), out["pred_masks"][0].numpy(), labels)
        assert ref > 12.5  # 0.5 * alpha^2 is the floor
        assert losses[name].item() == pytest.approx(ref, rel=1e-5), name
    # the pre-issue-14 objective stays available, named for what it is: final prediction only,
    # weight 2 (= 1.0 x the squared hinge)
    old = SetCriterion(3, LossSpec(num_points=16, rba="hinge", rba_aux=False, rba_weight=2.0), 255)
    old_losses = old(outputs, torch.tensor(labels)[None])
    assert [k for k in old_losses if k.startswith("loss_rba")] == ["loss_rba"]
    final = labels == 254
    s = _upsample_align_corners(-np.tanh(np.einsum(
        "qk,qhw->khw", torch.softmax(outputs["pred_logits"][0], -1)[:, :-1].numpy(),
        torch.sigmoid(outputs["pred_masks"][0]).numpy())).sum(0), *labels.shape)
    assert old_losses["loss_rba"].item() == pytest.approx(np.mean((5 - s[final]) ** 2), rel=1e-5)


@pytest.mark.parametrize("layers", [1, 3])
def test_tiny_model_gets_one_rba_loss_per_prediction(layers):
    import torch

    from rba_core.training.config import LossSpec
    from rba_core.training.criterion import SetCriterion
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("tiny", decoder={"layers": layers, "num_queries": 8}))
    outputs = model(torch.rand(1, 3, 64, 64) * 255)
    assert len(outputs["aux_outputs"]) == layers  # query-only prediction + one per layer but last
    labels = np.full((64, 64), 3)
    labels[10:30, 20:40] = 254
    crit = SetCriterion(11, LossSpec(num_points=64, rba="hinge"), ignore_label=11)
    losses = crit(outputs, torch.tensor(labels)[None])
    preds = [outputs] + outputs["aux_outputs"]
    names = ["loss_rba"] + [f"loss_rba_{i}" for i in range(layers)]
    for name, out in zip(names, preds):
        # labels use ignore 11 here: map it to the 255 of the hand formula
        lab = np.where(labels == 11, 255, labels)
        ref = _released_rba_term(out["pred_logits"][0].detach().numpy(),
                                 out["pred_masks"][0].detach().numpy(), lab)
        assert losses[name].item() == pytest.approx(ref, rel=1e-4), name


# -- outlier pool (Meta-OoD's script, as released) ----------------------------------------------
def _tiny_coco(tmp_path):
    """4 images: kite + crowd kite, crowd person only, no annotation, car. Returns the JSON path."""
    import json

    import cv2
    from pycocotools import mask as mask_util
    h, w = 40, 60
    images = []
    for i in range(1, 5):
        name = f"{i:03d}.jpg"
        cv2.imwrite(str(tmp_path / name), np.full((h, w, 3), 40 * i, np.uint8))
        images.append({"id": i, "file_name": name, "height": h, "width": w})
    crowd = np.zeros((h, w), np.uint8, order="F")
    crowd[30:36, 40:50] = 1  # 60 px
    rle = mask_util.encode(crowd)
    rle["counts"] = rle["counts"].decode()
    square = [[5.0, 5.0, 15.0, 5.0, 15.0, 15.0, 5.0, 15.0]]  # 10 x 10 polygon
    anns = [
        {"id": 1, "image_id": 1, "category_id": 38, "segmentation": square, "iscrowd": 0,
         "area": 100.0, "bbox": [5, 5, 10, 10]},
        {"id": 2, "image_id": 1, "category_id": 38, "segmentation": rle, "iscrowd": 1,
         "area": 60.0, "bbox": [40, 30, 10, 6]},
        {"id": 3, "image_id": 2, "category_id": 1, "segmentation": rle, "iscrowd": 1,
         "area": 60.0, "bbox": [40, 30, 10, 6]},
        {"id": 4, "image_id": 4, "category_id": 3, "segmentation": square, "iscrowd": 0,
         "area": 100.0, "bbox": [5, 5, 10, 10]},
    ]
    cats = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 38, "name": "kite"}]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def test_outlier_pool_keeps_crowd_regions_and_images_without_annotations(tmp_path):
    from rba_core.training.anomalymix import OutlierBank, paste
    bank = OutlierBank.from_source(str(_tiny_coco(tmp_path)), num_objects=300)
    # image 2 (only a crowd person) and 4 (a car) are excluded; 1 and 3 stay
    assert sorted(o.source for o in bank.objects) == ["001.jpg", "003.jpg"]
    kite = next(o for o in bank.objects if o.source == "001.jpg")
    # the mask is the union of the polygon (pycocotools rasterises it) and the crowd region
    assert kite.mask.shape == (31, 45)  # rows 5..35, columns 5..49
    assert kite.mask[25:31, 35:45].all() and kite.mask.sum() > 60 + 90
    empty = next(o for o in bank.objects if o.source == "003.jpg")
    assert not empty.mask.any()
    image, label = np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.uint8)
    out_image, out_label = paste(image, label, empty, np.random.default_rng(0), 254)
    assert (out_image == image).all() and (out_label == label).all()  # pastes nothing


def test_outlier_pool_keeps_yolo_images_without_a_label_file(tmp_path):
    import cv2

    from rba_core.training.anomalymix import OutlierBank
    for sub in ("images/train", "labels/train"):
        (tmp_path / sub).mkdir(parents=True)
    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / "images/train" / f"{name}.jpg"), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / "labels/train/a.txt").write_text("33 0.1 0.1 0.5 0.1 0.5 0.5\n")  # kite
    (tmp_path / "labels/train/b.txt").write_text("2 0.1 0.1 0.5 0.1 0.5 0.5\n")  # car
    bank = OutlierBank.from_source(str(tmp_path))
    assert sorted(Path(o.source).name for o in bank.objects) == ["a.jpg", "c.jpg"]
    assert [o.mask.any() for o in sorted(bank.objects, key=lambda o: o.source)] == [True, False]


# -- the released *_map_coco recipes (Cityscapes + Mapillary Vistas) ----------------------------
# Cityscapes train id -> a Mapillary Vistas v1.2 id of that class (from Mapillary's category list:
# 13 road, 15 sidewalk, 17 building, 6 wall, 3 fence, 45 pole, 48 traffic light, 50 traffic sign
# (front), 30 vegetation, 29 terrain, 27 sky, 19 person, 20 bicyclist, 55 car, 61 truck, 54 bus,
# 58 on rails, 57 motorcycle, 52 bicycle)
TRAIN_ID_TO_MAPILLARY = [13, 15, 17, 6, 3, 45, 48, 50, 30, 29, 27, 19, 20, 55, 61, 54, 58, 57, 52]
MAP_RECIPES = ["cityscapes_swin_b_1dl_rba_map_coco.yaml", "cityscapes_swin_l_1dl_rba_map_coco.yaml"]


@pytest.mark.parametrize("name", MAP_RECIPES)
def test_map_coco_recipes_are_the_released_settings(name, monkeypatch):
    from conftest import REPO
    from rba_core.training.config import TrainConfig
    cfg = TrainConfig.load(str(REPO / "training" / name))
    swin_l = "swin_l" in name
    assert cfg.anomaly_mix.p_out == 0.5 and cfg.anomaly_mix.num_objects == 50000
    assert cfg.anomaly_mix.min_side == 480
    assert cfg.solver.lr == (1e-5 if swin_l else 1e-4)
    assert cfg.solver.iterations == (90000 if swin_l else 30000)
    assert cfg.solver.scope == "head" and cfg.solver.batch_size == 16
    assert cfg.augment.short_sides == [1024, 1228] and cfg.augment.max_size == 8192
    assert cfg.train.kind == "cityscapes" and len(cfg.train_extra) == 1
    mapping = {int(k): v for k, v in cfg.train_extra[0].label_map.items()}
    for train_id, mapillary_id in enumerate(TRAIN_ID_TO_MAPILLARY):
        assert mapping[mapillary_id] == train_id
    # void, animals, other barriers, water ... are not mapped (void)
    assert not {0, 1, 4, 5, 31, 63, 64, 65} & set(mapping)


@pytest.mark.parametrize("name", MAP_RECIPES)
def test_map_coco_recipe_runs_two_iterations_on_the_fixtures(name, data_dir, tmp_path):
    """The recipe as shipped, pointed at the Cityscapes fixture, a Mapillary-coded copy of it and
    coco128-seg, with a tiny Cityscapes model and small sizes."""
    import json

    import cv2
    import yaml

    from conftest import REPO, require
    from rba_core.checkpoint import save_model
    from rba_core.model.config import CITYSCAPES_CLASSES, CITYSCAPES_COLORS
    from rba_core.training.config import TrainConfig
    from rba_core.training.trainer import Trainer
    fixture = require(data_dir / "cityscapes_fixture")
    coco = require(data_dir / "outliers" / "coco128-seg")
    frame = next((fixture / "leftImg8bit" / "val").rglob("*.png"))
    train_ids = cv2.imread(str(next((fixture / "gtFine" / "val").rglob("*labelTrainIds.png"))),
                           cv2.IMREAD_UNCHANGED)
    mapillary = tmp_path / "mapillary" / "training"
    (mapillary / "images").mkdir(parents=True)
    (mapillary / "labels").mkdir()
    cv2.imwrite(str(mapillary / "images" / "m.jpg"), cv2.imread(str(frame)))
    lut = np.full(256, 65, np.uint8)  # 65 = Mapillary's "unlabeled"
    lut[:19] = TRAIN_ID_TO_MAPILLARY
    cv2.imwrite(str(mapillary / "labels" / "m.png"), lut[train_ids])

    data = yaml.safe_load((REPO / "training" / name).read_text())
    model = build_model(ModelConfig.preset("tiny", class_names=CITYSCAPES_CLASSES,
                                           colors=CITYSCAPES_COLORS, ignore_value=255,
                                           decoder={"num_queries": 8}))
    data["model"]["init"] = str(save_model(model, tmp_path / "init.safetensors"))
    data["train"] = data["val"] = {"kind": "cityscapes", "root": str(fixture), "split": "val"}
    data["train_extra"][0]["root"] = str(mapillary)
    data["anomaly_val"] = {}
    data["anomaly_mix"].update(source=str(coco), images="", num_objects=5)
    data["augment"].update(short_sides=[128], crop_size=[128, 256])
    data["loss"]["num_points"] = 256
    data["solver"].update(iterations=2, batch_size=2, amp=False)
    data.update(output_dir=str(tmp_path / "run"), num_workers=0, log_period=1, threads=1)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    trainer = Trainer(TrainConfig.load(str(path)))
    # the Mapillary copy, read through the recipe's label map, gives back the fixture's train ids
    from rba_core.training.data import open_training_set
    _, _, label = open_training_set(trainer.cfg.train_extra[0])[0]
    np.testing.assert_array_equal(label, np.where(train_ids < 19, train_ids, 255))
    trainer.run()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows if "loss" in r] == [1, 2]
    assert {"loss_rba", "loss_rba_0"} <= set(rows[0])
    assert (tmp_path / "run" / "model_final.safetensors").is_file()


# -- synthetic outliers (more variety without evaluation data) ----------------------------------
def test_synthetic_objects_are_reproducible_varied_shapes():
    from rba_core.training.synthetic import synthetic_object
    a_rgb, a_mask = synthetic_object(3, 5)
    b_rgb, b_mask = synthetic_object(3, 5)
    assert np.array_equal(a_rgb, b_rgb) and np.array_equal(a_mask, b_mask)
    objects = [synthetic_object(3, i) for i in range(40)]
    for rgb, mask in objects:
        assert rgb.dtype == np.uint8 and rgb.shape[:2] == mask.shape
        assert 120 <= min(mask.shape) and max(mask.shape) <= 480
        assert 0.05 < mask.mean() < 1.0  # a shape, not its box
        import cv2
        n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        assert n == 2  # one connected object (+ background)
    # varied: many distinct mean colours and both flat and textured fills
    means = {tuple(np.round(rgb[mask].mean(0) / 32).astype(int)) for rgb, mask in objects}
    stds = [rgb[mask].std(0).max() for rgb, mask in objects]  # per channel
    assert len(means) > 20 and min(stds) < 1 and max(stds) > 30


def test_outlier_bank_adds_synthetic_objects(tmp_path):
    from rba_core.training.anomalymix import OutlierBank
    bank = OutlierBank.from_source(str(_tiny_coco(tmp_path)), num_objects=300, synthetic=4)
    assert [o.source for o in bank.objects][-4:] == [f"synthetic/{i}" for i in range(4)]
    assert len(bank) == 2 + 4 and all(o.mask.any() for o in bank.objects[-4:])
    only = OutlierBank.from_source("", synthetic=3)
    assert len(only) == 3
