#!/usr/bin/env python3
"""Eager PyTorch: our Mask2Former vs Hugging Face transformers' on the same architecture.

Both built from config with random weights (no download): Swin-T backbone (embed 96, depths
2-2-6-2, heads 3-6-12-24, window 7), 6-layer deformable encoder on 3 levels, 9 masked-attention
decoder layers (HF ``decoder_layers=10``), 100 queries, width 256, 19 classes; one 512x1024 frame,
2 threads, ``torch.inference_mode``. Timed: the network's forward (class and mask logits at 1/4
resolution; ours from uint8 pixels with its normalisation, HF from normalised pixels), calls
alternating so other processes' load hits both alike; median wall time and median process CPU
time, and their ratio (ours / HF: lower is faster). ``transformers`` is an optional, bench-only
dependency: without it the script says so and exits 0.

    python bench/bench_vs_transformers.py [--size 512x1024] [--threads 2] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rba_core.model import ModelConfig, build_model  # noqa: E402

SWIN_T = {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7}


def ours() -> torch.nn.Module:
    cfg = ModelConfig.preset("m2f_swin_b_cityscapes", backbone={
        "channels": [96, 192, 384, 768], "drop_path_rate": 0.0,
        "kwargs": dict(SWIN_T, pretrain_img_size=224)})
    return build_model(cfg).eval()


def hf(transformers) -> torch.nn.Module:
    backbone = transformers.SwinConfig(**SWIN_T, image_size=224, drop_path_rate=0.0,
                                       out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = transformers.Mask2FormerConfig(backbone_config=backbone, num_labels=19,
                                         num_queries=100, decoder_layers=10, encoder_layers=6)
    return transformers.Mask2FormerForUniversalSegmentation(cfg).eval()


def timed(fn, out: tuple) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    out[0].append(time.perf_counter() - t0)
    out[1].append(time.process_time() - c0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="512x1024", help="HxW")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    try:
        import transformers
    except ImportError:
        print("bench_vs_transformers: transformers is not installed (optional, bench only: "
              "pip install 'transformers==5.23.0'); nothing to compare")
        return 0
    h, w = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    a, b = ours(), hf(transformers)
    images = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8)
    mean, std = a.pixel_mean, a.pixel_std
    pixels = (images.float() - mean) / std
    n_a = sum(x.numel() for x in a.parameters()) / 1e6
    n_b = sum(x.numel() for x in b.parameters()) / 1e6
    print(f"Swin-T Mask2Former, {h}x{w}, {args.threads} threads, torch {torch.__version__}, "
          f"transformers {transformers.__version__}; parameters: ours {n_a:.2f} M, HF "
          f"{n_b:.2f} M; load average {os.getloadavg()[0]:.1f} at start", flush=True)
    t = {"ours": ([], []), "hf": ([], [])}
    with torch.inference_mode():
        out_a, out_b = a(images, with_aux=False), b(pixel_values=pixels)  # warm-up
        assert out_a["pred_masks"].shape == out_b.masks_queries_logits.shape
        for _ in range(args.repeats):
            timed(lambda: a(images, with_aux=False), t["ours"])
            timed(lambda: b(pixel_values=pixels), t["hf"])
    m = {k: (np.median(v[0]), np.median(v[1])) for k, v in t.items()}
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print("| | wall p50 (s) | CPU p50 (s) |\n|---|---|---|")
    for k, label in (("ours", "rba_core"), ("hf", "transformers")):
        print(f"| {label} | {m[k][0]:.2f} | {m[k][1]:.2f} |")
    print(f"| **ours / HF** | **{m['ours'][0] / m['hf'][0]:.2f}x** | "
          f"**{m['ours'][1] / m['hf'][1]:.2f}x** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
