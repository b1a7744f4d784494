"""Post-processing: obstacle components, region filters, Perception (ground: test_footprints.py)."""
import numpy as np
import pytest

from rba_core.dataconf import ConfigError
from rba_core.pipeline.config import ObstacleConfig, PipelineConfig
from rba_core.pipeline.obstacles import find_obstacles

ROAD = 3


def scene():
    """60x80 frame: road in the lower half, two anomalous blobs (one on the road, one in the sky)."""
    ids = np.zeros((60, 80), np.uint8)
    ids[30:] = ROAD
    scores = np.full((60, 80), -1.0, np.float32)
    scores[40:50, 30:45] = -0.1   # on the road: 10x15 = 150 px, surrounded by road
    scores[42, 35] = 0.0          # its peak
    scores[5:10, 5:10] = -0.2     # in the sky: 25 px
    ids[40:50, 30:45] = 9         # the network calls the object something else
    return scores, ids


def test_components_boxes_and_scores():
    scores, ids = scene()
    res = find_obstacles(scores, ids, -0.5, [ROAD], ObstacleConfig(min_area=1))
    assert [(o.x, o.y, o.w, o.h, o.area) for o in res.obstacles] == [(30, 40, 15, 10, 150),
                                                                       (5, 5, 5, 5, 25)]
    assert res.obstacles[0].score == 0.0 and res.obstacles[1].score == pytest.approx(-0.2)
    mean = find_obstacles(scores, ids, -0.5, [ROAD], ObstacleConfig(min_area=1, score="mean"))
    assert mean.obstacles[0].score == pytest.approx((149 * -0.1 + 0.0) / 150)
    assert res.mask.sum() == 175




@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scores_and_mask_match_scipy_components(dtype):
    """Peak / mean per component and the kept mask against scipy.ndimage.label (8-connected) and
    numpy max / mean, on noisy maps with many components."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for _ in range(5):
        scores = rng.standard_normal((50, 70)).astype(dtype)
        comp, n = ndimage.label(scores > 0.8, np.ones((3, 3)))
        big = [i for i in range(1, n + 1) if (comp == i).sum() >= 2]
        for score in ("peak", "mean"):
            cfg = ObstacleConfig(min_area=2, score=score, max_detections=10_000)
            res = find_obstacles(scores, np.zeros((50, 70), np.uint8), 0.8, [], cfg)
            assert len(res.obstacles) == len(big) > 10
            for o in res.obstacles:
                region = res.labels == o.label
                i = comp[region][0]
                assert np.array_equal(region, comp == i) and o.area == region.sum()
                px = scores[comp == i]
                assert o.score == (px.max() if score == "peak" else pytest.approx(px.mean()))
            assert np.array_equal(res.mask, np.isin(comp, big))


def test_min_area_and_max_detections():
    scores, ids = scene()
    assert len(find_obstacles(scores, ids, -0.5, [ROAD], ObstacleConfig(min_area=26)).obstacles) == 1
    top = find_obstacles(scores, ids, -0.5, [ROAD], ObstacleConfig(min_area=1, max_detections=1))
    assert [o.area for o in top.obstacles] == [150] and top.mask.sum() == 150


@pytest.mark.parametrize("region", ["adjacent", "within"])
def test_region_filters_keep_the_road_obstacle_only(region):
    scores, ids = scene()
    res = find_obstacles(scores, ids, -0.5, [ROAD], ObstacleConfig(min_area=1, region=region))
    assert [o.area for o in res.obstacles] == [150]


def test_adjacency_distance():
    scores, ids = scene()
    ids[:] = 0
    ids[20:, :] = ROAD  # the sky blob ends at row 9: 10 rows above the road
    ids[40:50, 30:45] = 9
    near = ObstacleConfig(min_area=1, region="adjacent", adjacency_px=11)
    far = ObstacleConfig(min_area=1, region="adjacent", adjacency_px=9)
    assert len(find_obstacles(scores, ids, -0.5, [ROAD], near).obstacles) == 2
    assert len(find_obstacles(scores, ids, -0.5, [ROAD], far).obstacles) == 1


def test_pipeline_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="^obstacles.region"):
        PipelineConfig.from_dict({"obstacles": {"region": "road"}})
    with pytest.raises(ConfigError, match="^ground.camera_height"):
        PipelineConfig.from_dict({"ground": {"camera_height": 0}})
    with pytest.raises(ConfigError, match="^overlay_alpha"):
        PipelineConfig.from_dict({"overlay_alpha": 2})


@pytest.fixture(scope="module")
def perception():
    import torch

    from rba_core.model import ModelConfig, build_model
    from rba_core.pipeline.perception import Perception
    from rba_core.runtime.torch_backend import TorchBackend

    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("tiny", decoder={"num_queries": 8}))
    return Perception(TorchBackend(model, ["rba", "energy"], device="cpu"))


def test_perception_outputs_at_frame_resolution(perception):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (70, 90, 3), dtype=np.uint8),
              rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)]
    results = perception.process(frames)
    for frame, res in zip(frames, results):
        assert res.class_ids.shape == frame.shape[:2] and res.class_ids.max() < 11
        assert res.anomaly.dtype == np.float32 and res.anomaly.shape == frame.shape[:2]
        assert perception.semantic_color(frame, res).shape == frame.shape
        assert perception.anomaly_color(frame, res).shape == frame.shape


def test_perception_threshold_drives_obstacles(perception):
    frame = np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    cfg = PipelineConfig(threshold=-1e9, obstacles=ObstacleConfig(min_area=1))
    perception.update(cfg)
    res = perception.process([frame])[0]
    assert res.obstacles.mask.all() and len(res.obstacles.obstacles) == 1  # everything flagged
    perception.update(PipelineConfig(threshold=1e9))
    assert perception.process([frame])[0].obstacles.obstacles == []
    perception.update(PipelineConfig())


def test_perception_rejects_unknown_score_and_class(perception):
    with pytest.raises(ConfigError, match="^score: 'msp' is not computed"):
        perception.update(PipelineConfig(score="msp"))
    with pytest.raises(ConfigError, match="^obstacles.drivable_classes: unknown class 'lane'"):
        perception.update(PipelineConfig(obstacles=ObstacleConfig(drivable_classes=["lane"])))
    perception.update(PipelineConfig(score="energy"))
    assert perception.cfg.score == "energy"
    perception.update(PipelineConfig())


def test_overlay_colours_follow_their_formulas():
    """colorize = the palette row of each id; heat levels = (s - lo) * 255 / (hi - lo) clipped,
    lo / hi the 1st / 99th percentile by default; calibrated tail = -log10(1 - p) / 4 clipped
    (README: 4 decades), computed here with numpy / math per pixel."""
    import math

    from rba_core.pipeline.calibration import model_calibrations
    from rba_core.pipeline.visualize import colorize, normalize_scores, palette

    rng = np.random.default_rng(7)
    lut = palette(rng.integers(0, 256, (12, 3)).tolist())
    ids = rng.integers(0, 256, (37, 53)).astype(np.uint8)
    want = np.array([[lut[i] if i < 12 else (0, 0, 0) for i in row] for row in ids], np.uint8)
    np.testing.assert_array_equal(colorize(ids, lut), want)
    s = rng.standard_normal((37, 53)).astype(np.float32)
    lo, hi = np.percentile(s.astype(np.float64), [1, 99])
    levels = normalize_scores(s)
    ref = np.clip((s.astype(np.float64) - lo) * 255.0 / (hi - lo), 0, 255)
    assert np.abs(levels - np.floor(ref)).max() <= 1 and levels.dtype == np.uint8
    assert levels[s <= lo].max() == 0 and levels[s >= hi].min() == 255
    np.testing.assert_array_equal(normalize_scores(s, -1.0, 1.0),
                                  np.clip((s - np.float32(-1.0)) * np.float32(127.5), 0, 255)
                                  .astype(np.uint8))
    cal = model_calibrations("")["rba"]
    p = cal(s)
    tail = cal.tail(s)
    for v, q in zip(tail.ravel()[::37], p.ravel()[::37].astype(float)):
        d = -math.log10(1 - q) / 4 if q < 1 else 1.0
        assert v == pytest.approx(min(max(d, 0.0), 1.0), abs=1e-6)
