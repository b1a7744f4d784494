"""Helpers for the replay tests: CamVid clip bags, a shared tiny backend, reading output bags."""
from __future__ import annotations

import functools
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from conftest import require
from rba_core.pipeline.messages import LABELS_TOPIC, OUTPUT_TOPICS
from rba_core.replay.bags import open_reader

SIZE = (72, 96)          # (H, W): small frames keep the tiny model fast on a shared CPU
K = [80.0, 80.0, 48.0, 36.0]  # fx fy cx cy for the CameraInfo of the test bags
NS = "/camera/rba"


def camvid_val(data_dir: Path) -> Path:
    return require(data_dir / "camvid" / "val")


def source_frames(data_dir: Path, n: int) -> list[np.ndarray]:
    """The first n clip frames, resized like ``bag-from-images --resize`` (INTER_AREA), RGB."""
    paths = sorted(camvid_val(data_dir).glob("*.png"))[:n]
    return [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), SIZE[::-1],
                       interpolation=cv2.INTER_AREA) for p in paths]


@functools.lru_cache(maxsize=1)
def tiny_backend():
    from rba_core.runtime import load_backend

    return load_backend("preset:tiny", "torch", "rba", "exact", "cpu")


def make_bag(data_dir: Path, out: Path, n: int, **kw) -> dict:
    from rba_core.replay.from_images import ImagesToBag, bag_from_images

    kw.setdefault("camera_info", K)
    return bag_from_images(ImagesToBag(str(camvid_val(data_dir)), str(out), limit=n,
                                       resize=SIZE, **kw))


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(bag timestamp, deserialized message)] in bag order."""
    out: dict[str, list] = defaultdict(list)
    reader = open_reader(path)
    try:
        for conn, ts, raw in reader.messages():
            out[conn.topic].append((ts, reader.deserialize(raw, conn.msgtype)))
    finally:
        reader.close()
    return dict(out)


def stamp_of(msg) -> tuple[int, int]:
    return int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)


def assert_complete_outputs(messages: dict, image_topic: str = "/camera/image_raw",
                            ns: str = NS, frame_id: str = "camera") -> list[tuple[int, int]]:
    """Every frame has every output topic once, with the image's stamp and frame id."""
    images = messages[image_topic]
    stamps = [stamp_of(m) for _, m in images]
    assert len(set(stamps)) == len(stamps), "an input frame was written twice"
    for name in OUTPUT_TOPICS:
        got = [(stamp_of(m), m.header.frame_id, ts) for ts, m in messages[f"{ns}/{name}"]]
        assert [s for s, _, _ in got] == stamps, f"{name}: stamps differ from the images'"
        assert all(f == frame_id for _, f, _ in got), name
        assert [t for _, _, t in got] == [t for t, _ in images], f"{name}: bag times"
    assert len(messages[f"{ns}/{LABELS_TOPIC[0]}"]) == 1
    return stamps


def image_array(msg) -> np.ndarray:
    """mono8 / 32FC1 / rgb8 Image -> array (independent of the code under test)."""
    dtype = {"mono8": np.uint8, "rgb8": np.uint8, "32FC1": np.float32}[msg.encoding]
    chans = 3 if msg.encoding == "rgb8" else 1
    arr = np.frombuffer(bytes(msg.data), dtype).reshape(msg.height, msg.width, chans)
    return arr[..., 0] if chans == 1 else arr
