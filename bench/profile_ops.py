#!/usr/bin/env python3
"""Where the time goes: ONNX Runtime's profiler and torch.profiler, by op type, on one model.

The model (``tiny`` preset with random weights, seed 0, as in ``bench_backends.py``; or the
embedded default model with ``--model default``) is exported at ``--size`` and run on one random
frame by ONNX Runtime (CPU, the backend's session options) and by the eager torch backend, each
with its profiler on; the table lists per-call milliseconds by op type (ONNX Runtime: kernel time
of its nodes; torch: self CPU time of aten ops), the largest first, then ONNX Runtime's slowest
nodes with their output shapes. Profiler overhead inflates both sides a little; compare ratios
with ``bench_backends.py``. ``--int8``: ONNX Runtime only, the fp32 graph next to its int8 graph
(quantized on the packaged demo frames, run in the backend's CPU form), to see which ops int8
speeds up and what it adds.

    python bench/profile_ops.py --size 360x480 [--threads 2] [--calls 8] [--model default] [--int8]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rba_core.model import ModelConfig, build_model  # noqa: E402
from rba_core.runtime.onnx_export import ExportSpec, export_onnx  # noqa: E402
from rba_core.runtime.ort_backend import OnnxRuntimeBackend  # noqa: E402
from rba_core.runtime.torch_backend import TorchBackend  # noqa: E402


def ort_profile(path: Path, images: np.ndarray, threads: int, calls: int, prefix: str):
    """({op type: ms per call}, [(ms per call, op, node, output shapes)]) from ORT's profiler."""
    import onnxruntime as ort

    from rba_core.runtime.ort_backend import session_options

    from rba_core.runtime.ort_backend import INT8_CPU_DISABLED_OPTIMIZERS, cpu_model_bytes

    opts = session_options(threads)
    opts.enable_profiling, opts.profile_file_prefix = True, prefix
    int8 = cpu_model_bytes(path)  # None for fp32 graphs
    session = ort.InferenceSession(int8 or str(path), opts, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=INT8_CPU_DISABLED_OPTIMIZERS if int8 else [])
    for _ in range(calls):
        session.run(None, {"images": images})
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op, by_node, shapes = collections.Counter(), collections.Counter(), {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op, node = e["args"]["op_name"], e["name"].removesuffix("_kernel_time")
            by_op[op] += e["dur"] / 1e3 / calls
            by_node[node] += e["dur"] / 1e3 / calls
            shapes[node] = (op, e["args"].get("output_type_shape"))
    nodes = [(ms, *shapes[n][:1], n, shapes[n][1]) for n, ms in by_node.most_common(12)]
    return dict(by_op), nodes


def torch_profile(model, images: np.ndarray, threads: int, calls: int) -> dict:
    """{aten op: self CPU ms per call} of the eager torch backend."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    backend = TorchBackend(model, ["rba"], "exact", device="cpu")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            backend.infer(images)
    return {e.key: e.self_cpu_time_total / 1e3 / calls for e in prof.key_averages()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="360x480", help="HxW")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=8, help="profiled calls per side (after 2 warm-up)")
    p.add_argument("--model", default="tiny", help="tiny (random weights) or default (embedded)")
    p.add_argument("--int8", action="store_true", help="ONNX Runtime fp32 vs int8 instead of torch")
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    if args.model == "default":
        from rba_core.runtime.loader import load_torch_model
        model = load_torch_model(None)
    else:
        torch.manual_seed(0)
        model = build_model(ModelConfig.preset("tiny")).eval()
    images = np.random.default_rng(0).integers(0, 256, (1, 3, h, w), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="rba_prof_") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path, ExportSpec(h, w, 1, ["rba"], "exact"), verify=False)
        warm = OnnxRuntimeBackend(path, ["CPUExecutionProvider"], threads=args.threads)
        for _ in range(2):
            warm.infer(images)
        ort_ops, nodes = ort_profile(path, images, args.threads, args.calls, f"{tmp}/ort")
        if args.int8:
            from rba_core.runtime import quantize as q

            q.quantize_int8(path, Path(tmp) / "int8.onnx",
                            q.read_frames(q.demo_frames(), q.DEFAULT_FRAMES), source="profile")
            warm = OnnxRuntimeBackend(Path(tmp) / "int8.onnx", ["CPUExecutionProvider"],
                                      threads=args.threads)
            for _ in range(2):
                warm.infer(images)
            other, nodes = ort_profile(Path(tmp) / "int8.onnx", images, args.threads, args.calls,
                                       f"{tmp}/int8")
            sides = (("ONNX Runtime fp32 (kernel time)", ort_ops),
                     ("ONNX Runtime int8, CPU form (kernel time)", other))
    if not args.int8:
        sides = (("ONNX Runtime (kernel time)", ort_ops),
                 ("eager torch (self CPU)", torch_profile(model, images, args.threads, args.calls)))
    print(f"{args.model} at {h}x{w}, {args.threads} threads, {args.calls} calls per side, "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, ops in sides:
        print(f"\n{name}: {sum(ops.values()):.1f} ms per call")
        for op, ms in sorted(ops.items(), key=lambda t: -t[1])[:15]:
            print(f"  {op:36s} {ms:8.2f} ms")
    print(f"\nONNX Runtime's slowest nodes{' (int8)' if args.int8 else ''}:")
    for ms, op, node, shape in nodes:
        print(f"  {ms:8.2f} ms {op:14s} {node[:40]:40s} -> {shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
