#!/usr/bin/env python3
"""Which parts of the network lose accuracy in int8: quantize one module group at a time.

The model (default: the embedded one) is exported in fp32 at --size, activation ranges are
calibrated once on the packaged demo frames (``rba_core/weights/demo``), then for every group of
Conv / MatMul / Gemm nodes (backbone stages, pixel decoder, transformer decoder, the graph-level
tail: semantic inference) a QDQ graph with only that group in int8 is run in ONNX Runtime on real
frames that calibration never saw (CamVid val and Road Anomaly). Printed per group: pixels whose
class id changes, and the RbA map's mean |diff| relative to the fp32 map's standard deviation;
then the same for everything in int8, and for everything except each group. The groups that cost
the most are what ``rba_core.runtime.quantize.FP32_SCOPES`` keeps in fp32.

    python bench/int8_sensitivity.py [--model M.safetensors] [--size 360x480] [--frames 12]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rba_core.imageio import parse_wxh  # noqa: E402
from rba_core.runtime.onnx_export import ExportSpec, export_onnx, load_onnx  # noqa: E402
from rba_core.runtime import quantize as q  # noqa: E402


def groups(model) -> dict[str, str]:
    """Node group prefix -> description: backbone stages (one level under the backbone body),
    pixel decoder, decoder, graph-level tail."""
    out = {}
    for node in model.graph.node:
        if node.op_type not in q.INT8_OPS:
            continue
        scope = q.module_scope(node)
        parts = scope.split(".")
        if scope.startswith("model.backbone"):  # stages: model.backbone.body.<...>.<stage>
            key = ".".join(parts[:5])
        elif scope.startswith("model."):
            key = ".".join(parts[:2])
        else:
            key = ""
        out.setdefault(key, 0)
        out[key] += 1
    return out


def eval_frames(n: int, size) -> list[np.ndarray]:
    from rba_core.imageio import read_image

    data = Path(os.environ.get("RBA_DATA_DIR", REPO.parent / "shared" / "data"))
    cam = sorted((data / "camvid" / "val").glob("*.png"))
    ra = sorted((data / "anomaly" / "RoadAnomaly" / "images").glob("*.jpg"))
    if not cam:
        sys.exit(f"no CamVid val frames under {data} (set RBA_DATA_DIR)")
    paths = q.spread(cam, (n + 1) // 2) + q.spread(ra, n // 2)
    return [read_image(p) for p in paths]


def run(path, batches):
    import onnxruntime as ort

    from rba_core.runtime.ort_backend import session_options

    model = load_onnx(path)
    if q.is_int8(model):
        from rba_core.runtime.int8_cpu import cpu_int8_model

        cpu_int8_model(model)  # what the CPU backend runs
    sess = ort.InferenceSession(model.SerializeToString(), session_options(2),
                                providers=["CPUExecutionProvider"])
    return [sess.run(None, {"images": b}) for b in batches]


def compare(out, ref) -> tuple[float, float]:
    changed = np.mean([np.mean(o[0] != r[0]) for o, r in zip(out, ref)])
    err = np.mean([np.abs(o[2] - r[2]).mean() / max(r[2].std(), 1e-9) for o, r in zip(out, ref)])
    return 100 * float(changed), float(err)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="our .safetensors (default: the embedded model)")
    p.add_argument("--size", default="480x360", help="WxH the graph is exported at")
    p.add_argument("--frames", type=int, default=12, help="held-out evaluation frames")
    p.add_argument("--calibration-frames", type=int, default=q.DEFAULT_FRAMES)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from rba_core.runtime.loader import load_torch_model

    h, w = parse_wxh(args.size, "--size")
    with tempfile.TemporaryDirectory(prefix="rba_sens_") as tmp:
        tmp = Path(tmp)
        fp32 = tmp / "fp32.onnx"
        export_onnx(load_torch_model(args.model), fp32, ExportSpec(h, w), verify=False)
        model = load_onnx(fp32)
        found = groups(model)
        calib = q.read_frames(q.demo_frames(), args.calibration_frames)
        batches = q.calibration_batches(eval_frames(args.frames, (h, w)), (1, h, w))
        ref = run(fp32, batches)
        cache = tmp / "ranges.json"
        every = tuple(found)

        def case(fp32_scopes):
            out = tmp / "case.onnx"
            q.quantize_int8(fp32, out, calib, fp32_scopes=fp32_scopes, cache=cache)
            return compare(run(out, batches), ref)

        print(f"model {args.model or 'embedded default'}, {w}x{h}, calibration: "
              f"{len(calib)} demo frames, evaluation: {len(batches)} held-out frames; "
              f"load average {os.getloadavg()[0]:.1f}")
        print("| int8 part | nodes | class ids changed (%) | RbA mean abs diff / std |")
        print("|---|---|---|---|")
        rows = [("everything", sum(found.values()), ())]
        rows += [(f"only {g or '(graph-level tail)'}", n, tuple(x for x in every if x != g))
                 for g, n in found.items()]
        rows += [(f"all but {g or '(graph-level tail)'}", sum(found.values()) - n, (g,))
                 for g, n in found.items()]
        rows.append((f"default FP32_SCOPES {list(q.FP32_SCOPES)}", None, q.FP32_SCOPES))
        for label, n, keep in rows:
            changed, err = case(keep)
            print(f"| {label} | {'' if n is None else n} | {changed:.3f} | {err:.4f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
