"""Dataset readers for evaluation: each yields ``Sample(name, image, label)``.

``image`` is RGB uint8 [H, W, 3]; ``label`` is uint8 [H, W]: for anomaly sets 0 = normal,
1 = anomaly, 255 = void; for closed-set sets the class (train) id, or the set's ``ignore_index``.
Files are read lazily, one sample at a time. The folder layouts under ``--root`` (and the label
values each set uses) are README's "Datasets" table, implemented by the readers below.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import cv2
import numpy as np

from ..classes import CAMVID_CLASSES, CITYSCAPES_CLASSES
from ..errors import RbaError, require
from ..imageio import IMAGE_EXTS

log = logging.getLogger(__name__)

VOID = 255


class DatasetError(RbaError):
    """A dataset folder is missing, incomplete or not in the expected layout."""


class Sample(NamedTuple):
    name: str
    image: np.ndarray  # RGB uint8 [H, W, 3]
    label: np.ndarray  # uint8 [H, W]


def make_lut(mapping: dict[int, int], default: int = VOID) -> np.ndarray:
    """Raw label value -> output value, as a 256-entry uint8 lookup table."""
    lut = np.full(256, default, np.uint8)
    for raw, out in mapping.items():
        lut[raw] = out
    return lut


IDENTITY = np.arange(256, dtype=np.uint8)


@dataclass
class Item:
    name: str
    image: Path
    label: Path
    lut: np.ndarray = field(default_factory=lambda: IDENTITY, repr=False)


@dataclass
class SegmentationDataset:
    """Image/label file pairs, read lazily; labels go through each item's lookup table."""
    name: str
    items: list[Item]
    task: str = "anomaly"               # "anomaly" (0/1/255) or "closed" (class ids)
    ignore_index: int = VOID
    class_names: list[str] | None = None  # closed set; None = take the model's
    track: str = "anomaly"              # SMIYC component size filters (anomaly / obstacle)
    protocol: str = "paper"             # default evaluation protocol

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        item = self.items[i]
        image = cv2.imread(str(item.image), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"cannot decode image {item.image}")
        raw = cv2.imread(str(item.label), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DatasetError(f"cannot decode label {item.label}")
        if raw.ndim == 3:
            if not (raw == raw[..., :1]).all():
                raise DatasetError(f"label {item.label} is a colour image; expected one channel "
                                   f"of label ids")
            raw = raw[..., 0]
        if raw.shape != image.shape[:2]:
            raise DatasetError(f"label {item.label} is {raw.shape[1]}x{raw.shape[0]} but its image "
                               f"is {image.shape[1]}x{image.shape[0]}")
        if raw.dtype == np.uint8:
            label = item.lut[raw]
        else:  # 16-bit label files: values above 255 are void
            label = item.lut[np.clip(raw, 0, 255).astype(np.uint8)]
            label[raw > 255] = self.ignore_index
        return Sample(item.name, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), label)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def subset(self, limit: int) -> "SegmentationDataset":
        """The first ``limit`` samples (for quick runs)."""
        return SegmentationDataset(**{**self.__dict__, "items": self.items[:limit]})


def natural_key(name: str):
    """'10' after '9': digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _images_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS),
                  key=lambda p: natural_key(p.stem))


def pair_folder(root: Path, image_dir: Path, label_dir: Path, label_suffix: str = "",
                lut: np.ndarray = IDENTITY, allow_unlabelled: bool = False) -> list[Item]:
    """images/<stem>.<ext> <-> labels/<stem><label_suffix>.png, checked both ways."""
    if not image_dir.is_dir():
        raise DatasetError(f"{root}: no {image_dir.name}/ folder (see `rba eval --help` for the "
                           f"expected layout)")
    if not label_dir.is_dir():
        raise DatasetError(f"{root}: no {label_dir.name}/ folder with the labels")
    images = _images_in(image_dir)
    if not images:
        raise DatasetError(f"{image_dir}: no images")
    items, unlabelled = [], []
    for img in images:
        lbl = label_dir / f"{img.stem}{label_suffix}.png"
        if lbl.is_file():
            items.append(Item(img.stem, img, lbl, lut))
        else:
            unlabelled.append(img)
    used = {it.label.name for it in items}
    extra = sorted(p.name for p in label_dir.glob(f"*{label_suffix}.png") if p.name not in used)
    if unlabelled and not (allow_unlabelled and items):
        raise DatasetError(f"{root}: {len(images)} images but {len(items)} labels "
                           f"({unlabelled[0].name} has no {label_dir.name}/"
                           f"{unlabelled[0].stem}{label_suffix}.png)")
    if extra:
        raise DatasetError(f"{root}: {len(extra)} label(s) without an image in "
                           f"{image_dir.name}/ (first: {extra[0]})")
    if unlabelled:
        log.info("%s: %d of %d images have labels (public labels only); evaluating those",
                 root, len(items), len(images))
    return items


def _first_dir(root: Path, names: tuple[str, ...]) -> Path:
    return next((root / n for n in names if (root / n).is_dir()), root / names[0])


def _check_root(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root not found: {root}")
    return root


def road_anomaly(root: str | Path, **_) -> SegmentationDataset:
    root = _check_root(root)
    lut = make_lut({0: 0, 1: 0, 2: 1})
    frames = root / "frames"
    if not (root / "images").is_dir() and frames.is_dir():  # original release
        items = [Item(p.stem, p, frames / f"{p.stem}.labels" / "labels_semantic.png", lut)
                 for p in _images_in(frames)]
        missing = [it for it in items if not it.label.is_file()]
        if missing or not items:
            raise DatasetError(f"{root}: {len(items)} frames but {len(items) - len(missing)} "
                               f"labels (missing: {missing[0].label if missing else 'all'})")
    else:
        items = pair_folder(root, root / "images", root / "labels_masks", lut=lut)
    return SegmentationDataset("road_anomaly", items)


def fishyscapes(root: str | Path, variant: str = "fs_static", **_) -> SegmentationDataset:
    root = _check_root(root)
    items = pair_folder(root, _first_dir(root, ("images", "original")),
                        _first_dir(root, ("labels_masks", "labels")), lut=make_lut({0: 0, 1: 1}))
    return SegmentationDataset(variant, items)


def smiyc(root: str | Path, track: str = "anomaly", **_) -> SegmentationDataset:
    root = _check_root(root)
    labels = root / "labels_masks"
    official = labels.is_dir() and any(labels.glob("*_labels_semantic.png"))
    items = pair_folder(root, root / "images", labels, "_labels_semantic" if official else "",
                        lut=make_lut({0: 0, 1: 1}), allow_unlabelled=official)
    return SegmentationDataset(f"smiyc_{track}", items, track=track, protocol="smiyc")


def _cityscapes_lut() -> np.ndarray:
    labels = require("cityscapesscripts.helpers.labels", "eval").labels
    return make_lut({lb.id: (lb.trainId if 0 <= lb.trainId < 255 else VOID)
                     for lb in labels if 0 <= lb.id < 256})


def cityscapes(root: str | Path, split: str | None = None, **_) -> SegmentationDataset:
    root = _check_root(root)
    split = split or "val"
    image_dir = root / "leftImg8bit" / split
    images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise DatasetError(f"{root}: no leftImg8bit/{split}/<city>/*_leftImg8bit.png images")
    lut_ids, items = None, []
    for img in images:
        stem = img.name[:-len("_leftImg8bit.png")]
        gt = root / "gtFine" / split / img.parent.name / f"{stem}_gtFine_"
        train_ids, label_ids = Path(f"{gt}labelTrainIds.png"), Path(f"{gt}labelIds.png")
        if train_ids.is_file():
            items.append(Item(stem, img, train_ids))
        elif label_ids.is_file():
            lut_ids = _cityscapes_lut() if lut_ids is None else lut_ids
            items.append(Item(stem, img, label_ids, lut_ids))
        else:
            raise DatasetError(f"{root}: no gtFine labels for {img.name} (looked for {train_ids})")
    return SegmentationDataset("cityscapes", items, task="closed", ignore_index=VOID,
                               class_names=list(CITYSCAPES_CLASSES))


def camvid(root: str | Path, split: str | None = None, **_) -> SegmentationDataset:
    root = _check_root(root)
    split = split or "val"
    void = len(CAMVID_CLASSES)
    lut = make_lut({i: i for i in range(void)}, default=void)
    items = pair_folder(root, root / split, root / f"{split}annot", lut=lut)
    return SegmentationDataset("camvid", items, task="closed", ignore_index=void,
                               class_names=list(CAMVID_CLASSES))


def parse_label_map(spec: str) -> dict[int, int]:
    """'0:0,2:1' -> {0: 0, 2: 1}; one clear error for anything else."""
    mapping = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        m = re.fullmatch(r"(\d+):(\d+)", part)
        if not m or int(m.group(1)) > 255 or int(m.group(2)) > 255:
            raise DatasetError(f"bad label map entry {part!r}: expected RAW:OUT with values "
                               f"0..255, e.g. 0:0,2:1")
        mapping[int(m.group(1))] = int(m.group(2))
    if not mapping:
        raise DatasetError("empty label map: expected RAW:OUT[,RAW:OUT...], e.g. 0:0,2:1")
    return mapping


def image_folder(root: str | Path, label_map: str | None = None, task: str | None = None,
                 **_) -> SegmentationDataset:
    root = _check_root(root)
    task = task or "anomaly"
    if task not in ("anomaly", "closed"):
        raise DatasetError(f"task must be anomaly or closed, got {task!r}")
    mapping = parse_label_map(label_map) if label_map else None
    if task == "anomaly" and mapping and not set(mapping.values()) <= {0, 1, VOID}:
        raise DatasetError(f"an anomaly label map must map to 0, 1 or 255, got {label_map}")
    lut = make_lut(mapping) if mapping else (make_lut({0: 0, 1: 1}) if task == "anomaly"
                                             else IDENTITY)
    label_dir = _first_dir(root, ("labels_masks", "labels", "masks"))
    items = pair_folder(root, root / "images", label_dir, lut=lut)
    return SegmentationDataset("folder", items, task=task)


DATASETS: dict[str, Callable[..., SegmentationDataset]] = {
    "road_anomaly": road_anomaly,
    "fs_static": lambda root, **kw: fishyscapes(root, "fs_static"),
    "fs_lost_found": lambda root, **kw: fishyscapes(root, "fs_lost_found"),
    "smiyc_anomaly": lambda root, **kw: smiyc(root, "anomaly"),
    "smiyc_obstacle": lambda root, **kw: smiyc(root, "obstacle"),
    "cityscapes": cityscapes,
    "camvid": camvid,
    "folder": image_folder,
}


def open_dataset(name: str, root: str | Path, split: str | None = None,
                 label_map: str | None = None, task: str | None = None) -> SegmentationDataset:
    """A reader by name (``DATASETS``); layout problems raise one-line ``DatasetError``s."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    if name != "folder" and (label_map or task):
        raise DatasetError("--label-map and --task apply to the folder dataset only")
    return DATASETS[name](root, split=split, label_map=label_map, task=task)
