"""``rba bag-from-images``: a folder of frames -> a camera bag (tests, benchmarks, the demo).

Frames are sorted by name and stamped at a fixed rate (header stamp = bag time). Raw images are
``sensor_msgs/Image`` (rgb8 by default, or bgr8 / rgba8 / bgra8 / mono8), compressed ones
``sensor_msgs/CompressedImage`` (jpeg or png). With intrinsics, a ``CameraInfo`` (plumb_bob, no
distortion) is written next to every frame on ``<camera>/camera_info``.

Output by name: ``X.mcap`` / ``X.db3`` one rosbag2 storage file; ``X.bag`` a ROS 1 bag;
anything else a rosbag2 folder (``storage``: sqlite3 by default, or mcap).
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
from tqdm import tqdm

from ..dataconf import check, check_fields
from ..imageio import list_images, read_image
from ..pipeline.image_msgs import compressed_fields, rgb_fields
from ..pipeline.messages import camera_info_msg, header
from .bags import (STORAGES, BagError, CAMERA_INFO_TYPE, camera_info_topic, output_typestore,
                   serialize, storage_plugin, storage_suffix)

IMAGE, COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
START_SEC = 1_700_000_000  # default first stamp (deterministic bags)


@dataclass
class ImagesToBag:
    folder: str
    out: str
    rate: float = 15.0
    topic: str | None = None             # default /camera/image_raw[/compressed]
    compressed: bool = False
    format: Literal["jpeg", "png"] = "jpeg"  # compressed
    quality: int = 90                    # jpeg quality
    encoding: Literal["rgb8", "bgr8", "rgba8", "bgra8", "mono8"] = "rgb8"  # raw
    frame_id: str = "camera"
    camera_info: list[float] | None = None  # fx fy cx cy, or the 9 values of K
    start: float = START_SEC             # first stamp, seconds
    limit: int | None = None
    resize: tuple[int, int] | None = None   # (H, W)
    storage: Literal[STORAGES] = "sqlite3"  # for a rosbag2 folder

    def __post_init__(self):
        check_fields(self)
        check(self.rate > 0, "rate", f"must be > 0, got {self.rate}")
        check(0 <= self.quality <= 100, "quality", f"must be in 0..100, got {self.quality}")
        check(self.camera_info is None or len(self.camera_info) in (4, 9), "camera_info",
              "takes fx fy cx cy or the 9 values of K")
        check(self.limit is None or self.limit >= 1, "limit", "must be at least 1")
        check(self.resize is None or min(self.resize) > 0, "resize", "must be positive")


def intrinsics(values: list[float]) -> list[float]:
    """fx fy cx cy (or the 9 entries of K) -> K row-major."""
    if len(values) == 4:
        fx, fy, cx, cy = values
        return [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    return [float(v) for v in values]


class _BagSink:
    """rosbag2 (folder or single file) or ROS 1 bag, chosen by the output name."""

    def __init__(self, out: Path, storage: str):
        self.out, self.store = out, output_typestore()
        if out.exists():
            raise BagError(f"{out} exists already; choose a new name")
        self.ros1 = out.suffix == ".bag"
        single = {".mcap": "mcap", ".db3": "sqlite3"}.get(out.suffix)
        self.single = single is not None
        self.conns: dict[str, object] = {}
        if self.ros1:
            from rosbags.rosbag1 import Writer as Writer1
            from rosbags.typesys import Stores, get_typestore

            self.ros1_store = get_typestore(Stores.ROS1_NOETIC)
            self.writer = Writer1(out)
            self.converters: dict[str, object] = {}
        else:
            from rosbags.rosbag2 import Writer

            storage = single or storage
            self.tmp = Path(tempfile.mkdtemp(prefix=".bag_", dir=out.parent)) if self.single \
                else None
            path = self.tmp / out.stem if self.single else out
            self.suffix = storage_suffix(storage)
            self.writer = Writer(path, version=9, storage_plugin=storage_plugin(storage))
        self.writer.open()

    def write(self, topic: str, msgtype: str, timestamp: int, msg: dict) -> None:
        if topic not in self.conns:
            store = self.ros1_store if self.ros1 else self.store
            self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=store)
        data = serialize(self.store, msgtype, msg)
        if self.ros1:
            if msgtype not in self.converters:
                from rosbags.convert.converter import generate_message_converter

                self.converters[msgtype] = generate_message_converter(
                    self.store, self.ros1_store, msgtype, msgtype, {}, src_is2=True,
                    dst_is2=False)
            data = self.converters[msgtype](data)
        self.writer.write(self.conns[topic], timestamp, data)

    def close(self) -> None:
        self.writer.close()
        if not self.ros1 and self.single:
            shutil.move(self.tmp / self.out.stem / f"{self.out.stem}{self.suffix}", self.out)
            shutil.rmtree(self.tmp, ignore_errors=True)


def bag_from_images(cfg: ImagesToBag) -> dict:
    """Write the bag; returns a summary (frames, topics, first and last stamp)."""
    paths = list_images([cfg.folder])[: cfg.limit]
    topic = cfg.topic or ("/camera/image_raw/compressed" if cfg.compressed else "/camera/image_raw")
    k = intrinsics(cfg.camera_info) if cfg.camera_info else None
    out = Path(cfg.out)
    sink = _BagSink(out, cfg.storage)
    start_ns = int(round(cfg.start * 1e9))
    stamps = []
    try:
        for i, path in enumerate(tqdm(paths, desc="bag-from-images", unit="img")):
            rgb = read_image(path)
            if cfg.resize:
                rgb = cv2.resize(rgb, cfg.resize[::-1], interpolation=cv2.INTER_AREA)
            t = start_ns + int(round(i * 1e9 / cfg.rate))
            hdr = header((t // 1_000_000_000, t % 1_000_000_000), cfg.frame_id)
            if k is not None:  # before its image, as a camera driver publishes them
                sink.write(camera_info_topic(topic), CAMERA_INFO_TYPE, t,
                           camera_info_msg(hdr, k, rgb.shape[1], rgb.shape[0]))
            if cfg.compressed:
                sink.write(topic, COMPRESSED, t,
                           {"header": hdr, **compressed_fields(rgb, cfg.format, cfg.quality)})
            else:
                sink.write(topic, IMAGE, t, {"header": hdr, **rgb_fields(rgb, cfg.encoding)})
            stamps.append(t)
    finally:
        sink.close()
    return {"out": str(out), "frames": len(stamps), "topic": topic,
            "camera_info": camera_info_topic(topic) if k is not None else None,
            "first_stamp_ns": stamps[0] if stamps else None,
            "last_stamp_ns": stamps[-1] if stamps else None}
