#!/usr/bin/env python3
"""``rba replay`` throughput vs the raw backend on the same frames (goal: >= 0.9x).

One process, one model instance: the first ``--frames`` frames of the 15 Hz CamVid val clip are
written to a bag (raw rgb8 or jpeg, with CameraInfo); after a warm-up pass, ``--rounds`` rounds
each time
1. raw: the frames, already decoded in memory, through ``infer_frames`` one call per ``--batch``
   (the backend alone: no decode, post-processing or writing);
2. replay: ``run_replay`` on the bag into a fresh output bag (decode, backend, obstacles, both
   overlays, ground points, CDR, segmented mcap writing, overlapped by threads), frames / wall;
and a last raw pass. Each replay round is compared with the mean of the raw passes just before
and after it and the median of these paired ratios is reported, so load from other processes on a
shared machine hits both sides alike. Also reported: the share of the replay's wall time the
backend was busy (1.0 = decode, post-processing and writing entirely hidden behind inference).

    python bench/bench_replay.py                           # tiny, torch, 480x360, 5 x 8 frames
    python bench/bench_replay.py --backend onnxruntime --compressed --rounds 3
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rba_core.imageio import parse_wxh  # noqa: E402
from rba_core.pipeline.config import PipelineConfig  # noqa: E402
from rba_core.pipeline.frames import infer_frames  # noqa: E402
from rba_core.pipeline.perception import Perception  # noqa: E402
from rba_core.replay.bags import open_reader  # noqa: E402
from rba_core.replay.from_images import ImagesToBag, bag_from_images  # noqa: E402
from rba_core.replay.runner import ReplayConfig, run_replay  # noqa: E402
from rba_core.replay.source import FrameReader  # noqa: E402
from rba_core.runtime import load_backend  # noqa: E402

DATA = Path(os.environ.get("RBA_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def raw_fps(backend, frames, batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(frames), batch):
        infer_frames(backend, frames[i:i + batch])
    return len(frames) / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=8, help="frames per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--size", default="480x360", help="WxH of the bag's frames")
    p.add_argument("--model", default="preset:tiny")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "tensorrt"))
    p.add_argument("--device", default=None)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="replay encode threads")
    p.add_argument("--compressed", action="store_true", help="jpeg frames in the bag")
    p.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    size = parse_wxh(args.size, "--size")
    clip = DATA / "camvid" / "val"
    if not clip.is_dir():
        print(f"skipped: {clip} not found (set RBA_DATA_DIR)")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_replay_") as tmp:
        bag = Path(tmp) / "clip.mcap"
        bag_from_images(ImagesToBag(str(clip), str(bag), limit=args.frames, resize=size,
                                    compressed=args.compressed,
                                    camera_info=[400.0, 400.0, size[1] / 2, size[0] / 2]))
        backend = load_backend(args.model, args.backend, "rba", "exact", args.device,
                               input_size=None if args.backend == "torch" else size,
                               batch_size=args.batch)
        perception = Perception(backend, PipelineConfig())
        reader = open_reader(bag)
        frames = [f.rgb for f in FrameReader(reader, copy_camera_info=False)]
        reader.close()
        raw_fps(backend, frames, args.batch)  # warm-up (allocator, kernel caches)
        raws, replays, shares = [], [], []
        for r in range(args.rounds):
            raws.append(raw_fps(backend, frames, args.batch))
            summary = run_replay(ReplayConfig(str(bag), str(Path(tmp) / f"out{r}"),
                                              batch=args.batch, workers=args.workers,
                                              storage=args.storage, progress=False), perception)
            replays.append(summary["fps"])
            shares.append(summary["infer_s"] / summary["wall_s"])
            print(f"round {r}: raw {raws[-1]:.3f} frames/s, replay {replays[-1]:.3f} frames/s",
                  flush=True)
        raws.append(raw_fps(backend, frames, args.batch))
    # each replay round against the mean of the raw passes just before and after it
    paired = [rep / ((raws[i] + raws[i + 1]) / 2) for i, rep in enumerate(replays)]
    result = {"model": args.model, "backend": backend.name, "size": args.size,
              "frames": len(frames), "rounds": args.rounds, "batch": args.batch,
              "compressed": args.compressed, "storage": args.storage,
              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "raw_fps": [round(v, 3) for v in raws],
              "replay_fps": [round(v, 3) for v in replays],
              "paired_ratios": [round(v, 3) for v in paired],
              "ratio_median": round(float(np.median(paired)), 3),
              "ratio_total": round(np.mean(replays) / np.mean(raws), 3),
              # share of replay wall time the main thread spent in the backend: 1.0 = decode,
              # post-processing and writing fully hidden behind inference
              "replay_backend_share": round(float(np.mean(shares)), 3)}
    print(json.dumps(result, indent=1))
    print(f"replay / raw backend on the same frames: median {result['ratio_median']:.2f}x "
          f"(total {result['ratio_total']:.2f}x; goal >= 0.9x); backend busy "
          f"{100 * result['replay_backend_share']:.0f}% of the replay's wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
