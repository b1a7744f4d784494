"""AnomalyMix (paper Sec. 3.4, after PEBAL): paste outlier objects into inlier training images.

A fixed random sample of source images is drawn once from COCO-style data, keeping only images
that contain none of the classes a driving model knows (paper's filter); each object is the union
of all instance masks of its image, crowd regions included; an image without annotations stays in
the pool and pastes nothing (as released, after Meta-OoD). Per training image, with probability ``p_out``, one object's
masked pixels are pasted at a random position and labelled ``outlier_label`` (excluded from the
closed-set targets), before the other augmentations.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import RbaError, require

log = logging.getLogger(__name__)

# Paper's filter: no person, bicycle, car, motorcycle, bus, truck, traffic light, stop sign.
EXCLUDED_NAMES = ("person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light",
                  "stop sign")
EXCLUDED_YOLO_IDS = (0, 1, 2, 3, 5, 7, 9, 11)  # the same classes as COCO-80 indices


@dataclass
class OutlierObject:
    """An object cut out of its source image: RGB crop [h, w, 3] and its mask [h, w] bool."""
    rgb: np.ndarray
    mask: np.ndarray
    source: str


def _crop(rgb: np.ndarray, mask: np.ndarray, source: str) -> OutlierObject:
    """The object's bounding box; an image without annotations stays as an empty object."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return OutlierObject(rgb[:0, :0].copy(), mask[:0, :0].copy(), source)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return OutlierObject(rgb[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].copy(), source)


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RbaError(f"cannot read outlier source image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def yolo_candidates(root: Path) -> list[tuple[Path, Path]]:
    """(image, label .txt) pairs of a YOLO-seg tree: images/<split>/*.jpg, labels/<split>/*.txt.
    An image without a label file (no annotations) is kept, with a label path that does not exist."""
    pairs = []
    for image in sorted((root / "images").rglob("*")):
        if image.suffix.lower() in (".jpg", ".jpeg", ".png"):
            rel = image.relative_to(root / "images").with_suffix(".txt")
            pairs.append((image, root / "labels" / rel))
    return pairs


def yolo_polygons(label: Path) -> list[tuple[int, np.ndarray]]:
    """Lines 'cls x1 y1 x2 y2 ...' (normalised vertices) -> [(cls, [N, 2] float)]."""
    out = []
    if not label.is_file():
        return out
    for line in label.read_text().splitlines():
        parts = line.split()
        if len(parts) < 7:
            continue
        cls = int(float(parts[0]))
        pts = np.asarray(parts[1:], np.float64)
        out.append((cls, pts[: len(pts) // 2 * 2].reshape(-1, 2)))
    return out


def load_yolo_objects(root: Path, min_side: int) -> list[tuple[str, callable]]:
    """Filtered YOLO-seg sources as (name, loader) pairs (images are read lazily)."""
    sources = []
    for image, label in yolo_candidates(root):
        polys = yolo_polygons(label)  # none: stays in the pool, pastes nothing (as released)
        if any(cls in EXCLUDED_YOLO_IDS for cls, _ in polys):
            continue

        def load(image=image, polys=polys):
            rgb = _read_rgb(image)
            h, w = rgb.shape[:2]
            mask = np.zeros((h, w), np.uint8)
            for _, pts in polys:
                cv2.fillPoly(mask, [np.round(pts * [w, h]).astype(np.int32)], 1)
            return rgb, mask.astype(bool)

        sources.append((str(image), load, image))
    if min_side:
        sources = [s for s in sources if min(cv2.imread(str(s[2])).shape[:2]) >= min_side]
    return [(name, load) for name, load, _ in sources]


def load_coco_objects(annotations: Path, images: Path, min_side: int) -> list[tuple[str, callable]]:
    """Filtered COCO sources (pycocotools) as (name, loader) pairs, as Meta-OoD's script that the
    released RbA used: annotations read with ``iscrowd=None``, so crowd regions are part of the
    mask and count for the class exclusion; images without annotations stay (empty mask)."""
    coco = require("pycocotools.coco", "train").COCO(str(annotations))
    excluded = {c["id"] for c in coco.loadCats(coco.getCatIds()) if c["name"] in EXCLUDED_NAMES}
    sources = []
    for img in coco.loadImgs(sorted(coco.getImgIds())):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"], iscrowd=None))
        if any(a["category_id"] in excluded for a in anns):
            continue
        if min(img["height"], img["width"]) < min_side:
            continue

        def load(img=img, anns=anns):
            rgb = _read_rgb(images / img["file_name"])
            mask = np.zeros(rgb.shape[:2], bool)
            for a in anns:
                mask |= coco.annToMask(a).astype(bool)
            return rgb, mask

        sources.append((img["file_name"], load))
    return sources


class OutlierBank:
    """The fixed sample of outlier source images used for the whole run. Objects are read when
    first pasted and kept in a bounded cache (the released map_coco recipes draw from up to 50000
    COCO images; the CamVid recipe's 57 all stay in memory)."""

    def __init__(self, sources: list[tuple[str, callable]], cache_size: int = 1024):
        if not sources:
            raise RbaError("AnomalyMix: no outlier objects passed the class filter")
        self.sources, self.cache_size = sources, cache_size
        self._cache: OrderedDict[int, OutlierObject] = OrderedDict()

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> OutlierObject:
        obj = self._cache.get(i)
        if obj is None:
            name, load = self.sources[i]
            obj = self._cache[i] = _crop(*load(), name)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return obj

    @property
    def objects(self) -> list[OutlierObject]:
        """Every object (reads them all)."""
        return [self[i] for i in range(len(self))]

    @classmethod
    def from_source(cls, source: str, images: str = "", num_objects: int = 300,
                    min_side: int = 0, seed: int = 0, synthetic: int = 0) -> "OutlierBank":
        """COCO JSON (pycocotools) or a YOLO-seg root; sample ``num_objects`` sources once; add
        ``synthetic`` random shape/texture objects (``synthetic.py``). ``source`` may be empty
        when ``synthetic`` > 0."""
        from .synthetic import synthetic_sources

        path, sources = Path(source), []
        if not source and synthetic > 0:
            pass
        elif path.is_file() and path.suffix == ".json":
            sources = load_coco_objects(path, Path(images) if images else path.parent, min_side)
        elif path.is_dir():
            sources = load_yolo_objects(path, min_side)
        else:
            raise RbaError(f"AnomalyMix source not found (COCO .json or YOLO-seg folder): {source}")
        if source and not sources:
            raise RbaError(f"AnomalyMix: no image in {source} passes the class filter "
                           f"(min_side={min_side})")
        rng = np.random.default_rng(seed)
        pick = rng.permutation(len(sources))[:num_objects]
        log.info("AnomalyMix: %d outlier source images of %d eligible, %d synthetic objects",
                 len(pick), len(sources), synthetic)
        return cls([sources[i] for i in sorted(pick)] + synthetic_sources(synthetic, seed))


def paste(image: np.ndarray, label: np.ndarray, obj: OutlierObject, rng: np.random.Generator,
          outlier_label: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``obj`` (resized by ``scale``) at a random position; returns new (image, label).

    Only the object's mask pixels change: they take the object's colour and ``outlier_label``.
    An object larger than the image is cropped at a random offset; an empty one pastes nothing.
    """
    rgb, mask = obj.rgb, obj.mask
    if not mask.any():
        return image, label
    if scale != 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    h, w = label.shape
    oh, ow = mask.shape
    # source window (crop an object that does not fit) and destination offset
    sy = int(rng.integers(0, oh - h + 1)) if oh > h else 0
    sx = int(rng.integers(0, ow - w + 1)) if ow > w else 0
    ch, cw = min(oh, h), min(ow, w)
    dy = int(rng.integers(0, h - ch + 1))
    dx = int(rng.integers(0, w - cw + 1))
    m = mask[sy:sy + ch, sx:sx + cw]
    image, label = image.copy(), label.copy()
    image[dy:dy + ch, dx:dx + cw][m] = rgb[sy:sy + ch, sx:sx + cw][m]
    label[dy:dy + ch, dx:dx + cw][m] = outlier_label
    return image, label


class AnomalyMix:
    """Callable applied to (image, label) before augmentation, with the sample's own RNG."""

    def __init__(self, bank: OutlierBank, p_out: float = 0.1, outlier_label: int = 254,
                 scale_range: tuple[float, float] = (1.0, 1.0)):
        self.bank, self.p_out, self.outlier_label = bank, p_out, outlier_label
        self.scale_range = scale_range

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
        if rng.random() >= self.p_out:
            return image, label
        obj = self.bank[int(rng.integers(len(self.bank)))]
        scale = float(rng.uniform(*self.scale_range))
        return paste(image, label, obj, rng, self.outlier_label, scale)
