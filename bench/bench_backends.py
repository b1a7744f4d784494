#!/usr/bin/env python3
"""Eager PyTorch vs ONNX Runtime on CPU: latency and throughput of the ``tiny`` preset.

One run, same inputs for both: for each size the random-weight ``tiny`` model (seed 0) runs as
``TorchBackend`` and, exported with ``export_onnx`` at that size, as ``OnnxRuntimeBackend``. The two
backends alternate call by call, so load from other processes hits both alike. Latency is the
median (and 90th percentile) time of one ``infer`` call on one frame, outputs copied back to
numpy; throughput is frames per second over the whole timed loop; "CPU" is the median process CPU
time of one call (user + system, all threads), which other processes' load disturbs much less than
wall time on a shared machine. Neither side spin-waits (ONNX Runtime: allow_spinning 0; torch:
OMP_WAIT_POLICY=PASSIVE, set here unless given). The relative difference of the RbA maps is
printed too (the parity the tests require).

    python bench/bench_backends.py                       # 360x480, 512x1024, 720x1280
    python bench/bench_backends.py --sizes 360x480 --modes exact,fast --threads 1,2
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rba_core.model import ModelConfig, build_model  # noqa: E402
from rba_core.runtime.onnx_export import ExportSpec, export_onnx, relative_error  # noqa: E402
from rba_core.runtime.ort_backend import OnnxRuntimeBackend, available_cores  # noqa: E402
from rba_core.runtime.torch_backend import TorchBackend  # noqa: E402


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        h, w = item.lower().split("x")
        out.append((int(h), int(w)))
    return out


def timed(fn, images, out: list, cpu: list) -> None:
    start, cpu_start = time.perf_counter(), time.process_time()
    fn(images)
    out.append(time.perf_counter() - start)
    cpu.append(time.process_time() - cpu_start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="360x480,512x1024,720x1280", help="HxW,HxW,...")
    p.add_argument("--modes", default="exact", help="inference modes: exact,fast")
    p.add_argument("--threads", default=str(available_cores()),
                   help="thread counts to try (torch and ONNX Runtime alike), e.g. 1,2")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per backend")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per backend")
    p.add_argument("--workdir", default=None,
                   help="where the ONNX exports are written (default: a temporary folder)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    if args.workdir:
        return run(args, Path(args.workdir))
    with tempfile.TemporaryDirectory(prefix="rba_bench_") as tmp:
        return run(args, Path(tmp))


def run(args: argparse.Namespace, workdir: Path) -> int:
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("tiny")).eval()
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    print(f"tiny preset, random weights, batch 1, {os.cpu_count()} CPUs "
          f"(usable {available_cores()}), load average {os.getloadavg()[0]:.1f} at start; "
          f"torch {torch.__version__}")
    header = (f"{'size':>9} {'mode':>5} {'thr':>3} | {'torch p50':>9} {'p90':>7} {'fps':>6} | "
              f"{'ORT p50':>8} {'p90':>7} {'fps':>6} | {'speed-up':>8} {'fps ratio':>9} | "
              f"{'CPU torch':>9} {'ORT':>7} {'ratio':>6} | {'rel.err':>7}")
    rows = []
    for h, w in parse_sizes(args.sizes):
        images = rng.integers(0, 256, (1, 3, h, w), dtype=np.uint8)
        for mode in args.modes.split(","):
            path = workdir / f"tiny_{h}x{w}_{mode}.onnx"  # always re-exported: same weights
            t0 = time.perf_counter()
            export_onnx(model, path, ExportSpec(h, w, 1, ["rba"], mode), verify=False)
            print(f"exported {path.name} in {time.perf_counter() - t0:.0f} s", flush=True)
            for threads in (int(t) for t in args.threads.split(",")):
                torch.set_num_threads(threads)
                tb = TorchBackend(model, ["rba"], mode, device="cpu")
                ob = OnnxRuntimeBackend(path, ["CPUExecutionProvider"], threads=threads)
                err = relative_error(ob.infer(images).scores["rba"],
                                     tb.infer(images).scores["rba"])
                for _ in range(args.warmup):
                    tb.infer(images), ob.infer(images)
                t_torch, t_ort, c_torch, c_ort = [], [], [], []
                for _ in range(args.repeats):  # alternate: contention hits both alike
                    timed(tb.infer, images, t_torch, c_torch)
                    timed(ob.infer, images, t_ort, c_ort)
                pt, po = np.percentile(t_torch, [50, 90]), np.percentile(t_ort, [50, 90])
                fps_t, fps_o = len(t_torch) / sum(t_torch), len(t_ort) / sum(t_ort)
                ct, co = np.median(c_torch), np.median(c_ort)
                rows.append(f"{h}x{w:<5} {mode:>5} {threads:>3} | {1e3 * pt[0]:7.1f}ms "
                            f"{1e3 * pt[1]:5.1f}ms {fps_t:6.2f} | {1e3 * po[0]:6.1f}ms "
                            f"{1e3 * po[1]:5.1f}ms {fps_o:6.2f} | {pt[0] / po[0]:7.2f}x "
                            f"{fps_o / fps_t:8.2f}x | {1e3 * ct:7.1f}ms {1e3 * co:5.1f}ms "
                            f"{ct / co:5.2f}x | {err:7.1e}")
                print(rows[-1], flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end (other processes share this CPU)")
    print(header)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
