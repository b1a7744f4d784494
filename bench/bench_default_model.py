"""Frames/s of the embedded default model on this CPU (ONNX Runtime), end to end.

End to end = what the node does per frame after decoding: resize to the graph size if needed,
ONNX Runtime inference (normalise, network, semantic inference, scores inside the graph), then
obstacle components on the anomaly map (``Perception.process``). Real CamVid frames are used
(360x480 natively, upscaled for 720x1280). ``--precisions fp32,int8``: the int8 graph is
quantized once into the cache from the packaged frames (as the node's ``int8: true`` does) and run
in its CPU form.

    python bench/bench_default_model.py [--threads 2] [--frames 30] [--precisions fp32,int8]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rba_core.pipeline.perception import Perception  # noqa: E402
from rba_core.runtime import load_backend  # noqa: E402


def frames(size: tuple[int, int], n: int) -> list[np.ndarray]:
    data = Path(os.environ.get("RBA_DATA_DIR", REPO.parent / "shared" / "data")) / "camvid" / "val"
    paths = sorted(data.glob("*.png"))[:n]
    if not paths:
        sys.exit(f"no CamVid frames in {data} (set RBA_DATA_DIR)")
    out = []
    for p in paths:
        rgb = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        if rgb.shape[:2] != size:
            rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        out.append(rgb)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="default: the embedded model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--sizes", default="360x480,720x1280", help="HxW list")
    p.add_argument("--modes", default="exact,fast",
                   help="semantic inference modes to compare (exact: paper order; fast: class "
                        "map at 1/4 resolution)")
    p.add_argument("--precisions", default="fp32", help="fp32, int8 or fp32,int8")
    args = p.parse_args()
    if set(args.precisions.split(",")) - {"fp32", "int8"}:
        p.error(f"--precisions takes fp32 and/or int8, got {args.precisions!r}")
    print(f"model: {args.model or 'embedded default'}; ONNX Runtime, {args.threads} threads, "
          f"{args.frames} real frames per size")
    print(f"load average {os.getloadavg()[0]:.1f} at start")
    print("| input | inference | precision | latency p50 (ms) | p90 (ms) | frames/s (p50) |")
    print("|---|---|---|---|---|---|")
    for spec, mode, precision in ((s, m, q) for s in args.sizes.split(",")
                                  for m in args.modes.split(",")
                                  for q in args.precisions.split(",")):
        h, w = (int(v) for v in spec.split("x"))
        backend = load_backend(args.model, "onnxruntime", mode=mode, input_size=(h, w),
                               threads=args.threads, device="cpu", int8=precision == "int8")
        perception = Perception(backend)
        batch = frames((h, w), args.frames)
        perception.process(batch[:2])  # warm-up
        times = []
        for f in batch:
            t0 = time.perf_counter()
            perception.process([f])
            times.append(time.perf_counter() - t0)
        p50 = statistics.median(times)
        p90 = sorted(times)[int(0.9 * (len(times) - 1))]
        print(f"| {h}x{w} | {mode} | {precision} | {1e3 * p50:.1f} | {1e3 * p90:.1f} | "
              f"{1 / p50:.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
