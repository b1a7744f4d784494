#!/usr/bin/env python3
"""GPU check (for machines with CUDA): fp32 vs fp16 parity and latency of ``rba_swin_b_1dl``.

One short run at 1024x2048 (a Fishyscapes Static frame when the shared data is there, else random
pixels) with random weights (seed 0): torch CUDA fp32 (TF32 off: the reference), torch CUDA fp16
(autocast; the pixel decoder stays fp32 as in Mask2Former), and ONNX Runtime's CUDA provider when
onnxruntime-gpu is installed (the graph is exported here first; ``--no-ort`` skips it), and the
TensorRT backend with ``--tensorrt`` (engine builds take minutes). Prints one table: latency p50 /
p90, frames/s, peak GPU memory, and against torch fp32: class ids that agree and the RbA map's
max |diff| / max |ref|. Without CUDA it says so and exits 0 (``make bench`` runs it everywhere).

    python bench/gpu_check.py [--size 1024x2048] [--repeats 10] [--mode exact] [--tensorrt]
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rba_core.model import ModelConfig, build_model  # noqa: E402
from rba_core.runtime.onnx_export import ExportSpec, export_onnx, relative_error  # noqa: E402
from rba_core.runtime.torch_backend import TorchBackend  # noqa: E402

SCORES = ["rba"]


def test_image(h: int, w: int) -> tuple[np.ndarray, str]:
    """[1, 3, h, w] uint8: a real street scene if available (maps then mean more than noise)."""
    root = Path(os.environ.get("RBA_DATA_DIR", REPO.parent / "shared" / "data"))
    frames = sorted((root / "anomaly" / "fs_static" / "images").glob("*.jpg"))
    if frames:
        import cv2

        rgb = cv2.cvtColor(cv2.imread(str(frames[0])), cv2.COLOR_BGR2RGB)
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]), frames[0].name
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (1, 3, h, w), dtype=np.uint8), "random pixels"


def measure(backend, images, repeats: int, warmup: int = 3):
    """(outputs, latencies in s, peak GPU MiB); each infer returns numpy, so it synchronizes."""
    torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        out = backend.infer(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = backend.infer(images)
        times.append(time.perf_counter() - start)
    return out, np.array(times), torch.cuda.max_memory_allocated() / 2**20


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="1024x2048", help="HxW (default 1024x2048)")
    p.add_argument("--preset", default="rba_swin_b_1dl", help="architecture (random weights)")
    p.add_argument("--mode", default="exact", choices=("exact", "fast"))
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime CUDA")
    p.add_argument("--tensorrt", action="store_true", help="also the TensorRT backend (slow build)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device available (torch.cuda.is_available() is False); "
              "nothing to measure on this machine")
        return 0
    h, w = (int(v) for v in args.size.lower().split("x"))
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset(args.preset)).eval()
    images, source = test_image(h, w)
    cc = ".".join(map(str, torch.cuda.get_device_capability()))
    print(f"{args.preset} (random weights), {h}x{w}, {args.mode} inference, input: {source}; "
          f"{torch.cuda.get_device_name()} (cc {cc}), torch {torch.__version__}")

    rows, ref = [], None
    cases = [("torch fp32", lambda: TorchBackend(model, SCORES, args.mode, "cuda", fp16=False)),
             ("torch fp16", lambda: TorchBackend(model, SCORES, args.mode, "cuda", fp16=True))]
    tmp = tempfile.TemporaryDirectory(prefix="rba_gpu_check_")  # ONNX file and engines
    workdir = Path(tmp.name)
    onnx_path = workdir / f"{args.preset}.onnx"

    def exported() -> Path:
        if not onnx_path.is_file():
            t0 = time.perf_counter()
            export_onnx(copy.deepcopy(model).cpu(), onnx_path,
                        ExportSpec(h, w, 1, SCORES, args.mode), verify=False)
            print(f"exported {onnx_path} in {time.perf_counter() - t0:.0f} s")
        return onnx_path

    if not args.no_ort:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            from rba_core.runtime.ort_backend import OnnxRuntimeBackend

            cases.append(("onnxruntime CUDA", lambda: OnnxRuntimeBackend(
                exported(), ["CUDAExecutionProvider", "CPUExecutionProvider"])))
        else:
            print("onnxruntime: no CUDAExecutionProvider (install onnxruntime-gpu); skipped")
    if args.tensorrt:
        from rba_core.runtime.trt_backend import TensorRTBackend, trt_unavailable_reason

        reason = trt_unavailable_reason()
        if reason:
            print(f"tensorrt: skipped ({reason})")
        else:
            for fp16 in (False, True):
                cases.append((f"tensorrt {'fp16' if fp16 else 'fp32'}", lambda fp16=fp16:
                              TensorRTBackend(exported(), fp16, workdir / "engines")))

    for name, make in cases:
        try:
            backend = make()
            used = getattr(backend, "providers", ["CUDAExecutionProvider"])[0]
            if used != "CUDAExecutionProvider":
                rows.append(f"{name:<18} skipped: ONNX Runtime fell back to {used}")
                continue
            out, times, mem = measure(backend, images, args.repeats)
        except Exception as exc:  # report and go on: one failing runtime must not hide the others
            rows.append(f"{name:<18} failed: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        if ref is None:
            ref = out
        agree = 100 * float((out.class_ids == ref.class_ids).mean())
        err = relative_error(out.scores["rba"], ref.scores["rba"])
        p50, p90 = np.percentile(times, [50, 90]) * 1e3
        rows.append(f"{name:<18} {p50:8.1f} {p90:8.1f} {1e3 / p50:7.2f} {mem:9.0f} "
                    f"{agree:9.3f} {err:10.2e}")
        del backend
        torch.cuda.empty_cache()
    print(f"\n{'backend':<18} {'p50 ms':>8} {'p90 ms':>8} {'fps':>7} {'peak MiB':>9} "
          f"{'ids agree':>9} {'rba relerr':>10}")
    print("\n".join(rows))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
