"""The embedded default model (rba_core/weights/default.safetensors) and the demo that runs it."""
import os
import subprocess
import sys

import pytest
from safetensors import safe_open

from rba_core.checkpoint.io import read_config
from rba_core.data.datasets import CAMVID_CLASSES, open_dataset
from rba_core.metrics import ConfusionMatrix
from rba_core.runtime import DEFAULT_MODEL, load_backend
from rba_core.runtime.loader import resolve_model_path

from conftest import REPO, require

DEMO = REPO / "rba_core" / "weights" / "demo"


def test_default_model_is_packaged_small_and_quantized():
    assert DEFAULT_MODEL.is_file(), "the default model is part of the package"
    assert DEFAULT_MODEL.stat().st_size < 20 * 2**20
    with safe_open(str(DEFAULT_MODEL), "np") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert {"I8", "F16"} <= dtypes and not dtypes & {"F32", "F64", "BF16"}, dtypes
    cfg, info = read_config(DEFAULT_MODEL)
    assert tuple(cfg.class_names) == tuple(CAMVID_CLASSES)
    assert info.get("dataset") == "camvid" and "recipe" in info
    assert (REPO / "rba_core" / "weights" / "MODEL_CARD.md").is_file()


def test_no_model_argument_means_the_default_model():
    assert resolve_model_path(None) == str(DEFAULT_MODEL)
    backend = load_backend(None, backend="torch")
    assert backend.info.class_names == list(CAMVID_CLASSES)


def test_default_model_segments_real_camvid_frames(data_dir):
    """Trained, not random: most pixels of held-out CamVid val frames get their true class."""
    ds = open_dataset("camvid", require(data_dir / "camvid"))
    backend = load_backend(None, backend="torch", scores="rba")
    cm = ConfusionMatrix(len(CAMVID_CLASSES), ignore_index=ds.ignore_index)
    for i in (0, 50, 100):
        _, image, label = ds[i]
        cm.add(backend.infer(image.transpose(2, 0, 1)[None]).class_ids[0], label)
    result = cm.result()
    assert result["pixel_accuracy"] > 0.75 and result["miou"] > 0.35, result


def _frames(tmp_path, n=2):
    folder = tmp_path / "frames"
    folder.mkdir(parents=True)
    for p in sorted(DEMO.glob("*.jpg"))[-n:]:  # Road Anomaly frames
        (folder / p.name).symlink_to(p)
    return folder


def test_demo_frames_have_credits():
    credits = (DEMO / "CREDITS.md").read_text()
    for p in DEMO.glob("*.jpg"):
        group = p.name.split("_")[0] + "_*.jpg"  # a clip is credited as a group
        assert p.name in credits or f"`{group}`" in credits, f"{p.name}: no attribution"


def test_demo_runs_the_node_and_leaves_overlays_bag_and_summary(tmp_path):
    pytest.importorskip("rclpy")
    pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built (make setup)")
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, "-m", "rba_ros.demo", "--out", str(out),
                           "--frames", str(_frames(tmp_path)), "--timeout", "120"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pngs = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert pngs == ["roadanomaly_03_anomaly.png", "roadanomaly_03_semantic.png",
                    "roadanomaly_05_anomaly.png", "roadanomaly_05_semantic.png"]
    from rosbags.highlevel import AnyReader
    with AnyReader([out / "demo.mcap"]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts["/demo/image_raw"] == 2 and counts["/demo/rba/anomaly"] == 2
    assert counts["/demo/rba/obstacle_points"] == 2
    assert (out / "summary.md").read_text().count("| roadanomaly_0") == 2


def test_rba_demo_without_ros_replays_the_frames(tmp_path, monkeypatch):
    from rba_core.cli import demo, main

    monkeypatch.setattr(demo, "_have_ros", lambda: False)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", str(_frames(tmp_path))]) == 0
    from rosbags.highlevel import AnyReader
    with AnyReader([out / "replay"]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert any(t.endswith("/anomaly") and n == 2 for t, n in counts.items()), counts
    # a second run replaces the first instead of failing on existing outputs
    assert main(["demo", "--out", str(out), "--frames", str(_frames(tmp_path / "again", 1))]) == 0
