#!/usr/bin/env python3
"""int8 vs fp32 in ONNX Runtime (CPU): speed side by side, and the accuracy cost.

Speed: for each size the model (default: the embedded one) is exported in fp32 and quantized to
int8 (``rba_core.runtime.quantize``, calibrated on the packaged demo frames or --calibration);
both run on the same real frame, calls alternating, and the table gives median wall time, median
process CPU time (less sensitive to other processes on a shared machine) and the ratios. int8 is
what the backend runs (the file's CPU form, ``rba_core.runtime.int8_cpu``); ``--forms`` times two
alternatives in the same loop: the file's symmetric values as uint8 (7-bit weights where u8 x s8
saturates; the backend's form before the ReLU / unsigned rewrite) and 8-bit weights through ONNX
Runtime's u8 x u8 kernels (``session.x64quantprecision``, exact everywhere).

Accuracy (``--accuracy``): CamVid val mIoU (graph at 480x360, the native size) and Road Anomaly
RbA AP / FPR95 (graph at 640x360, the model card's protocol), fp32 vs int8 graphs through
``rba eval``'s evaluator; rerun on the final weights with ``--model``.

    python bench/bench_int8.py [--sizes 480x360,1280x720] [--accuracy] [--forms] [--model M]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TQDM_DISABLE", "1")  # the evaluations' progress bars

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rba_core.imageio import parse_wxh, read_image  # noqa: E402
from rba_core.runtime import quantize as q  # noqa: E402
from rba_core.runtime.onnx_export import ExportSpec, export_onnx  # noqa: E402


def data_root() -> Path:
    return Path(os.environ.get("RBA_DATA_DIR", REPO.parent / "shared" / "data"))


def export_pair(model, size, tmp: Path, frames, mode="exact") -> tuple[Path, Path]:
    h, w = size
    fp32, int8 = tmp / f"fp32_{h}x{w}_{mode}.onnx", tmp / f"int8_{h}x{w}_{mode}.onnx"
    if not fp32.is_file():
        export_onnx(model, fp32, ExportSpec(h, w, 1, ["rba"], mode), verify=False)
        q.quantize_int8(fp32, int8, frames, source="bench")
    return fp32, int8


def timed(run, x, wall: list, cpu: list) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    run(x)
    wall.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)


def cpu_forms(int8: Path) -> dict[str, tuple[bytes, dict]]:
    """The int8 file's CPU forms compared by ``--forms``: {name: (model bytes, session config)}."""
    from rba_core.runtime import int8_cpu as c
    from rba_core.runtime.onnx_export import load_onnx

    plain = c.uint8_activations(load_onnx(int8))  # the file's values as uint8 / 128
    if c.u8s8_saturates():
        c.seven_bit_weights(plain)
    eight = c.cpu_int8_model(load_onnx(int8), saturating=False).SerializeToString()
    return {"plain": (plain.SerializeToString(), {}),
            "u8u8": (eight, {"session.x64quantprecision": "1"})}


def session(model, threads: int, config: dict):
    import onnxruntime as ort

    from rba_core.runtime.ort_backend import INT8_CPU_DISABLED_OPTIMIZERS, session_options

    opts = session_options(threads)
    for key, value in config.items():
        opts.add_session_config_entry(key, value)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"],
                                disabled_optimizers=INT8_CPU_DISABLED_OPTIMIZERS)


def speed(model, sizes, tmp, frames, threads: int, repeats: int, forms: bool) -> list[str]:
    from rba_core.runtime.ort_backend import OnnxRuntimeBackend

    rows = []
    frame = q.read_frames(q.demo_frames(), 1)[0]
    for h, w in sizes:
        fp32, int8 = export_pair(model, (h, w), tmp, frames)
        a = OnnxRuntimeBackend(fp32, ["CPUExecutionProvider"], threads=threads)
        b = OnnxRuntimeBackend(int8, ["CPUExecutionProvider"], threads=threads)
        x = q.calibration_batches([frame], (1, h, w))[0]
        ra, rb = a.infer(x), b.infer(x)
        agree = 100 * float(np.mean(ra.class_ids == rb.class_ids))
        runs = {"fp32": a.infer, "int8": b.infer}
        if forms:
            for name, (graph, config) in cpu_forms(int8).items():
                runs[name] = (lambda s: lambda x: s.run(None, {"images": x}))(
                    session(graph, threads, config))
        t = {k: ([], []) for k in runs}
        for _ in range(repeats):  # alternate: other processes' load hits all alike
            for k, run in runs.items():
                timed(run, x, *t[k])
        m = {k: (1e3 * np.median(v[0]), 1e3 * np.median(v[1])) for k, v in t.items()}
        rows.append(f"| {w}x{h} | {m['fp32'][0]:.0f} / {m['fp32'][1]:.0f} | {m['int8'][0]:.0f} / "
                    f"{m['int8'][1]:.0f} | **{m['fp32'][0] / m['int8'][0]:.2f}x** / "
                    f"{m['fp32'][1] / m['int8'][1]:.2f}x | {agree:.2f} |" + "".join(
                        f" {m['fp32'][0] / m[k][0]:.2f}x / {m['fp32'][1] / m[k][1]:.2f}x |"
                        for k in runs if k not in ("fp32", "int8")))
        print(rows[-1], flush=True)
    return rows


def accuracy(model, tmp, frames) -> list[str]:
    from rba_core.evaluation.runner import EvalConfig, run_eval

    data = data_root()
    cases = [("CamVid val mIoU", "camvid", data / "camvid", (360, 480), None),
             ("Road Anomaly RbA", "road_anomaly", data / "anomaly" / "RoadAnomaly", (360, 640),
              (360, 640))]
    rows = []
    for label, dataset, root, size, resize in cases:
        if not root.is_dir():
            print(f"skipped {label}: no {root} (set RBA_DATA_DIR)")
            continue
        res = {}
        for name, path in zip(("fp32", "int8"), export_pair(model, size, tmp, frames)):
            cfg = EvalConfig(str(path), dataset, str(root), str(tmp / f"eval_{dataset}_{name}"),
                             scores=["rba"], backend="onnxruntime", resize=resize, device="cpu",
                             panels=0)
            report = run_eval(cfg)
            if dataset == "camvid":
                res[name] = (100 * report["closed_set"]["exact"]["miou"],)
            else:
                r = report["results"]["exact"]["rba"]
                res[name] = (100 * r["ap"], 100 * r["fpr95"])
        names = ["mIoU"] if dataset == "camvid" else ["AP", "FPR95"]
        for i, metric in enumerate(names):
            a, b = res["fp32"][i], res["int8"][i]
            rows.append(f"| {label.split(' mIoU')[0]} {metric} | {a:.2f} | {b:.2f} | "
                        f"{b - a:+.2f} |")
            print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="our .safetensors (default: the embedded model)")
    p.add_argument("--sizes", default="480x360,1280x720", help="WxH,WxH,... for the speed table")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10, help="timed calls per graph and size")
    p.add_argument("--accuracy", action="store_true",
                   help="also CamVid val mIoU and Road Anomaly AP, fp32 vs int8 (minutes)")
    p.add_argument("--forms", action="store_true",
                   help="also time the other CPU forms of the int8 file: 'plain' (its values as "
                        "uint8, 7-bit weights where u8s8 saturates) and 'u8u8' (8-bit weights, "
                        "ONNX Runtime's u8 x u8 kernels)")
    p.add_argument("--calibration", default=None,
                   help="folder of calibration images (default: the packaged demo frames)")
    p.add_argument("--calibration-frames", type=int, default=q.DEFAULT_FRAMES)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from rba_core.imageio import list_images
    from rba_core.runtime.loader import load_torch_model

    paths = list_images([args.calibration]) if args.calibration else q.demo_frames()
    frames = [read_image(p) for p in q.spread(paths, args.calibration_frames)]
    model = load_torch_model(args.model)
    sizes = [parse_wxh(s, "--sizes") for s in args.sizes.split(",")]
    header = ("| input | fp32 wall / CPU ms | int8 wall / CPU ms | speed-up wall / CPU | class ids "
              "equal (%) |" + (" plain: speed-up | u8u8: speed-up |" if args.forms else "") +
              "\n|---|---|---|---|---|" + ("---|---|" if args.forms else ""))
    print(f"model {args.model or 'embedded default'}; ONNX Runtime CPU, {args.threads} threads; "
          f"calibration {len(frames)} frames; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="rba_int8_") as tmp:
        tmp = Path(tmp)
        print(header, flush=True)
        rows = speed(model, sizes, tmp, frames, args.threads, args.repeats, args.forms)
        acc = []
        if args.accuracy:
            print("| metric | fp32 | int8 | change (points) |\n|---|---|---|---|", flush=True)
            acc = accuracy(model, tmp, frames)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end\n")
    print(header)
    print("\n".join(rows))
    if acc:
        print("\n| metric | fp32 | int8 | change (points) |\n|---|---|---|---|")
        print("\n".join(acc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
