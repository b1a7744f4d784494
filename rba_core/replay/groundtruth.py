"""Ground-truth evaluation of a replay: the metrics of ``rba eval``, per image topic and pooled.

The maps come from the replay's output bag (``anomaly``: the exact float32 scores; ``semantic``:
class ids), so an interrupted and resumed replay is evaluated as a whole. Labels come from

- a folder of single-channel masks (``folder``; one sub-folder per camera namespace when several
  topics are replayed, e.g. ``DIR/front/``), matched by ``index`` (sorted names = frame order on
  the topic) or by ``stamp`` (file name = header stamp as nanoseconds or ``SEC_NANOSEC``);
- or a mask topic in the input bag (``topics``; Image mono8 / 8UC1 / 16UC1 or CompressedImage png),
  matched by header stamp. Its messages are held in memory until their frame is read.

Anomaly labels: 0 normal, 1 anomaly, anything else void (paper protocol: ``PaperMetrics``).
Closed-set labels: class ids, ``ignore_index`` void (``ConfusionMatrix``: mIoU).
Maps are resized to the label's size (bilinear scores, nearest classes), as ``rba eval`` does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from tqdm import tqdm

from ..data.datasets import IMAGE_EXTS, make_lut, parse_label_map
from ..dataconf import check, check_fields
from ..errors import RbaError
from ..evaluation.evaluator import StreamingEvaluator
from ..evaluation.report import class_iou_table, results_table, write_report
from ..pipeline.image_msgs import ImageDecodeError
from ..pipeline.image_msgs import image_array as _image_array  # the node's mono8 / 32FC1 maps
from ..pipeline.messages import LABELS_TOPIC
from .bags import BagError, camera_namespace, open_reader, output_topic, resolve_topic
from .segments import read_state

STAMP_NAME = re.compile(r"(\d+)(?:[_.](\d{1,9}))?")


class GroundTruthError(RbaError):
    """Ground truth missing, unreadable or not matching the frames."""


def parse_stamp(stem: str) -> tuple[int, int] | None:
    """'1700000000066666667' or '1700000000_066666667' -> (sec, nanosec); None otherwise."""
    m = STAMP_NAME.fullmatch(stem)
    if not m:
        return None
    if m.group(2) is None:
        ns = int(m.group(1))
        return ns // 1_000_000_000, ns % 1_000_000_000
    return int(m.group(1)), int(m.group(2).ljust(9, "0"))


def decode_mask(msg) -> np.ndarray:
    """A mask message (Image mono8/8UC1/mono16/16UC1, or CompressedImage png) -> [H, W] array."""
    try:
        mask = _image_array(msg)
    except ImageDecodeError as exc:
        raise GroundTruthError(f"mask message: {exc}") from None
    if mask.ndim != 2 or mask.dtype not in (np.uint8, np.uint16):
        raise GroundTruthError(f"mask message ({getattr(msg, 'format', '') or msg.encoding}) is "
                               f"not a label image (use mono8 / 8UC1 / mono16 / 16UC1 or png)")
    return mask


@dataclass
class GroundTruth:
    folder: str | None = None
    topics: list[str] = field(default_factory=list)  # mask topics in ``bag``
    key: Literal["auto", "index", "stamp"] = "auto"   # how folder masks match frames
    task: Literal["anomaly", "closed"] = "anomaly"
    label_map: str | None = None
    ignore_index: int = 255
    bag: str | None = None                            # the input bag (for mask topics)

    def __post_init__(self):
        check_fields(self)
        check(0 <= self.ignore_index <= 255, "ignore_index", "must be in 0..255")

    def lut(self) -> np.ndarray:
        if self.label_map:
            mapping = parse_label_map(self.label_map)
            if self.task == "anomaly" and not set(mapping.values()) <= {0, 1, 255}:
                raise GroundTruthError(f"an anomaly label map must map to 0, 1 or 255, got "
                                       f"{self.label_map}")
            return make_lut(mapping)
        if self.task == "anomaly":
            return make_lut({0: 0, 1: 1})
        return np.arange(256, dtype=np.uint8)

    def check(self) -> None:
        """The sources exist (fields are checked on creation)."""
        if bool(self.folder) == bool(self.topics):
            raise GroundTruthError("give either --gt (a folder) or --gt-topic, not both")
        if self.folder and not Path(self.folder).is_dir():
            raise GroundTruthError(f"ground-truth folder not found: {self.folder}")
        self.lut()

    def camera_topics(self, image_topics: list[str]) -> list[str]:
        """Image topics minus the mask topics themselves (masks may be Images too)."""
        masks = {resolve_topic(m, t) for m in self.topics for t in image_topics}
        return [t for t in image_topics if t not in masks]

    # -- labels per image topic --------------------------------------------------------------------
    def folder_for(self, image_topic: str, n_topics: int) -> Path:
        root = Path(self.folder)
        sub = root / camera_namespace(image_topic).strip("/")
        if sub != root and sub.is_dir():
            return sub
        if n_topics > 1:
            raise GroundTruthError(f"several topics replayed: put the masks of {image_topic} in "
                                   f"{sub}")
        return root

    def mask_topic_for(self, image_topic: str, image_topics: list[str]) -> str:
        if len(self.topics) == 1:
            name = self.topics[0]
            if name.startswith("/") and len(image_topics) > 1:
                raise GroundTruthError("one absolute --gt-topic for several image topics: give "
                                       "one per image topic, or a relative name")
            return resolve_topic(name, image_topic)
        if len(self.topics) != len(image_topics):
            raise GroundTruthError(f"{len(self.topics)} --gt-topic for {len(image_topics)} image "
                                   f"topics: give one, or one per image topic")
        return resolve_topic(self.topics[image_topics.index(image_topic)], image_topic)


class _FolderLabels:
    """Masks of one topic from a folder, by frame index or by stamp."""

    def __init__(self, folder: Path, key: str, stamps: list[tuple[int, int]]):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise GroundTruthError(f"no masks in {folder}")
        by_stamp = {parse_stamp(f.stem): f for f in files}
        if key == "auto":
            key = ("stamp" if None not in by_stamp and set(by_stamp) & set(stamps) else "index")
        if key == "stamp" and None in by_stamp:
            bad = next(f for f in files if parse_stamp(f.stem) is None)
            raise GroundTruthError(f"{bad.name}: not a stamp name (NANOSECONDS or SEC_NANOSEC)")
        self.key, self.files, self.by_stamp = key, files, by_stamp

    def get(self, index: int, stamp: tuple[int, int]) -> np.ndarray | None:
        path = self.by_stamp.get(stamp) if self.key == "stamp" else (
            self.files[index] if index < len(self.files) else None)
        if path is None:
            return None
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if mask is None or mask.ndim != 2:
            raise GroundTruthError(f"{path}: not a single-channel label image")
        return mask


class _TopicLabels:
    """Masks of one topic from the input bag, by header stamp (raw messages held in memory)."""

    def __init__(self, reader, topic: str):
        from .bags import ros2_converter, output_typestore

        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            raise GroundTruthError(f"no mask topic {topic} in the input bag")
        self.store, self.msgtype = output_typestore(), conns[0].msgtype
        convert = ros2_converter(reader, self.msgtype)
        self.raw: dict[tuple[int, int], bytes] = {}
        for _, _, raw in reader.messages(connections=conns):
            cdr = convert(raw)
            hdr = self.store.deserialize_cdr(cdr, self.msgtype).header
            self.raw[(int(hdr.stamp.sec), int(hdr.stamp.nanosec))] = cdr

    def get(self, index: int, stamp: tuple[int, int]) -> np.ndarray | None:
        cdr = self.raw.pop(stamp, None)
        return None if cdr is None else decode_mask(self.store.deserialize_cdr(cdr, self.msgtype))


def _label_map_values(mask: np.ndarray, lut: np.ndarray) -> np.ndarray:
    if mask.dtype != np.uint8:
        mask = np.where(mask > 255, 255, mask).astype(np.uint8)  # out of LUT range: void
    return lut[mask]


def _fit(array: np.ndarray, shape: tuple[int, int], nearest: bool) -> np.ndarray:
    if array.shape == tuple(shape):
        return array
    return cv2.resize(array, (shape[1], shape[0]),
                      interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def evaluate_replay(out_bag: str | Path, gt: GroundTruth, image_topics: list[str],
                    namespace: str, eval_out: str | Path) -> dict:
    """Read the replay's maps, match labels, write results.json / results.md; return the report."""
    gt.check()
    lut = gt.lut()
    state = read_state(Path(out_bag)) or {}
    map_name = "anomaly" if gt.task == "anomaly" else "semantic"
    maps = {output_topic(t, map_name, namespace): t for t in image_topics}
    labels_topics = {output_topic(t, LABELS_TOPIC[0], namespace): t for t in image_topics}
    reader = open_reader(out_bag)
    input_reader = open_reader(gt.bag) if gt.topics else None
    try:
        have = {c.topic for c in reader.connections}
        missing = [t for t in [*image_topics, *maps] if t not in have]
        if missing:
            raise BagError(f"{out_bag} has no topic {missing[0]}: not a replay of these topics")
        # frame order and class names (LabelInfo) first: index-keyed masks need the stamps
        stamps: dict[str, list] = {t: [] for t in image_topics}
        class_names: list[str] = []
        wanted = [c for c in reader.connections if c.topic in image_topics
                  or c.topic in labels_topics]
        for conn, _, raw in reader.messages(connections=wanted):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic in labels_topics:
                class_names = [v.class_name for v in msg.class_map]
            else:
                stamps[conn.topic].append((int(msg.header.stamp.sec),
                                           int(msg.header.stamp.nanosec)))
        sources = {}
        for t in image_topics:
            if gt.folder:
                sources[t] = _FolderLabels(gt.folder_for(t, len(image_topics)), gt.key, stamps[t])
            else:
                sources[t] = _TopicLabels(input_reader, gt.mask_topic_for(t, image_topics))
            if len(set(stamps[t])) != len(stamps[t]):
                raise GroundTruthError(f"{t} has repeated header stamps: frames are ambiguous")
        index = {t: {s: i for i, s in enumerate(stamps[t])} for t in image_topics}
        if gt.task == "closed" and not class_names:
            raise BagError(f"{out_bag} holds no LabelInfo: cannot name the classes")
        evaluator = StreamingEvaluator(gt.task, image_topics, class_names=class_names,
                                       ignore_index=gt.ignore_index, pooled=True)
        counts = {t: {"frames": len(stamps[t]), "frames_with_gt": 0} for t in image_topics}
        conns = [c for c in reader.connections if c.topic in maps]
        for conn, _, raw in tqdm(reader.messages(connections=conns), desc="evaluate",
                                 unit="frame", total=sum(c.msgcount for c in conns)):
            topic = maps[conn.topic]
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
            mask = sources[topic].get(index[topic][stamp], stamp)
            if mask is None:
                continue
            label = _label_map_values(mask, lut)
            pred = _fit(_image_array(msg), label.shape, nearest=gt.task == "closed")
            evaluator.add(label, {topic: pred}, f"{topic} frame {stamp}")
            counts[topic]["frames_with_gt"] += 1
    finally:
        reader.close()
        if input_reader is not None:
            input_reader.close()
    results = evaluator.results()
    counts["pooled"] = {k: sum(c[k] for c in counts.values()) for k in ("frames", "frames_with_gt")}
    if counts["pooled"]["frames_with_gt"] == 0:
        raise GroundTruthError("no frame matched a ground-truth mask (check --gt-key / names)")
    report = {"bag": str(out_bag), "task": gt.task,
              "protocol": "paper" if gt.task == "anomaly" else "closed-set",
              "score": (state.get("pipeline") or {}).get("score"),
              "ground_truth": {"folder": gt.folder, "topics": gt.topics, "key": gt.key,
                               "label_map": gt.label_map, "ignore_index": gt.ignore_index},
              "class_names": class_names,
              "topics": {t: {**counts[t], "results": results[t]} for t in results}}
    return write_report(eval_out, report, markdown(report))


def markdown(report: dict) -> str:
    rows = [([t, e["frames"], e["frames_with_gt"]], e["results"], [])
            for t, e in report["topics"].items()]
    anomaly = report["task"] == "anomaly"
    lines = [f"# rba replay evaluation: {report['bag']}", "",
             f"- task: {report['task']} ({report['protocol']}), score: {report['score']}; "
             f"values in percent", "",
             *results_table(["topic", "frames", "with GT"], rows, "paper" if anomaly else "closed")]
    if not anomaly:
        lines += class_iou_table({t: e["results"] for t, e in report["topics"].items()})
    return "\n".join(lines) + "\n"
