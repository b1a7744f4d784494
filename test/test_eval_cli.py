"""`rba eval` end to end on real images, checked against an independent scikit-learn computation."""
import json

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import auc, average_precision_score, confusion_matrix, roc_curve

from conftest import require
from rba_core.checkpoint import save_model
from rba_core.cli import main
from rba_core.data.datasets import open_dataset
from rba_core.metrics import ComponentMetrics, SmiycPixelMetrics
from rba_core.model import ModelConfig, build_model
from rba_core.runtime import load_backend

SCORES = ["rba", "max_logit", "entropy"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("tiny", decoder={"num_queries": 8}))
    return save_model(model, tmp_path_factory.mktemp("model") / "tiny.safetensors")


def maps(model_file, dataset, mode, scores=SCORES, resize=None):
    """Anomaly maps and class ids per image from the plain single-mode backend.

    resize (W, H): the network sees the image resized (bilinear); maps come back bilinearly.
    """
    backend = load_backend(str(model_file), "torch", scores, mode, "cpu")
    out = []
    for sample in dataset:
        image = sample.image if resize is None else cv2.resize(sample.image, resize)
        res = backend.infer(np.ascontiguousarray(image.transpose(2, 0, 1))[None]).frame(0)
        if resize is not None:
            h, w = sample.label.shape
            res.scores = {k: cv2.resize(v, (w, h)) for k, v in res.scores.items()}
        out.append((sample, res))
    return out


def test_eval_road_anomaly_matches_sklearn(data_dir, model_file, tmp_path):
    root = require(data_dir / "anomaly" / "RoadAnomaly")
    out = tmp_path / "eval"
    rc = main(["eval", "--model", str(model_file), "--backend", "torch", "--dataset",
               "road_anomaly", "--root", str(root), "--limit", "2", "--scores", ",".join(SCORES),
               "--inference", "exact,fast", "--resize", "512x288", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "results.json").read_text())
    assert report["num_images"] == 2 and report["protocol"] == "paper"
    assert report["resize"] == [288, 512]
    dataset = open_dataset("road_anomaly", root).subset(2)
    for mode in ("exact", "fast"):
        pairs = maps(model_file, dataset, mode, resize=(512, 288))
        assert pairs[0][1].scores["rba"].shape == (720, 1280)  # metrics at label resolution
        labels = np.concatenate([s.label.ravel() for s, _ in pairs])
        for score in SCORES:
            scores = np.concatenate([r.scores[score].ravel() for _, r in pairs])
            fpr, tpr, _ = roc_curve(labels, scores)
            got = report["results"][mode][score]
            assert abs(got["ap"] - average_precision_score(labels, scores)) < 1e-9
            assert abs(got["auroc"] - auc(fpr, tpr)) < 1e-9
            assert abs(got["fpr95"] - fpr[tpr > 0.95][0]) < 1e-9
        assert report["timing"]["postprocess_ms_per_image"][mode] > 0
    assert report["timing"]["network_ms_per_image"] > 0
    # one row per (score, mode) in the Markdown table, percent values
    md = (out / "results.md").read_text()
    rba_exact = f"| rba | exact | {100 * report['results']['exact']['rba']['auroc']:.2f} |"
    assert rba_exact in md and md.count("| fast |") == len(SCORES)
    for name in report["files"]:
        assert (out / name).is_file()
        if name.endswith(".png"):
            assert cv2.imread(str(out / name)) is not None
    assert {"roc_exact.png", "pr_exact.png", "roc_fast.png", "pr_fast.png"} <= set(report["files"])
    assert any(f.startswith("panels/best_1_") for f in report["files"])


def smiyc_layout(data_dir, tmp_path):
    """2 real fs_static frames, downscaled, in the official SMIYC layout and names."""
    src = require(data_dir / "anomaly" / "fs_static")
    root = tmp_path / "dataset_AnomalyTrack"
    for i in (0, 1):
        image = cv2.resize(cv2.imread(str(src / "images" / f"{i}.jpg")), (384, 192))
        label = cv2.resize(cv2.imread(str(src / "labels_masks" / f"{i}.png"), cv2.IMREAD_UNCHANGED),
                           (384, 192), interpolation=cv2.INTER_NEAREST)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels_masks").mkdir(exist_ok=True)
        assert cv2.imwrite(str(root / "images" / f"validation{i:04d}.webp"), image)
        assert cv2.imwrite(str(root / "labels_masks" / f"validation{i:04d}_labels_semantic.png"),
                           label)
    return root


def test_eval_smiyc_protocol_on_official_layout(data_dir, model_file, tmp_path):
    root = smiyc_layout(data_dir, tmp_path)
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(model_file), "--backend", "torch", "--dataset",
                 "smiyc_anomaly", "--root", str(root), "--scores", "msp", "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["protocol"] == "smiyc" and report["track"] == "anomaly"
    got = report["results"]["exact"]["msp"]
    # the same metrics from independently computed maps
    pairs = maps(model_file, open_dataset("smiyc_anomaly", root), "exact", ["msp"])
    pixel, comp = SmiycPixelMetrics(), ComponentMetrics("anomaly")
    for sample, res in pairs:
        pixel.add(res.scores["msp"], sample.label)
    ref = pixel.result()
    for sample, res in pairs:
        comp.add(res.scores["msp"], sample.label, ref["best_f1_threshold"])
    ref.update(comp.result())
    for key in ("ap", "fpr95", "best_f1", "best_f1_threshold", "siou_gt", "mean_f1"):
        assert got[key] == pytest.approx(ref[key], abs=1e-12, nan_ok=True), key
    labels = np.concatenate([s.label.ravel() for s, _ in pairs])
    scores = np.concatenate([r.scores["msp"].ravel() for _, r in pairs])
    keep = labels != 255
    assert abs(got["ap"] - average_precision_score(labels[keep], scores[keep])) < 0.01
    assert not list(out.glob("smiyc_maps_*"))  # the temporary map cache is gone
    assert "| msp | exact |" in (out / "results.md").read_text()
    # --smiyc-float16: the leaderboard's float16 maps, pixel and component metrics alike
    out16 = tmp_path / "eval16"
    assert main(["eval", "--model", str(model_file), "--backend", "torch", "--dataset",
                 "smiyc_anomaly", "--root", str(root), "--scores", "msp", "--smiyc-float16",
                 "--out", str(out16)]) == 0
    report16 = json.loads((out16 / "results.json").read_text())
    assert report16["smiyc_float16"] is True and report["smiyc_float16"] is False
    pixel, comp = SmiycPixelMetrics(float16=True), ComponentMetrics("anomaly", float16=True)
    for sample, res in pairs:
        pixel.add(res.scores["msp"].astype(np.float16), sample.label)
    ref16 = pixel.result()
    for sample, res in pairs:
        comp.add(res.scores["msp"].astype(np.float16), sample.label, ref16["best_f1_threshold"])
    ref16.update(comp.result())
    got16 = report16["results"]["exact"]["msp"]
    for key in ("ap", "fpr95", "best_f1", "best_f1_threshold", "siou_gt", "mean_f1"):
        assert got16[key] == pytest.approx(ref16[key], abs=1e-12, nan_ok=True), key


def test_eval_camvid_miou(data_dir, model_file, tmp_path):
    root = require(data_dir / "camvid")
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(model_file), "--backend", "torch", "--dataset", "camvid",
                 "--root", str(root), "--limit", "2", "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    pairs = maps(model_file, open_dataset("camvid", root).subset(2), "exact")
    labels = np.concatenate([s.label.ravel() for s, _ in pairs])
    pred = np.concatenate([r.class_ids.ravel() for _, r in pairs])
    cm = confusion_matrix(labels[labels != 11], pred[labels != 11], labels=range(11))
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    iou = np.diag(cm)[union > 0] / union[union > 0]
    assert report["closed_set"]["exact"]["miou"] == pytest.approx(iou.mean(), abs=1e-12)
    assert len(report["closed_set"]["exact"]["per_class_iou"]) == 11


def test_eval_errors(data_dir, model_file, tmp_path, capsys):
    def error(*args):
        assert main(["eval", "--model", str(model_file), "--out", str(tmp_path / "o"), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        return err[-1]

    assert error("--dataset", "road_anomaly", "--root", str(tmp_path / "x")) == \
        f"rba eval: error: dataset root not found: {tmp_path / 'x'}"
    (tmp_path / "ra" / "images").mkdir(parents=True)
    (tmp_path / "ra" / "labels_masks").mkdir()
    cv2.imwrite(str(tmp_path / "ra" / "images" / "0.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert "1 images but 0 labels" in error("--dataset", "road_anomaly", "--root",
                                            str(tmp_path / "ra"))
    real = require(data_dir / "anomaly" / "RoadAnomaly")
    assert "unknown score 'foo'" in error("--dataset", "road_anomaly", "--root", str(real),
                                          "--scores", "rba,foo")
    assert "--inference takes distinct modes" in error("--dataset", "road_anomaly", "--root",
                                                       str(real), "--inference", "exact,slow")
    assert "--resize must be WIDTHxHEIGHT" in error("--dataset", "road_anomaly", "--root",
                                                    str(tmp_path / "ra"), "--resize", "big")
    fixture = require(data_dir / "cityscapes_fixture")
    assert "has 11 classes but cityscapes has 19" in error("--dataset", "cityscapes", "--root",
                                                           str(fixture))


def test_eval_onnxruntime_exports_at_the_network_size(data_dir, model_file, tmp_path):
    """--backend onnxruntime without an .onnx: the graph is exported at the (resized) image size;
    class maps as eager PyTorch's (the export's tolerance), the report says what ran."""
    root = require(data_dir / "camvid")
    miou = {}
    for backend in ("onnxruntime", "torch"):
        out = tmp_path / backend
        assert main(["eval", "--model", str(model_file), "--backend", backend, "--dataset",
                     "camvid", "--root", str(root), "--limit", "2", "--resize", "128x96",
                     "--out", str(out)]) == 0
        report = json.loads((out / "results.json").read_text())
        miou[backend] = report["closed_set"]["exact"]["miou"]
        assert report["backend"] == backend
    assert report["runtime"]["input_size"] == "any"  # torch: any size
    onnx_report = json.loads((tmp_path / "onnxruntime" / "results.json").read_text())
    assert onnx_report["runtime"] == {"backend": "onnxruntime", "precision": "fp32",
                                      "input_size": "96x128", "building": "", "failed": "",
                                      "warmup": "wait"}
    assert "backend onnxruntime (fp32, input 96x128)" in \
        (tmp_path / "onnxruntime" / "results.md").read_text()
    assert miou["onnxruntime"] == pytest.approx(miou["torch"], abs=0.005)
