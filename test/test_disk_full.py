"""A full disk (ENOSPC) under ``rba replay`` and ``rba eval``: one error line naming the file,
exit 2, no traceback, no half-written output used; the replay resumes without losing a frame.

A real full disk comes from a small tmpfs (needs root, or CAP_SYS_ADMIN: skipped otherwise);
the same failures are also injected in-process, so they are tested everywhere."""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO
from rba_core.cli import main
from rba_core.files import WriteError
from rba_core.pipeline.perception import Perception
from rba_core.replay.runner import ReplayConfig, run_replay
from rba_core.replay.segments import SegmentedBagWriter, read_state
from replay_util import make_bag, read_bag, stamp_of, tiny_backend
from test_replay_resume import check_prefix, write_frames

N = 6
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a folder on a tmpfs of that size (unmounted afterwards)."""
    mounts = []

    def mount(size: str):
        path = tmp_path / f"tmpfs{len(mounts)}"
        path.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}): the injected "
                        f"full-disk tests cover this")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], check=False)


def resize_tmpfs(path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


@pytest.fixture
def bag(data_dir, tmp_path):
    path = tmp_path / "in.mcap"
    make_bag(data_dir, path, N)
    return path, [stamp_of(m) for _, m in read_bag(path)["/camera/image_raw"]]


def error_lines(text: str) -> list[str]:
    """Output lines other than progress bars and log records."""
    lines = [s.strip() for s in text.replace("\r", "\n").splitlines()]
    return [s for s in lines if s and not s.startswith(("replay:", "eval ", "components:", "INFO",
                                                    "WARNING"))]


def assert_one_line(text: str, command: str, path) -> str:
    assert "Traceback" not in text, text
    lines = error_lines(text)
    assert len(lines) == 1, text
    line = lines[0]
    assert line.startswith(f"rba {command}: error: writing {path}"), line
    assert "no space left on device" in line
    return line


def resume(bag_path, out) -> dict:
    return run_replay(ReplayConfig(str(bag_path), str(out), resume=True, segment_frames=1,
                                   progress=False, model="preset:tiny"),
                      Perception(tiny_backend()))


def assert_resumed(bag_path, out, stamps, done: int) -> None:
    summary = resume(bag_path, out)
    assert summary["resumed_from"] == done and summary["frames"] == N - done
    assert check_prefix(out, stamps) == N  # every input frame exactly once, in order
    assert read_state(out)["complete"] and not (out / ".partial").exists()


REPLAY = ["--model", "preset:tiny", "--backend", "torch", "--segment-frames", "1", "--workers",
          "1"]


def test_replay_on_a_real_full_disk_then_resume(bag, tmpfs):
    bag_path, stamps = bag
    disk = tmpfs("300k")  # room for about two frames of outputs
    out = disk / "out"
    proc = subprocess.run([sys.executable, "-m", "rba_core.cli", "replay", str(bag_path),
                           "--out", str(out), *REPLAY], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="2"), timeout=600)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = assert_one_line(proc.stderr, "replay", out / ".partial")
    done = check_prefix(out, stamps)  # the closed segments are a valid bag
    assert 1 <= done < N, "the disk did not fill mid-run"
    assert f"keeps the first {done} frame(s)" in line and "--resume" in line
    resize_tmpfs(disk, "8m")  # space freed
    assert_resumed(bag_path, out, stamps, done)


class FailingWrites:
    """Let ``after`` calls of a writer method through, then raise ``error`` every time."""

    def __init__(self, monkeypatch, owner, name: str, after: int, error: BaseException):
        self.original, self.after, self.error, self.calls = getattr(owner, name), after, error, 0
        monkeypatch.setattr(owner, name, self)
        self.owner, self.name = owner, name

    def __get__(self, obj, objtype=None):  # bind like a method
        return lambda *a, **k: self(obj, *a, **k)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.after:
            raise self.error
        return self.original(*args, **kwargs)


def test_replay_full_disk_injected_then_resume(bag, tmp_path, monkeypatch, capsys):
    """The same as on a real full disk, where no tmpfs can be mounted: ENOSPC from the bag
    writer's writes after three frames' worth of messages."""
    from rosbags.rosbag2 import Writer

    bag_path, stamps = bag
    out = tmp_path / "out"
    # messages per frame: CameraInfo, image, the outputs, labels once; fail inside frame 4
    failing = FailingWrites(monkeypatch, Writer, "write", 40, ENOSPC)
    assert main(["replay", str(bag_path), "--out", str(out), *REPLAY]) == 2
    assert failing.calls > 40
    line = assert_one_line(capsys.readouterr().err, "replay", out / ".partial")
    done = check_prefix(out, stamps)
    assert 1 <= done < N and f"keeps the first {done} frame(s)" in line
    monkeypatch.undo()
    assert_resumed(bag_path, out, stamps, done)


@pytest.mark.parametrize("storage, where, error", [
    ("mcap", "close", ENOSPC), ("mcap", "metadata", ENOSPC),
    ("sqlite3", "write", sqlite3.OperationalError("database or disk is full")),
    ("sqlite3", "close", ENOSPC)])
def test_segment_writer_full_disk_keeps_closed_segments(tmp_path, monkeypatch, storage, where,
                                                        error):
    """ENOSPC while writing a message, closing a segment or listing it in metadata.yaml:
    a WriteError naming the file, the closed segments stay a bag, resume continues after them."""
    from rosbags.rosbag2 import Writer

    import rba_core.replay.segments as segments

    out = tmp_path / "out"
    bag = SegmentedBagWriter(out, storage, segment_frames=2)
    bag.add_topic("/c/image_raw", "sensor_msgs/msg/Image")
    write_frames(bag, 0, 4)  # segments [0, 1], [2, 3] closed
    if where == "metadata":
        FailingWrites(monkeypatch, segments.yaml, "dump", 0, error)
    else:
        FailingWrites(monkeypatch, Writer, where, 0, error)
    with pytest.raises(WriteError) as e:
        write_frames(bag, 4, 2)
    message = str(e.value)
    assert "no space left on device" in message and "\n" not in message
    named = out / "metadata.yaml" if where == "metadata" else out / ".partial" / "out_2"
    assert f"writing {named}" in message, message
    bag.abort()  # what the replay does after a write error; never raises
    monkeypatch.undo()
    assert read_state(out)["frames_done"] == 4
    bag = SegmentedBagWriter(out, "mcap", segment_frames=2, resume=True)
    assert bag.frames_done == 4 and bag.storage == storage
    bag.add_topic("/c/image_raw", "sensor_msgs/msg/Image")
    write_frames(bag, 4, 3)
    bag.close(complete=True)
    got = read_bag(out)["/c/image_raw"]
    assert [ts for ts, _ in got] == list(range(7))  # every frame once
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


# -- rba eval --------------------------------------------------------------------------------
EVAL = ["eval", "--model", "preset:tiny", "--backend", "torch", "--dataset", "road_anomaly",
        "--limit", "2", "--resize", "128x96", "--scores", "rba"]


def assert_outputs_whole(out) -> None:
    """Whatever was written is whole: PNGs decode, results.json parses, no temporary files."""
    for path in out.rglob("*"):
        assert not path.name.startswith("."), path
        if path.suffix == ".png":
            assert cv2.imread(str(path)) is not None, path
        if path.name == "results.json":
            json.loads(path.read_text())
    assert not list(out.glob("smiyc_maps_*"))


def test_eval_on_a_real_full_disk(data_dir, tmpfs, capfd):
    root = data_dir / "anomaly" / "RoadAnomaly"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    out = tmpfs("60k") / "eval"  # fills while writing the curves
    assert main([*EVAL, "--root", str(root), "--out", str(out)]) == 2
    assert_one_line(capfd.readouterr().err, "eval", out)
    assert_outputs_whole(out)


def test_eval_full_disk_injected(data_dir, tmp_path, monkeypatch, capsys):
    """ENOSPC in the SMIYC map cache (inside --out) and in the report files."""
    from test_eval_cli import smiyc_layout  # skips without the data

    root = smiyc_layout(data_dir, tmp_path)
    out = tmp_path / "eval"
    args = [*EVAL[:5], "--dataset", "smiyc_anomaly", "--root", str(root), "--scores", "msp", "--out",
            str(out)]
    save = FailingWrites(monkeypatch, np, "save", 1, ENOSPC)
    assert main(args) == 2
    assert save.calls == 2
    assert_one_line(capsys.readouterr().err, "eval", out / "smiyc_maps_")
    assert_outputs_whole(out)  # the map cache is removed when the run stops
    monkeypatch.undo()
    assert main(args) == 0
    capsys.readouterr()
    before = (out / "results.json").read_text()

    def half_written(path, data):  # the disk fills half-way through the file
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
        raise ENOSPC

    monkeypatch.setattr(Path, "write_bytes", half_written)
    assert main(args) == 2
    assert_one_line(capsys.readouterr().err, "eval", out / "results.json")
    monkeypatch.undo()
    assert (out / "results.json").read_text() == before  # the old report, whole
    assert_outputs_whole(out)
