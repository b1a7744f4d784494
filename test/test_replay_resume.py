"""Interrupting a replay (Ctrl-C, SIGKILL) leaves a valid bag; --resume finishes it exactly."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO
from rba_core.pipeline.messages import header, image_msg
from rba_core.pipeline.perception import Perception
from rba_core.replay.bags import BagError, output_typestore, serialize
from rba_core.replay.runner import ReplayConfig, run_replay
from rba_core.replay.segments import PARTIAL, SegmentedBagWriter, read_state
from replay_util import assert_complete_outputs, make_bag, read_bag, stamp_of, tiny_backend

N = 8


def frames_done(out) -> int:
    try:
        return (read_state(out) or {}).get("frames_done", 0)
    except (OSError, KeyError, ValueError):
        return 0


def _default_sigint():
    # a suite started as a background job (`make test &`, nohup) inherits SIGINT ignored, and an
    # ignored signal stays ignored across exec: give the replay the Ctrl-C a terminal would
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(cmd):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="2")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_default_sigint)


def interrupt_after(proc, out, frames: int, sig) -> str:
    """Send ``sig`` once the bag's closed segments hold ``frames`` frames; return the output."""
    deadline = time.monotonic() + 120
    while frames_done(out) < frames:
        assert proc.poll() is None, f"replay ended before it could be interrupted:\n" \
                                    f"{proc.stdout.read()}"
        assert time.monotonic() < deadline, "replay made no progress"
        time.sleep(0.01)
    proc.send_signal(sig)
    text, _ = proc.communicate(timeout=60)
    return text


def check_prefix(out, input_stamps) -> int:
    """The bag is valid and holds the first k input frames, each with every output once."""
    got = read_bag(out)
    stamps = assert_complete_outputs(got)
    k = len(stamps)
    assert stamps == input_stamps[:k], "frames missing or out of order"
    assert [stamp_of(m) for _, m in got["/camera/camera_info"]] == input_stamps[:k]
    assert read_state(out)["frames_done"] == k
    return k


def test_interrupt_kill_and_resume(data_dir, tmp_path):
    bag, out = tmp_path / "in.mcap", tmp_path / "out"
    make_bag(data_dir, bag, N)
    input_stamps = [stamp_of(m) for _, m in read_bag(bag)["/camera/image_raw"]]
    cmd = [sys.executable, "-m", "rba_core.cli", "replay", str(bag), "--out", str(out),
           "--model", "preset:tiny", "--backend", "torch", "--segment-frames", "1",
           "--workers", "1"]

    # Ctrl-C: the frames already inferred are written and the open segment is closed properly
    proc = start(cmd)
    text = interrupt_after(proc, out, 1, signal.SIGINT)
    assert proc.returncode == 130, text
    k1 = check_prefix(out, input_stamps)
    assert 1 <= k1 < N and not read_state(out)["complete"]

    # SIGKILL mid-way through the resumed run: the closed segments are still a valid bag
    proc = start(cmd + ["--resume"])
    interrupt_after(proc, out, k1 + 1, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    k2 = check_prefix(out, input_stamps)
    assert k1 < k2 < N, "the kill did not land mid-run"

    # --resume finishes (in this process: one model start-up less): every frame exactly once
    summary = run_replay(ReplayConfig(str(bag), str(out), resume=True, segment_frames=1,
                                      progress=False, model="preset:tiny"),
                         Perception(tiny_backend()))
    assert summary["resumed_from"] == k2 and summary["frames"] == N - k2
    assert check_prefix(out, input_stamps) == N
    assert read_state(out)["complete"]
    assert not (out / ".partial").exists()


def write_frames(bag: SegmentedBagWriter, first: int, n: int) -> None:
    """Frames ``first`` .. ``first + n - 1``: one mono8 image each, stamped and filled with i."""
    store = output_typestore()
    for i in range(first, first + n):
        msg = image_msg(header((i, 0), "c"), np.full((2, 3), i, np.uint8), "mono8")
        bag.write("/c/image_raw", i, serialize(store, "sensor_msgs/msg/Image", msg))
        bag.frame_done()


def test_segmented_writer_keeps_only_closed_segments(tmp_path):
    """What a killed writer leaves (an open segment, a moved but unlisted file) is dropped."""
    out = tmp_path / "out"
    bag = SegmentedBagWriter(out, "sqlite3", segment_frames=2)
    bag.add_topic("/c/image_raw", "sensor_msgs/msg/Image")
    write_frames(bag, 0, 5)  # segments [0, 1], [2, 3] closed; frame 4 still open: "killed"
    assert (out / PARTIAL).is_dir() and read_state(out)["frames_done"] == 4
    shutil.copy(out / "out_0.db3", out / "out_7.db3")  # a segment moved but never listed
    with pytest.raises(BagError, match="--resume"):
        SegmentedBagWriter(out, "sqlite3")
    bag = SegmentedBagWriter(out, "mcap", segment_frames=2, resume=True)  # keeps its storage
    assert bag.storage == "sqlite3" and bag.frames_done == 4
    assert not (out / PARTIAL).exists() and not (out / "out_7.db3").exists()
    bag.add_topic("/c/image_raw", "sensor_msgs/msg/Image")
    write_frames(bag, 4, 3)
    bag.close(complete=True)
    got = read_bag(out)["/c/image_raw"]
    assert [ts for ts, _ in got] == list(range(7))
    assert [int(m.data[0]) for _, m in got] == list(range(7))
    assert read_state(out) == {"frames_done": 7, "complete": True}
