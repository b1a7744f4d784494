"""Training augmentation (Mask2Former semantic recipe) on numpy arrays with an explicit RNG.

Every random choice comes from the ``np.random.Generator`` passed in, so a sample's augmentation
is a pure function of (seed, sample counter): runs are deterministic with any number of data
workers and resume exactly.
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def short_side_size(h: int, w: int, short: int, max_size: int = 0) -> tuple[int, int]:
    """(H, W) with the short side = ``short`` (aspect kept, long side capped at ``max_size`` when
    > 0), rounded as detectron2's ``ResizeShortestEdge.get_output_shape``."""
    scale = short / min(h, w)
    nh, nw = (short, scale * w) if h < w else (scale * h, short)
    if max_size and max(nh, nw) > max_size:
        cap = max_size / max(nh, nw)
        nh, nw = nh * cap, nw * cap
    return int(nh + 0.5), int(nw + 0.5)


def random_resize(image: np.ndarray, label: np.ndarray, short_sides: list[int], max_size: int,
                  rng: np.random.Generator):
    """Released RbA / Mask2Former resize: short side drawn from the discrete list
    ``short_sides`` (detectron2 ``ResizeShortestEdge``, sample_style "choice"); image with PIL
    bilinear (antialiased when shrinking), label with PIL nearest."""
    short = int(short_sides[int(rng.integers(len(short_sides)))])
    h, w = max(1, image.shape[0]), max(1, image.shape[1])
    nh, nw = short_side_size(h, w, short, max_size)
    if (nh, nw) == (h, w):
        return image, label
    image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    label = np.asarray(Image.fromarray(label).resize((nw, nh), Image.NEAREST))
    return image, label


def random_crop(image: np.ndarray, label: np.ndarray, size: tuple[int, int], ignore: int,
                rng: np.random.Generator):
    """Crop (H, W) at a random position; pad (image 0, label ``ignore``) when smaller."""
    ch, cw = size
    h, w = label.shape
    if h < ch or w < cw:
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        label = cv2.copyMakeBorder(label, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=int(ignore))
        h, w = label.shape
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


def color_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photometric distortion as detectron2's ColorAugSSDTransform (each step with p = 0.5):
    brightness +-32, contrast x[0.5, 1.5], saturation x[0.5, 1.5], hue +-18 (OpenCV units)."""
    img = image.astype(np.float32)
    if rng.random() < 0.5:
        img += rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        img *= rng.uniform(0.5, 1.5)
    img = np.clip(img, 0, 255)
    hsv = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    if rng.random() < 0.5:
        hsv[..., 1] *= rng.uniform(0.5, 1.5)
    if rng.random() < 0.5:
        hsv[..., 0] = (hsv[..., 0] + rng.integers(-18, 19)) % 180
    img = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if not contrast_first and rng.random() < 0.5:
        img *= rng.uniform(0.5, 1.5)
    return np.clip(img, 0, 255).astype(np.uint8)


class TrainTransform:
    """resize -> crop -> flip -> photometric jitter, all driven by the sample's RNG."""

    def __init__(self, aug, ignore: int):
        self.aug, self.ignore = aug, ignore

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
        a = self.aug
        image, label = random_resize(image, label, a.short_sides, a.max_size, rng)
        image, label = random_crop(image, label, tuple(a.crop_size), self.ignore, rng)
        if a.flip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        if a.color_jitter:
            image = color_jitter(np.ascontiguousarray(image), rng)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)
