"""Overlays a person can look at: class colours blended on the image, anomaly heat maps."""
from __future__ import annotations

import cv2
import numpy as np


def palette(colors: list[list[int]]) -> np.ndarray:
    """[256, 3] uint8 lookup table; ids beyond the classes are black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:len(colors)] = np.asarray(colors, np.uint8)
    return lut


def colorize(class_ids: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """[H, W] ids -> [H, W, 3] RGB (``lut[class_ids]``; cv2.LUT is ~6x faster)."""
    ids = np.ascontiguousarray(class_ids.astype(np.uint8, copy=False))
    if ids.size == 0:
        return lut[ids]
    return cv2.LUT(cv2.merge([ids, ids, ids]), lut.reshape(256, 1, 3))


def blend(image: np.ndarray, overlay: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * overlay + (1 - alpha) * image, both RGB uint8."""
    return cv2.addWeighted(overlay, float(alpha), image, 1.0 - float(alpha), 0.0)


def normalize_scores(scores: np.ndarray, lo: float | None = None, hi: float | None = None,
                     ) -> np.ndarray:
    """Scores -> uint8 0..255 between ``lo`` and ``hi`` (default: this map's 1st/99th percentile)."""
    if lo is None or hi is None:
        p1, p99 = np.percentile(scores, [1, 99])
        lo = p1 if lo is None else lo
        hi = p99 if hi is None else hi
    span = max(float(hi) - float(lo), 1e-6)
    scores = np.asarray(scores)  # in place from here: ~10x faster than a chain of temporaries
    x = np.subtract(scores, lo, dtype=np.result_type(scores, lo, 255.0))
    np.multiply(x, 255.0 / span, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def heatmap(scores: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Anomaly scores [H, W] -> RGB heat map (turbo colour map)."""
    bgr = cv2.applyColorMap(normalize_scores(scores, lo, hi), cv2.COLORMAP_TURBO)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
