"""Dataset readers on the real folders (../shared/data) and on small synthetic layouts."""
import shutil

import cv2
import numpy as np
import pytest

from conftest import require
from rba_core.data.datasets import DatasetError, open_dataset, parse_label_map
from rba_core.model import CAMVID_CLASSES, CITYSCAPES_CLASSES


def read_raw(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_road_anomaly_real(data_dir):
    root = require(data_dir / "anomaly" / "RoadAnomaly")
    ds = open_dataset("road_anomaly", root)
    assert len(ds) == 60 and ds.task == "anomaly" and ds.protocol == "paper"
    assert [it.name for it in ds.items[:11]] == [str(i) for i in range(11)]
    for i in (0, 37):
        name, image, label = ds[i]
        assert image.shape == (720, 1280, 3) and image.dtype == np.uint8
        raw = read_raw(root / "labels_masks" / f"{name}.png")
        assert label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1}
        assert ((label == 1) == (raw == 2)).all() and (label == 1).any()
        bgr = cv2.imread(str(root / "images" / f"{name}.jpg"))
        assert (image == bgr[:, :, ::-1]).all()  # RGB order


def test_fs_static_real(data_dir):
    root = require(data_dir / "anomaly" / "fs_static")
    ds = open_dataset("fs_static", root)
    assert len(ds) == 30
    without_anomaly = 0
    for name, image, label in ds:
        assert image.shape == (1024, 2048, 3) and set(np.unique(label)) <= {0, 1, 255}
        assert (label == read_raw(root / "labels_masks" / f"{name}.png")).all()
        without_anomaly += not (label == 1).any()
    assert without_anomaly == 10  # as documented in the data README


def test_camvid_real(data_dir):
    root = require(data_dir / "camvid")
    ds = open_dataset("camvid", root)  # val split by default
    assert len(ds) == 101 and ds.task == "closed" and ds.ignore_index == 11
    assert ds.class_names == CAMVID_CLASSES and ds.items[0].name == "0016E5_07959"
    name, image, label = ds[0]
    assert image.shape == (360, 480, 3)
    assert (label == read_raw(root / "valannot" / f"{name}.png")).all() and label.max() <= 11
    assert len(open_dataset("camvid", root, split="train")) == 367


def test_cityscapes_fixture_train_ids_and_label_ids(data_dir, tmp_path):
    root = require(data_dir / "cityscapes_fixture")
    ds = open_dataset("cityscapes", root)
    assert len(ds) == 1 and ds.class_names == CITYSCAPES_CLASSES and ds.ignore_index == 255
    name, image, label = ds[0]
    gt = root / "gtFine" / "val" / "frankfurt" / f"{name}_gtFine_labelTrainIds.png"
    assert image.shape == (128, 256, 3) and (label == read_raw(gt)).all()
    # Without labelTrainIds the reader maps labelIds with cityscapesscripts' table. (The fixture's
    # two files were downscaled separately, so they disagree on a few boundary pixels.)
    copy = tmp_path / "cs"
    shutil.copytree(root, copy)
    (copy / gt.relative_to(root)).unlink()
    _, _, mapped = open_dataset("cityscapes", copy)[0]
    assert (mapped == label).mean() > 0.99
    ids = read_raw(str(gt).replace("labelTrainIds", "labelIds"))
    for label_id, train_id in {1: 255, 7: 0, 8: 1, 11: 2, 21: 8, 23: 10, 26: 13}.items():
        assert (ids == label_id).any() and (mapped[ids == label_id] == train_id).all()


def write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def rgb(h=8, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_road_anomaly_original_layout(tmp_path):
    raw = np.array([[0, 1, 2, 3]] * 2, np.uint8)  # background, road, anomaly, unknown
    write(tmp_path / "frames" / "sheep.jpg", rgb(2, 4))
    write(tmp_path / "frames" / "sheep.labels" / "labels_semantic.png", raw)
    (name, _, label), = list(open_dataset("road_anomaly", tmp_path))
    assert name == "sheep" and label.tolist() == [[0, 0, 1, 255]] * 2


def test_smiyc_official_layout_webp_and_unlabelled_frames(tmp_path):
    label = np.zeros((8, 10), np.uint8)
    label[2:4, 2:5], label[0] = 1, 255
    for fid in ("validation_1", "validation_2"):
        write(tmp_path / "images" / f"{fid}.webp", rgb())
        write(tmp_path / "labels_masks" / f"{fid}_labels_semantic.png", label)
    write(tmp_path / "images" / "test_1.webp", rgb())  # no public label
    ds = open_dataset("smiyc_obstacle", tmp_path)
    assert [s.name for s in ds] == ["validation_1", "validation_2"]
    assert ds.track == "obstacle" and ds.protocol == "smiyc"
    assert (ds[0].label == label).all() and ds[0].image.shape == (8, 10, 3)


def test_fishyscapes_original_labels_layout(tmp_path):
    write(tmp_path / "original" / "a.png", rgb())
    write(tmp_path / "labels" / "a.png", np.full((8, 10), 1, np.uint8))
    ds = open_dataset("fs_lost_found", tmp_path)
    assert ds.name == "fs_lost_found" and (ds[0].label == 1).all()


def test_folder_with_label_map(tmp_path):
    write(tmp_path / "images" / "x.jpg", rgb())
    mask = np.zeros((8, 10), np.uint8)
    mask[:, 3:6], mask[:, 6:] = 5, 9
    write(tmp_path / "masks" / "x.png", mask)
    label = open_dataset("folder", tmp_path, label_map="0:0,5:1")[0].label
    assert set(np.unique(label)) == {0, 1, 255} and (label[:, 3:6] == 1).all()
    closed = open_dataset("folder", tmp_path, label_map="0:3,5:4", task="closed")
    assert closed.task == "closed" and set(np.unique(closed[0].label)) == {3, 4, 255}
    with pytest.raises(DatasetError, match="must map to 0, 1 or 255"):
        open_dataset("folder", tmp_path, label_map="0:3")


def test_label_map_errors():
    assert parse_label_map(" 0:0, 2:1 ") == {0: 0, 2: 1}
    for bad in ("0-1", "0:300", ""):
        with pytest.raises(DatasetError):
            parse_label_map(bad)


def test_layout_errors_are_one_line(tmp_path):
    def error(*args, **kw):
        with pytest.raises(DatasetError) as info:
            open_dataset(*args, **kw)
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "not found" in error("road_anomaly", tmp_path / "nope")
    assert "no images/ folder" in error("fs_static", tmp_path)
    write(tmp_path / "images" / "0.jpg", rgb())
    write(tmp_path / "images" / "1.jpg", rgb())
    write(tmp_path / "labels_masks" / "0.png", np.zeros((8, 10), np.uint8))
    assert "2 images but 1 labels" in error("fs_static", tmp_path)
    write(tmp_path / "labels_masks" / "1.png", np.zeros((8, 10), np.uint8))
    write(tmp_path / "labels_masks" / "2.png", np.zeros((8, 10), np.uint8))
    assert "label(s) without an image" in error("road_anomaly", tmp_path)
    (tmp_path / "labels_masks" / "2.png").unlink()
    write(tmp_path / "labels_masks" / "1.png", np.zeros((4, 10), np.uint8))
    ds = open_dataset("fs_static", tmp_path)
    with pytest.raises(DatasetError, match="is 10x4 but its image is 10x8"):
        ds[1]
    assert "apply to the folder dataset only" in error("fs_static", tmp_path, label_map="0:0")
    assert "no leftImg8bit" in error("cityscapes", tmp_path)
