"""Ground truth in replay: the metrics of rba eval, recomputed here with scikit-learn / numpy."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from rba_core.pipeline.config import PipelineConfig
from rba_core.pipeline.messages import header, image_msg
from rba_core.pipeline.perception import Perception
from rba_core.replay.bags import output_typestore, serialize
from rba_core.replay.groundtruth import GroundTruth, GroundTruthError, evaluate_replay
from rba_core.replay.runner import ReplayConfig, run_replay
from replay_util import SIZE, camvid_val, source_frames, tiny_backend

N = 4
START = 1_700_000_000 * 10**9
PERIOD = 66_666_667


def anomaly_label(i: int) -> np.ndarray:
    """Synthetic label per frame: right part anomalous, a void band on top."""
    label = np.zeros(SIZE, np.uint8)
    label[:, SIZE[1] // 2 + i:] = 1
    label[:6] = 255
    return label


@pytest.fixture(scope="module")
def replayed(data_dir, tmp_path_factory):
    """A bag of N clip frames + a mask topic, replayed once: (input bag, output bag, frames)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    tmp = tmp_path_factory.mktemp("eval")
    frames = source_frames(data_dir, N)
    store = output_typestore()
    bag = tmp / "in"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        img = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        gt = writer.add_connection("/camera/gt_mask", "sensor_msgs/msg/Image", typestore=store)
        for i, rgb in enumerate(frames):
            t = START + i * PERIOD
            hdr = header((t // 10**9, t % 10**9), "camera")
            # the mask is logged before its image: matching goes by header stamp, not order
            writer.write(gt, t - 1, serialize(store, "sensor_msgs/msg/Image",
                                              image_msg(hdr, anomaly_label(i), "mono8")))
            writer.write(img, t, serialize(store, "sensor_msgs/msg/Image",
                                           image_msg(hdr, rgb, "rgb8")))
    out = tmp / "out"
    topics = GroundTruth(topics=["gt_mask"]).camera_topics(["/camera/gt_mask",
                                                            "/camera/image_raw"])
    assert topics == ["/camera/image_raw"]  # what `rba replay --gt-topic` replays
    run_replay(ReplayConfig(str(bag), str(out), topics=topics, progress=False,
                            model="preset:tiny"),
               Perception(tiny_backend(), PipelineConfig()))
    return bag, out, frames


def reference(frames):
    backend = tiny_backend()
    return [backend.infer(np.ascontiguousarray(f.transpose(2, 0, 1))[None]).frame(0)
            for f in frames]


def sklearn_paper_metrics(scores, labels) -> dict:
    s = np.concatenate([x.ravel() for x in scores])
    y = np.concatenate([x.ravel() for x in labels])
    keep = y != 255
    s, y = s[keep], y[keep]
    fpr, tpr, _ = roc_curve(y, s)
    return {"ap": average_precision_score(y, s), "auroc": roc_auc_score(y, s),
            "fpr95": fpr[np.argmax(tpr > 0.95)]}


def test_anomaly_metrics_from_mask_topic_and_stamp_folder(replayed, tmp_path):
    bag, out, frames = replayed
    ref = reference(frames)
    want = sklearn_paper_metrics([r.scores["rba"] for r in ref],
                                 [anomaly_label(i) for i in range(N)])
    # 1) mask topic in the input bag, relative name resolved in the camera namespace
    report = evaluate_replay(out, GroundTruth(topics=["gt_mask"], bag=str(bag)),
                             ["/camera/image_raw"], "{camera}/rba", tmp_path / "e1")
    # 2) a folder of masks named by stamp (SEC_NANOSEC), written in reverse order on purpose
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in reversed(range(N)):
        t = START + i * PERIOD
        cv2.imwrite(str(masks / f"{t // 10**9}_{t % 10**9:09d}.png"), anomaly_label(i))
    report2 = evaluate_replay(out, GroundTruth(folder=str(masks)), ["/camera/image_raw"],
                              "{camera}/rba", tmp_path / "e2")
    for rep in (report, report2):
        for key in ("/camera/image_raw", "pooled"):
            entry = rep["topics"][key]
            assert entry["frames"] == entry["frames_with_gt"] == N
            for metric, value in want.items():
                assert entry["results"][metric] == pytest.approx(value, abs=1e-9), metric
    saved = json.loads((tmp_path / "e1" / "results.json").read_text())
    assert saved["topics"]["pooled"]["results"]["ap"] == pytest.approx(want["ap"])
    assert "| pooled | 4 | 4 |" in (tmp_path / "e1" / "results.md").read_text()


def test_closed_set_miou_by_index_via_cli(data_dir, replayed, tmp_path, capsys):
    """CamVid val annotations (sorted names = frame order), labels at 360x480, void 11."""
    from rba_core.cli.replay import run_replay as cli_run
    from rba_core.cli import build_parser

    bag, out, frames = replayed
    annot = camvid_val(data_dir).parent / "valannot"
    report = evaluate_replay(out, GroundTruth(folder=str(annot), task="closed", ignore_index=11),
                             ["/camera/image_raw"], "{camera}/rba", tmp_path / "e")
    # independent: maps upsampled (nearest) to the label size, confusion by bincount
    k = len(tiny_backend().info.class_names)
    cm = np.zeros((k, k), np.int64)
    for r, path in zip(reference(frames), sorted(annot.glob("*.png"))[:N]):
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        pred = cv2.resize(r.class_ids.astype(np.uint8), label.shape[::-1],
                          interpolation=cv2.INTER_NEAREST)
        keep = label != 11
        cm += np.bincount(label[keep].astype(int) * k + pred[keep], minlength=k * k
                          ).reshape(k, k)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    miou = np.mean(tp[union > 0] / union[union > 0])
    res = report["topics"]["pooled"]["results"]
    assert res["miou"] == pytest.approx(miou) and res["pixel_accuracy"] == pytest.approx(
        tp.sum() / cm.sum())
    # the CLI path: replay is already complete (resume = no-op), then the evaluation runs
    args = build_parser().parse_args(
        ["replay", str(bag), "--out", str(out), "--resume", "--model", "preset:tiny",
         "--backend", "torch", "--gt", str(annot), "--gt-task", "closed", "--ignore-index",
         "11", "--eval-out", str(tmp_path / "cli")])
    assert cli_run(args) == 0
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert saved["topics"]["pooled"]["results"]["miou"] == pytest.approx(miou)
    assert "| class IoU |" in capsys.readouterr().out


def test_ground_truth_errors(replayed, tmp_path):
    bag, out, _ = replayed
    with pytest.raises(GroundTruthError, match="either"):
        GroundTruth().check()
    with pytest.raises(GroundTruthError, match="no mask topic"):
        evaluate_replay(out, GroundTruth(topics=["/nope"], bag=str(bag)), ["/camera/image_raw"],
                        "{camera}/rba", tmp_path / "e")
    empty = tmp_path / "masks"
    empty.mkdir()
    cv2.imwrite(str(empty / "123.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(GroundTruthError, match="no frame matched"):
        evaluate_replay(out, GroundTruth(folder=str(empty), key="stamp"), ["/camera/image_raw"],
                        "{camera}/rba", tmp_path / "e")
