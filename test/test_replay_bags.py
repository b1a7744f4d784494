"""bag-from-images and reading frames back: every storage, raw and compressed, every encoding."""
from __future__ import annotations

import numpy as np
import pytest

from rba_core.cli import main
from rba_core.pipeline.messages import header, image_msg
from rba_core.replay.bags import (BagError, camera_namespace, open_reader, output_namespace,
                                  output_typestore, serialize)
from rba_core.replay.source import FrameReader
from replay_util import K, SIZE, make_bag, source_frames

RATE = 15.0
N = 4


def read_frames(path, **kw):
    reader = open_reader(path)
    try:
        return list(FrameReader(reader, **kw))
    finally:
        reader.close()


@pytest.mark.parametrize("name, kw", [
    ("clip.mcap", {}),                                   # single mcap file
    ("clip_sqlite", {}),                                 # rosbag2 folder, sqlite3
    ("clip_mcap", {"storage": "mcap"}),                  # rosbag2 folder, mcap
    ("clip.db3", {"compressed": True}),                  # jpeg
    ("clip_png", {"compressed": True, "format": "png"}),
    ("clip.bag", {}),                                    # ROS 1
    ("clip_c.bag", {"compressed": True}),
])
def test_bag_from_images_roundtrip(data_dir, tmp_path, name, kw):
    summary = make_bag(data_dir, tmp_path / name, N, **kw)
    assert summary["frames"] == N
    frames = read_frames(tmp_path / name)
    expected = source_frames(data_dir, N)
    assert [f.index for f in frames] == list(range(N))
    start = 1_700_000_000 * 10**9
    for i, (f, want) in enumerate(zip(frames, expected)):
        t = start + round(i * 1e9 / RATE)  # 15 Hz stamps, header stamp = bag time
        assert f.timestamp == t and f.stamp == (t // 10**9, t % 10**9)
        assert f.frame_id == "camera" and f.error is None
        assert f.camera is not None and f.camera.k == (K[0], 0, K[2], 0, K[1], K[3], 0, 0, 1)
        assert f.camera.image_size == (SIZE[1], SIZE[0]) and not f.camera.distorted
        if kw.get("compressed") and kw.get("format", "jpeg") == "jpeg":
            assert np.abs(f.rgb.astype(int) - want).mean() < 4  # lossy
        else:
            np.testing.assert_array_equal(f.rgb, want)
    # every CameraInfo is carried (once) by the frames, to be copied into a replay's output
    assert sum(len(f.extra) for f in frames) == N


def test_cli_bag_from_images_and_errors(data_dir, tmp_path, capsys):
    from replay_util import camvid_val

    out = tmp_path / "c.mcap"
    assert main(["bag-from-images", str(camvid_val(data_dir)), "-o", str(out), "--limit", "2",
                 "--resize", "48x36", "--compressed", "--rate", "10", "--frame-id", "cam0"]) == 0
    frames = read_frames(out)
    assert [f.topic for f in frames] == ["/camera/image_raw/compressed"] * 2
    assert frames[1].stamp == (1_700_000_000, 100_000_000) and frames[1].frame_id == "cam0"
    assert frames[0].camera is None  # no --camera-info
    # the output exists: refused, one line
    assert main(["bag-from-images", str(camvid_val(data_dir)), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    with pytest.raises(BagError, match="no image topic /nope"):
        read_frames(out, topics=["/nope"])


def test_topic_naming_matches_the_node():
    # the node publishes <camera>/<output_namespace>/<name> and reads <camera>/image_raw
    assert camera_namespace("/front/image_raw") == "/front"
    assert camera_namespace("/front/image_raw/compressed") == "/front"
    assert camera_namespace("/image_raw") == ""
    assert output_namespace("/a/b/image_rect") == "/a/b/rba"
    assert output_namespace("/image_raw") == "/rba"


# -- encodings: hand-made messages in a bag decode to the expected RGB -----------------------------
def _bt601_uyvy(rgb: np.ndarray) -> np.ndarray:
    """RGB with equal pixel pairs -> UYVY bytes (BT.601 studio range, by hand)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    h, w = y.shape
    out = np.empty((h, w * 2), np.float64)
    out[:, 0::4], out[:, 1::4] = u[:, 0::2], y[:, 0::2]
    out[:, 2::4], out[:, 3::4] = v[:, 0::2], y[:, 1::2]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _raw(hdr, h, w, encoding, step, data) -> dict:
    return {"header": hdr, "height": h, "width": w, "encoding": encoding, "is_bigendian": 0,
            "step": step, "data": np.asarray(data, np.uint8).reshape(-1)}


def _encoded_messages(rgb: np.ndarray) -> dict[str, tuple[dict, np.ndarray, float]]:
    """encoding -> (message fields, expected RGB, max abs error allowed)."""
    h, w, _ = rgb.shape
    gray = np.round(rgb @ [0.299, 0.587, 0.114]).astype(np.uint8)  # BT.601 luma
    flat = np.zeros_like(rgb)
    flat[:] = (200, 120, 40)
    bayer = np.empty((h, w), np.uint8)  # RGGB mosaic of a flat colour
    bayer[0::2, 0::2], bayer[1::2, 1::2] = 200, 40
    bayer[0::2, 1::2] = bayer[1::2, 0::2] = 120
    pairs = np.repeat(rgb[:, 0::2], 2, axis=1)  # chroma-subsampling-safe image
    pad = 8
    padded = np.full((h, w * 3 + pad), 0xAB, np.uint8)
    padded[:, : w * 3] = rgb.reshape(h, -1)
    hdr = header((1, 0), "camera")
    return {
        "bgr8": (_raw(hdr, h, w, "bgr8", w * 3, rgb[..., ::-1]), rgb, 0),
        "rgba8": (_raw(hdr, h, w, "rgba8", w * 4, np.dstack([rgb, np.full((h, w), 255)])),
                  rgb, 0),
        "mono8": (_raw(hdr, h, w, "mono8", w, gray), np.dstack([gray] * 3), 0),
        "rgb8 padded step": (_raw(hdr, h, w, "rgb8", w * 3 + pad, padded), rgb, 0),
        "uyvy (yuv422)": (_raw(hdr, h, w, "yuv422", w * 2, _bt601_uyvy(pairs)), pairs, 3),
        "bayer_rggb8": (_raw(hdr, h, w, "bayer_rggb8", w, bayer), flat, 1),
    }


def test_image_encodings_in_a_bag_decode_right(data_dir, tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer

    rgb = source_frames(data_dir, 1)[0]
    cases = _encoded_messages(rgb)
    store = output_typestore()
    path = tmp_path / "enc"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for i, (name, (msg, _, _)) in enumerate(cases.items()):
            topic = f"/cam{i}/image_raw"
            conn = writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=store)
            writer.write(conn, 1_000 + i, serialize(store, "sensor_msgs/msg/Image", msg))
    frames = {f.topic: f for f in read_frames(path)}
    for i, (name, (_, want, tol)) in enumerate(cases.items()):
        got = frames[f"/cam{i}/image_raw"]
        assert got.error is None, name
        diff = np.abs(got.rgb.astype(int) - want.astype(int))
        if name == "bayer_rggb8":  # demosaicing is exact away from the border
            diff = diff[2:-2, 2:-2]
        assert diff.max() <= tol, f"{name}: max error {diff.max()}"


def test_undecodable_frames_are_reported_not_fatal(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = output_typestore()
    good = image_msg(header((1, 0), "c"), np.zeros((4, 6, 3), np.uint8), "rgb8")
    bad = dict(good, encoding="nv12")
    short = dict(good, data=np.zeros(10, np.uint8))
    path = tmp_path / "bad"
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection("/c/image_raw", "sensor_msgs/msg/Image", typestore=store)
        for t, msg in enumerate([good, bad, short, good]):
            writer.write(conn, 10 + t, serialize(store, "sensor_msgs/msg/Image", msg))
    reader = open_reader(path)
    source = FrameReader(reader)
    frames = list(source)
    reader.close()
    assert [f.error is None for f in frames] == [True, False, False, True]
    assert "nv12" in frames[1].error and "bytes" in frames[2].error
    assert source.decode_errors == 2
