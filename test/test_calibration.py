"""Score calibration: the 0..1 mapping against a brute-force empirical CDF; files; the overlay."""
from __future__ import annotations

import numpy as np
import pytest

from rba_core.dataconf import ConfigError
from rba_core.pipeline.calibration import (ScoreCalibration, calibration_path, load_calibrations,
                                           model_calibrations, save_calibrations)
from rba_core.pipeline.config import ObstacleConfig, PipelineConfig
from rba_core.pipeline.perception import Perception
from rba_core.replay.calibrate import threshold_for_rate
from synthetic_scene import SceneBackend, outputs


def normal_scores(seed: int = 0, n: int = 20000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(-1.0, 0.3, n), 3).astype(np.float32)  # many ties


@pytest.mark.parametrize("seed", range(3))
def test_mapping_is_the_empirical_cdf_at_its_knots(seed):
    x = normal_scores(seed)
    values, counts = np.unique(x, return_counts=True)
    t, achieved = threshold_for_rate(values, counts, 0.01)
    cal = ScoreCalibration.from_counts("rba", values, counts, include=(t,))
    for k, p in zip(cal.knots, cal.probability):
        assert p == pytest.approx(np.mean(x <= k), abs=1e-12)  # share scoring at most k
    # monotone everywhere, within 0..1, 1 above every normal pixel
    grid = np.linspace(x.min() - 1, x.max() + 1, 5001)
    p = cal(grid)
    assert (np.diff(p) >= 0).all() and p.min() >= 0 and p.max() <= 1
    assert cal(x.max() + 0.5) == 1.0
    # the threshold is a knot: its probability is exactly 1 - the achieved false-alarm rate
    assert t in cal.knots
    assert float(cal(t)) == pytest.approx(1.0 - achieved, abs=1e-7)
    # so every flagged pixel (score > t) maps above it, every other pixel to at most it
    assert (cal(x[x > t]) > cal(t)).all() and (cal(x[x <= t]) <= cal(t)).all()
    # between knots the map stays within the CDF's neighbouring steps
    mid = (cal.knots[:-1] + cal.knots[1:]) / 2
    assert (cal(mid) >= cal.probability[:-1] - 1e-7).all()
    assert (cal(mid) <= cal.probability[1:] + 1e-7).all()


def test_calibration_files_round_trip_and_bad_files_name_the_field(tmp_path):
    x = normal_scores()
    values, counts = np.unique(x, return_counts=True)
    cal = ScoreCalibration.from_counts("rba", values, counts, info={"threshold": -0.4})
    path = save_calibrations(tmp_path / "m.calibration.yaml", {"rba": cal},
                             {"method": "inlier_cdf", "source": {"frames": 3}})
    back = load_calibrations(path)["rba"]
    np.testing.assert_array_equal(back.knots, cal.knots)
    np.testing.assert_array_equal(back.probability, cal.probability)
    assert back.info == {"threshold": -0.4}
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace('"probability": [', '"probability": [0.9, '))
    with pytest.raises(ConfigError, match="scores.rba"):
        load_calibrations(bad)
    bad.write_text('{"format": "rba-score-calibration/1", "scores": {"rba": {"score": [1, 0], '
                   '"probability": [0.1, 0.2]}}}')
    with pytest.raises(ConfigError, match=r"^scores.rba.score: must be strictly increasing"):
        load_calibrations(bad)
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="^format"):
        load_calibrations(bad)


def test_calibration_file_sits_next_to_the_model(tmp_path):
    model = tmp_path / "my_model.onnx"
    assert calibration_path(model) == tmp_path / "my_model.calibration.yaml"
    assert calibration_path(None).name == "default.calibration.yaml"
    assert model_calibrations(model) == {} and model_calibrations("preset:tiny") == {}


def calibrated_perception() -> tuple[Perception, np.ndarray]:
    """Calibrated on ``normal_scores``, threshold at a 1 % false-alarm rate (as rba calibrate)."""
    x = normal_scores()
    values, counts = np.unique(x, return_counts=True)
    threshold, _ = threshold_for_rate(values, counts, 0.01)
    cal = ScoreCalibration.from_counts("rba", values, counts, include=(threshold,))
    cfg = PipelineConfig(threshold=threshold, obstacles=ObstacleConfig(min_area=4))
    return Perception(SceneBackend(), cfg, {"rba": cal}), x


def test_detection_scores_and_point_intensities_are_calibrated_probabilities():
    p, x = calibrated_perception()
    mask = np.zeros((40, 60), bool)
    mask[20:30, 10:20] = True
    out = outputs(mask)
    out.scores["rba"] = np.where(mask, np.float32(-0.2), np.float32(-1.0))
    assert p.cfg.threshold < -0.2
    out.scores["rba"][25, 15] = 0.4
    result = p.postprocess(out)
    (score,) = p.detection_scores(result)
    assert score == pytest.approx(np.mean(x <= 0.4)) and 0.0 <= score <= 1.0  # the peak
    assert p.threshold_probability == pytest.approx(np.mean(x <= p.cfg.threshold), abs=1e-7)
    assert score > p.threshold_probability
    probs = p.probability(np.array([-0.2, 0.4]))  # -0.2: between knots, linear
    np.testing.assert_allclose(probs, [np.mean(x <= -0.2), np.mean(x <= 0.4)], atol=2e-4)
    # uncalibrated: a 0/1 step at the threshold, still consistent
    bare = Perception(SceneBackend(), p.cfg)
    assert bare.detection_scores(result) == [1.0] and bare.threshold_probability == 0.0


def test_heat_overlay_uses_a_fixed_calibrated_scale():
    """A normal frame stays cold under the calibrated scale; percentiles make it look alarming."""
    p, x = calibrated_perception()
    rgb = np.zeros((40, 60, 3), np.uint8)
    calm = outputs(np.zeros((40, 60), bool))
    calm.scores["rba"] = np.linspace(-1.3, -0.7, 2400, dtype=np.float32).reshape(40, 60)
    hot = outputs(np.zeros((40, 60), bool))
    hot.scores["rba"] = calm.scores["rba"].copy()
    hot.scores["rba"][:5] = 2.0
    p.update(PipelineConfig(threshold=p.cfg.threshold, overlay_alpha=1.0))
    a, b = (p.anomaly_color(rgb, p.postprocess(o)) for o in (calm, hot))
    np.testing.assert_array_equal(a[8:], b[8:])       # same scores, same colours, any frame
    assert not np.array_equal(a[:5], b[:5])
    p.update(PipelineConfig(threshold=p.cfg.threshold, overlay_alpha=1.0,
                            heatmap_percentiles=True))
    c, d = (p.anomaly_color(rgb, p.postprocess(o)) for o in (calm, hot))
    assert not np.array_equal(c[8:], d[8:])           # per-frame stretch: colours move
    # the calm frame's highest score (-0.7, a 1-in-~10 pixel) is drawn cooler than with a stretch
    assert a[-1, -1].tolist() != c[-1, -1].tolist()


def test_the_embedded_model_ships_its_calibration():
    """rba_core/weights/default.calibration.yaml belongs to these weights and this threshold."""
    import hashlib

    from rba_core.runtime.loader import DEFAULT_MODEL

    header: dict = {}
    cals = load_calibrations(calibration_path(None), header)
    assert header["source"]["model_sha256"] == hashlib.sha256(DEFAULT_MODEL.read_bytes()
                                                              ).hexdigest(), \
        "default.safetensors changed: run bash scripts/calibrate_default_model.sh"
    assert set(cals) >= {"rba", "energy", "max_logit"}  # the node's default scores
    for cal in cals.values():
        assert (np.diff(cal.probability) >= 0).all() and 0 <= cal.probability[0]
        assert cal.probability[-1] == 1.0
    # the node's default threshold flags 1 % of CamVid val pixels, as MODEL_CARD.md says
    assert float(cals["rba"](PipelineConfig().threshold, np.float64)) == pytest.approx(0.99,
                                                                                       abs=2e-3)
