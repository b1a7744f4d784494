"""rba calibrate: the threshold hits the target false-alarm rate, checked by brute force."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rba_core.pipeline.calibration import load_calibrations
from rba_core.pipeline.config import PipelineConfig
from rba_core.pipeline.perception import Perception
from rba_core.replay.calibrate import (CalibrationConfig, CalibrationError, calibrate,
                                       threshold_for_rate)
from rba_core.replay.runner import pipeline_config_from_yaml
from replay_util import make_bag, source_frames, tiny_backend

N = 4


def brute_force_threshold(x: np.ndarray, rate: float) -> float:
    """Smallest candidate v (a value of x) with mean(x > v) <= rate, by trying them all."""
    return min(v for v in np.unique(x) if np.mean(x > v) <= rate)


@pytest.mark.parametrize("seed", range(4))
def test_threshold_for_rate_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, 500).astype(np.float32) / 7  # many ties
    values, counts = np.unique(x, return_counts=True)
    for rate in (0.0, 0.001, 0.01, 0.1, 0.37, 0.9, 0.999):
        t, achieved = threshold_for_rate(values, counts, rate)
        assert t == brute_force_threshold(x, rate)
        assert achieved == np.mean(x > t) <= rate


@pytest.fixture(scope="module")
def clip(data_dir, tmp_path_factory):
    bag = tmp_path_factory.mktemp("cal") / "normal.mcap"
    make_bag(data_dir, bag, N, compressed=True, format="png")  # lossless: same pixels as below
    backend = tiny_backend()
    refs = [backend.infer(np.ascontiguousarray(f.transpose(2, 0, 1))[None]).frame(0)
            for f in source_frames(data_dir, N)]
    return bag, refs


@pytest.mark.parametrize("target, region", [(0.01, "all"), (0.2, "most predicted class")])
def test_calibrated_threshold_achieves_the_target_on_the_same_bag(clip, tmp_path, target,
                                                                  region):
    bag, refs = clip
    names = tiny_backend().info.class_names
    if region != "all":  # the class the (random) model predicts most: a region with pixels
        region = names[np.bincount(np.concatenate([r.class_ids.ravel() for r in refs])).argmax()]
    out = tmp_path / region / "snippet.yaml"
    result = calibrate(CalibrationConfig(str(bag), str(out), target, region),
                       Perception(tiny_backend(), PipelineConfig()))
    # the snippet is a params file the node (and rba replay --config) accepts
    t = pipeline_config_from_yaml(out).threshold
    assert t == result["threshold"]
    # recompute independently: pooled region scores of the same frames
    scores = np.concatenate([r.scores["rba"][r.class_ids == names.index(region)]
                             if region != "all" else r.scores["rba"].ravel()
                             for r in refs])
    assert result["pixels"] == scores.size
    achieved = np.mean(scores > np.float32(t))
    assert achieved == pytest.approx(result["achieved_fpr"]) and achieved <= target
    lower = scores[scores < t]
    if lower.size:  # the next lower threshold would flag more than the target: t is minimal
        assert np.mean(scores > lower.max()) > target
    # tolerance: below the target by less than the share of pixels tied at t
    assert target - achieved <= np.mean(scores == np.float32(t))
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["threshold"] == t and summary["region"] == region
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the score -> probability file: the empirical CDF of the same pooled pixels, so the
    # threshold's probability is 1 - the achieved rate, and Perception publishes exactly that
    cals = load_calibrations(result["calibration"])
    assert set(cals) == {"rba"} and cals["rba"].info["threshold"] == t
    cal = cals["rba"]
    assert float(cal(t, np.float64)) == pytest.approx(1.0 - achieved, abs=1e-12)
    assert result["threshold_probability"] == float(cal(t, np.float64))
    probs = cal(np.sort(scores))
    assert (np.diff(probs) >= 0).all() and probs.min() >= 0.0 and probs.max() <= 1.0
    for k in cal.knots[:: max(1, cal.knots.size // 20)]:
        assert float(cal(k)) == pytest.approx(np.mean(scores <= k), abs=1e-7)
    p = Perception(tiny_backend(), pipeline_config_from_yaml(out), cals)
    assert p.threshold_probability == result["threshold_probability"]
    assert f"{result['threshold_probability']!r}" in out.read_text()


def test_calibrate_errors(clip, tmp_path):
    bag, _ = clip
    perception = Perception(tiny_backend())
    with pytest.raises(CalibrationError, match="target-fpr"):
        calibrate(CalibrationConfig(str(bag), str(tmp_path / "s.yaml"), 1.5), perception)
    with pytest.raises(CalibrationError, match="unknown class 'lava'"):
        calibrate(CalibrationConfig(str(bag), str(tmp_path / "s.yaml"), 0.1, "lava"), perception)


def test_cli_calibrate_reports_errors_in_one_line(clip, tmp_path, capsys):
    from rba_core.cli import main

    bag, _ = clip
    assert main(["calibrate", str(bag), "--target-fpr", "0.01", "--model", "preset:tiny",
                 "--backend", "torch", "-o", str(tmp_path / "s.txt")]) == 2
    assert "must name a .yaml file" in capsys.readouterr().err
