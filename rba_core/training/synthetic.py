"""Synthetic outlier objects for AnomalyMix: random shapes filled with random textures.

More outlier variety without more data: each object is a star-shaped polygon, an ellipse or a
smooth blob, filled with a flat colour, smooth colour noise, stripes or a checkerboard. Objects are
a pure function of (seed, index), so a run's outlier pool is reproducible.
"""
from __future__ import annotations

import cv2
import numpy as np

SHAPES = ("polygon", "ellipse", "blob")
TEXTURES = ("flat", "noise", "stripes", "checker")


def _shape(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """A bool mask [h, w] of one connected shape centred in the box."""
    mask = np.zeros((h, w), np.uint8)
    cy, cx = h / 2, w / 2
    if kind == "polygon":  # star-shaped: random radius per angle
        n = int(rng.integers(3, 12))  # vertices at jittered, evenly spread angles
        angles = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * 2 * np.pi / n
        radii = rng.uniform(0.4, 1.0, n)
        pts = np.stack([cx + radii * (w / 2 - 1) * np.cos(angles),
                        cy + radii * (h / 2 - 1) * np.sin(angles)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    elif kind == "ellipse":
        axes = (max(1, int(w / 2 - 1)), max(1, int(h / 2 - 1)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, 0, 0, 360, 1, -1)
    else:  # blob: smooth noise thresholded inside an ellipse, largest component kept
        noise = cv2.resize(rng.uniform(0, 1, (4, 4)).astype(np.float32), (w, h),
                           interpolation=cv2.INTER_CUBIC)
        yy, xx = np.mgrid[:h, :w]
        inside = ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2 < 1
        mask = ((noise > np.median(noise[inside])) & inside).astype(np.uint8)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if n > 1 else 0
        if not largest or stats[largest, cv2.CC_STAT_AREA] < 0.15 * h * w:
            return _shape(rng, h, w, "ellipse")  # degenerate noise: an ellipse instead
        mask = (comp == largest).astype(np.uint8)
    return mask.astype(bool)


def _texture(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """An RGB uint8 texture [h, w, 3]."""
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if kind == "flat":
        return np.broadcast_to(c0.astype(np.uint8), (h, w, 3)).copy()
    if kind == "noise":
        cells = int(rng.integers(2, 12))
        small = rng.integers(0, 256, (cells, cells, 3)).astype(np.float32)
        return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(
            np.uint8)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    period = float(rng.uniform(6, 40))
    if kind == "stripes":
        theta = rng.uniform(0, np.pi)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
    else:  # checker
        t = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float32)
    return (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.uint8)


def synthetic_object(seed: int, index: int, min_size: int = 120,
                     max_size: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """Object ``index`` of the synthetic pool ``seed``: (RGB [h, w, 3] uint8, mask [h, w] bool).
    Box sides are drawn in [min_size, max_size] px (COCO-object scale: the recipe's AnomalyMix
    ``scale_range`` then applies to real and synthetic objects alike)."""
    rng = np.random.default_rng([seed, 7, index])
    h, w = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    mask = _shape(rng, h, w, SHAPES[int(rng.integers(len(SHAPES)))])
    rgb = _texture(rng, h, w, TEXTURES[int(rng.integers(len(TEXTURES)))])
    return rgb, mask


def synthetic_sources(count: int, seed: int) -> list[tuple[str, callable]]:
    """(name, loader) pairs for the outlier bank: ``synthetic/<i>``."""
    return [(f"synthetic/{i}", lambda i=i: synthetic_object(seed, i)) for i in range(count)]
