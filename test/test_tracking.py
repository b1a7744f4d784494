"""Stable obstacle ids across frames (ObstacleTracker), on moving boxes."""
from __future__ import annotations

import numpy as np

from rba_core.pipeline.config import ObstacleConfig
from rba_core.pipeline.obstacles import find_obstacles
from rba_core.pipeline.tracking import ObstacleTracker, box_iou

CFG = ObstacleConfig(min_area=20)


def frame_boxes(frame: int, boxes: list[tuple[int, int, int, int, int]]) -> list:
    """Detections of boxes (x0, y0, w, h, dx per frame) at ``frame``, via the real component
    finder on a rendered score map (largest first, as the pipeline orders them)."""
    scores = np.zeros((240, 320), np.float32)
    for x0, y0, w, h, dx in boxes:
        x = x0 + dx * frame
        scores[y0:y0 + h, x:x + w] = 1.0
    res = find_obstacles(scores, np.zeros((240, 320), np.uint8), 0.5, [], CFG)
    return [(o.x, o.y, o.w, o.h) for o in res.obstacles]


def test_a_box_moving_5px_per_frame_keeps_its_id_for_20_frames():
    tracker = ObstacleTracker()
    ids = [tracker.update(frame_boxes(f, [(20, 100, 40, 30, 5)]), None, CFG) for f in range(20)]
    assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == 1


def test_two_boxes_keep_distinct_ids_and_a_new_object_gets_a_new_id():
    tracker = ObstacleTracker()
    a, b = (20, 30, 40, 30, 5), (250, 150, 30, 50, -5)  # moving towards each other's columns
    history = []
    for f in range(20):
        boxes = frame_boxes(f, [a, b])
        ids = tracker.update(boxes, None, CFG)
        history.append({box[1]: i for box, i in zip(boxes, ids)})  # keyed by the box's row
    assert {h[30] for h in history} == {history[0][30]}
    assert {h[150] for h in history} == {history[0][150]}
    assert history[0][30] != history[0][150]
    # a third object appears: a new id, never one of the old ones
    boxes = frame_boxes(20, [a, b, (280, 200, 20, 20, 0)])
    ids = tracker.update(boxes, None, CFG)
    new = ids[[bx[1] for bx in boxes].index(200)]
    assert new not in (history[0][30], history[0][150])


def test_tracks_survive_short_gaps_and_end_after_max_missed():
    cfg = ObstacleConfig(min_area=20, track_max_missed=2)
    tracker = ObstacleTracker()
    box = [(100, 100, 30, 30)]
    (first,) = tracker.update(box, None, cfg)
    tracker.update([], None, cfg)
    tracker.update([], None, cfg)
    assert tracker.update(box, None, cfg) == [first]   # missed 2 frames: same object
    for _ in range(3):
        tracker.update([], None, cfg)
    assert tracker.update(box, None, cfg) != [first]   # missed 3 > 2: a new object


def test_footprint_distance_matches_when_boxes_do_not_overlap():
    """A far obstacle jumps in the image (low frame rate) but its footprint barely moves."""
    tracker = ObstacleTracker()
    (first,) = tracker.update([(10, 10, 10, 10)], [np.array([12.0, 1.0])], CFG)
    (same,) = tracker.update([(40, 10, 10, 10)], [np.array([12.3, 1.1])], CFG)
    (other,) = tracker.update([(80, 10, 10, 10)], [np.array([20.0, 1.0])], CFG)
    assert same == first and other != first


def test_box_iou_by_hand():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0.0]])
