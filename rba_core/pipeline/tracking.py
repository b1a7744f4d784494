"""Stable obstacle ids across frames: optimal assignment of detections to tracks.

vision_msgs asks that the same object keep its ``id``. Each frame, detections are matched to the
live tracks of one camera by ``scipy.optimize.linear_sum_assignment``: a pair may match when the
track's predicted box (last box + its per-frame velocity) overlaps the detection's box by at least
``track_min_iou``, or when both have a footprint and their ground centres are within
``track_max_distance`` metres; the cost is the smaller of 1 - IoU and distance / max distance.
Unmatched detections start new tracks with new ids (never reused); a track unmatched for more
than ``track_max_missed`` frames ends.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .config import ObstacleConfig

NO_MATCH = 1e6


@dataclass
class Track:
    id: int
    box: np.ndarray               # [4] x0, y0, x1, y1 (pixels)
    velocity: np.ndarray          # [4] per frame
    center: np.ndarray | None     # [2] footprint centre in the ground frame, or None
    missed: int = 0

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity * (self.missed + 1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [N, M] of boxes a [N, 4] and b [M, 4] (x0, y0, x1, y1)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class ObstacleTracker:
    """Ids for one camera's detections, frame after frame."""

    def __init__(self):
        self.tracks: list[Track] = []
        self.next_id = 1

    def reset(self) -> None:
        self.tracks, self.next_id = [], 1

    def update(self, boxes, centers: list | None, cfg: ObstacleConfig) -> list[int]:
        """Boxes [N, 4] (x, y, w, h pixels) and footprint centres (N x [2] or None) -> N ids."""
        det = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
        det[:, 2:] += det[:, :2]  # -> x0, y0, x1, y1
        centers = list(centers) if centers is not None else [None] * len(det)
        matches = self._match(det, centers, cfg)
        ids = [0] * len(det)
        matched_tracks = set()
        for ti, di in matches:
            t = self.tracks[ti]
            step = (det[di] - t.box) / (t.missed + 1)
            t.velocity = step if t.missed == 0 and not t.velocity.any() else \
                0.5 * t.velocity + 0.5 * step
            t.box, t.center, t.missed = det[di], _vec(centers[di]), 0
            ids[di] = t.id
            matched_tracks.add(ti)
        survivors = [t for i, t in enumerate(self.tracks) if i in matched_tracks]
        for i, t in enumerate(self.tracks):
            if i not in matched_tracks:
                t.missed += 1
                if t.missed <= cfg.track_max_missed:
                    survivors.append(t)
        for di in range(len(det)):
            if not ids[di]:
                ids[di] = self.next_id
                survivors.append(Track(self.next_id, det[di], np.zeros(4), _vec(centers[di])))
                self.next_id += 1
        self.tracks = survivors
        return ids

    def _match(self, det: np.ndarray, centers: list, cfg: ObstacleConfig
               ) -> list[tuple[int, int]]:
        if not self.tracks or not len(det):
            return []
        pred = np.stack([t.predicted() for t in self.tracks])
        iou = box_iou(pred, det)
        cost = np.where(iou >= cfg.track_min_iou, 1.0 - iou, NO_MATCH)
        if cfg.track_max_distance > 0:
            for ti, t in enumerate(self.tracks):
                for di, c in enumerate(centers):
                    if t.center is None or c is None:
                        continue
                    d = float(np.linalg.norm(t.center - np.asarray(c, np.float64)))
                    if d <= cfg.track_max_distance:
                        cost[ti, di] = min(cost[ti, di], d / cfg.track_max_distance)
        rows, cols = linear_sum_assignment(cost)
        return [(r, c) for r, c in zip(rows, cols) if cost[r, c] < NO_MATCH]


def _vec(c) -> np.ndarray | None:
    return None if c is None else np.asarray(c, np.float64)[:2].copy()
