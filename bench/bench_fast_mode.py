#!/usr/bin/env python3
"""``inference: fast`` vs ``exact`` in ONNX Runtime: speed side by side, profile, AP cost.

For each size the model (default: the embedded one) is exported twice, exact and fast semantic
inference baked in; both graphs run on the same real frame, calls alternating, and the table
gives median wall and process CPU time and exact / fast (above 1: fast is faster). ``--profile``
adds ONNX Runtime's profiler: per graph, the ops of the semantic-inference tail (Resize, Sigmoid,
MatMul, Slice, ...) with their share of the run. ``--ap`` evaluates Road Anomaly (60 images at
640x360, the model card's protocol) once with the torch backend, both modes from the same network
outputs, and prints RbA AP / FPR95 of each.

    python bench/bench_fast_mode.py [--sizes 480x360,1024x512,1280x720] [--profile] [--ap]
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rba_core.imageio import parse_wxh  # noqa: E402
from rba_core.runtime import quantize as q  # noqa: E402
from rba_core.runtime.onnx_export import ExportSpec, export_onnx  # noqa: E402

TAIL_OPS = ("Resize", "Sigmoid", "MatMul", "FusedMatMul", "Einsum", "Slice", "ArgMax",
            "ReduceMax", "Tanh", "ReduceSum", "Softmax")


def profile(path: Path, x: np.ndarray, threads: int, runs: int = 3) -> dict[str, float]:
    """op type -> ms per run of the tail ops, plus 'total' (ONNX Runtime's profiler)."""
    import onnxruntime as ort

    from rba_core.runtime.ort_backend import session_options

    opts = session_options(threads)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(path.with_suffix(""))
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    sess.run(None, {"images": x})
    for _ in range(runs):
        sess.run(None, {"images": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / (runs + 1)
    out = {op: t for op, t in per_op.items() if op in TAIL_OPS}
    out["total"] = sum(per_op.values())
    return out


def road_anomaly_ap(model: str | None) -> dict[str, tuple[float, float]]:
    from rba_core.evaluation.runner import EvalConfig, run_eval

    root = Path(os.environ.get("RBA_DATA_DIR", REPO.parent / "shared" / "data")) / "anomaly" \
        / "RoadAnomaly"
    if not root.is_dir():
        print(f"--ap skipped: no {root} (set RBA_DATA_DIR)")
        return {}
    with tempfile.TemporaryDirectory(prefix="rba_fast_ap_") as tmp:
        report = run_eval(EvalConfig(model, "road_anomaly", str(root), tmp, scores=["rba"],
                                     backend="torch", modes=["exact", "fast"], device="cpu",
                                     resize=(360, 640), panels=0))
    return {m: (100 * r["rba"]["ap"], 100 * r["rba"]["fpr95"])
            for m, r in report["results"].items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="our .safetensors (default: the embedded model)")
    p.add_argument("--sizes", default="480x360,1024x512,1280x720", help="WxH,WxH,...")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--profile", action="store_true", help="ONNX Runtime profile of the tail ops")
    p.add_argument("--ap", action="store_true", help="Road Anomaly AP of both modes (torch)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from rba_core.runtime.loader import load_torch_model
    from rba_core.runtime.ort_backend import OnnxRuntimeBackend

    model = load_torch_model(args.model)
    frame = q.read_frames(q.demo_frames(), 1)[0]
    print(f"model {args.model or 'embedded default'}; ONNX Runtime CPU, {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    rows, profiles = [], []
    with tempfile.TemporaryDirectory(prefix="rba_fast_") as tmp:
        for spec in args.sizes.split(","):
            h, w = parse_wxh(spec, "--sizes")
            x = q.calibration_batches([frame], (1, h, w))[0]
            paths, backends = {}, {}
            for mode in ("exact", "fast"):
                paths[mode] = Path(tmp) / f"{mode}_{h}x{w}.onnx"
                export_onnx(model, paths[mode], ExportSpec(h, w, 1, ["rba"], mode), verify=False)
                backends[mode] = OnnxRuntimeBackend(paths[mode], ["CPUExecutionProvider"],
                                                    threads=args.threads)
                backends[mode].infer(x)
            t = {m: ([], []) for m in backends}
            for _ in range(args.repeats):
                for mode, backend in backends.items():
                    t0, c0 = time.perf_counter(), time.process_time()
                    backend.infer(x)
                    t[mode][0].append(time.perf_counter() - t0)
                    t[mode][1].append(time.process_time() - c0)
            m = {k: (1e3 * np.median(v[0]), 1e3 * np.median(v[1])) for k, v in t.items()}
            rows.append(f"| {w}x{h} | {m['exact'][0]:.0f} / {m['exact'][1]:.0f} | "
                        f"{m['fast'][0]:.0f} / {m['fast'][1]:.0f} | "
                        f"**{m['exact'][0] / m['fast'][0]:.2f}x** / "
                        f"{m['exact'][1] / m['fast'][1]:.2f}x |")
            print(rows[-1], flush=True)
            if args.profile:
                for mode in ("exact", "fast"):
                    prof = profile(paths[mode], x, args.threads)
                    total = prof.pop("total")
                    tail = ", ".join(f"{op} {ms:.1f}" for op, ms in
                                     sorted(prof.items(), key=lambda kv: -kv[1]))
                    profiles.append(f"| {w}x{h} | {mode} | {total:.0f} | "
                                    f"{sum(prof.values()):.1f} ({tail}) |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end\n")
    print("| input | exact wall / CPU ms | fast wall / CPU ms | exact / fast wall / CPU |\n"
          "|---|---|---|---|")
    print("\n".join(rows))
    if profiles:
        print("\nONNX Runtime profile (ms per run, op kernels):\n"
              "| input | mode | all ops | tail ops (by type) |\n|---|---|---|---|")
        print("\n".join(profiles))
    if args.ap:
        ap = road_anomaly_ap(args.model)
        if ap:
            print("\nRoad Anomaly (60 images, 640x360), RbA, torch backend, one network pass:\n"
                  "| inference | AP | FPR95 |\n|---|---|---|")
            for mode, (a, f) in ap.items():
                print(f"| {mode} | {a:.2f} | {f:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
