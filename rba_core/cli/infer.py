"""``rba infer``: run a model on images, write class maps, anomaly maps and overlays."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..pipeline.frames import infer_frames
from ..pipeline.visualize import blend, colorize, heatmap, palette
from ..runtime import load_backend, status_text
from ..imageio import list_images, read_image, write_image
from .common import add_model_args


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="run a model on images and write class/anomaly maps",
                       description="For each image write NAME_class.png (class ids), "
                                   "NAME_semantic.png (colour overlay), NAME_<score>.npy "
                                   "(float32 anomaly map) and NAME_<score>.png (heat map).")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (0..1)")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = list_images(args.images)
    backend = load_backend(args.model, args.backend, args.scores, args.inference, args.device)
    lut = palette(backend.info.colors)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = []
    for path in tqdm(paths, desc="infer", unit="img"):
        rgb = read_image(path)
        result = infer_frames(backend, [rgb])[0]  # resized for fixed-size engines
        stem = path.stem
        write_image(out / f"{stem}_class.png", result.class_ids.astype(np.uint8))
        write_image(out / f"{stem}_semantic.png", blend(rgb, colorize(result.class_ids, lut),
                                                        args.alpha))
        for name, score in result.scores.items():
            np.save(out / f"{stem}_{name}.npy", score.astype(np.float32))
            write_image(out / f"{stem}_{name}.png", blend(rgb, heatmap(score), args.alpha))
        counts = np.bincount(result.class_ids.ravel(), minlength=len(backend.info.class_names))
        summary.append({"image": str(path), "classes": {
            n: round(float(c) / result.class_ids.size, 4)
            for n, c in zip(backend.info.class_names, counts) if c}})
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {len(paths)} result(s) to {out} ({status_text(backend)})")
    return 0
