"""The evaluation loop behind ``rba eval``: one network pass per image, every score side by side.

Each image goes through the backend's ``infer_modes`` once: the torch backend post-processes the
same raw outputs in each requested inference mode (``exact``, ``fast``), so the accuracy price of
``fast`` and its post-processing time are read off one run; ONNX Runtime / TensorRT engines have
one mode baked in; a ``.safetensors`` model on them is exported per network input size, when first
seen (an ``.onnx`` is run at its size: frames resized to it and back). Metrics are computed at the
label's resolution by the ``StreamingEvaluator``; ``resize`` only changes the network's input.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from tqdm import tqdm

from ..data.datasets import Sample, open_dataset
from ..dataconf import ConfigError, check, check_fields
from ..errors import require
from ..metrics import frame_average_precision
from ..model import MODES
from ..pipeline.frames import resize_outputs, to_chw_batch
from ..runtime import BACKENDS, Backend, FrameOutputs, backend_status, load_backend
from ..scoring import parse_scores
from . import plots
from .evaluator import EvalError, StreamingEvaluator
from .report import markdown, write_report

ALL_SCORES = ("rba", "energy", "max_logit", "msp", "entropy")
PROTOCOLS = ("paper", "smiyc")
THUMB_SIZE = 640  # longest side of the images kept for the qualitative panels

@dataclass
class EvalConfig:
    model: str | None
    dataset: str
    root: str
    out: str
    scores: list[str] | str = field(default_factory=lambda: list(ALL_SCORES))  # or 'rba,msp'
    protocol: Literal[PROTOCOLS] | None = None  # None: the dataset's (smiyc_* -> smiyc, else paper)
    backend: Literal[BACKENDS] = "auto"
    modes: list[str] | None = None       # None: exact (torch), or the mode baked into an engine
    resize: tuple[int, int] | None = None  # network input (H, W); None = native resolution
    device: str | None = None
    split: str | None = None
    label_map: str | None = None
    task: str | None = None
    limit: int | None = None
    panels: int = 2                      # best and worst images drawn per run
    smiyc_float16: bool = False          # smiyc protocol: maps cast to float16 (the leaderboard's)

    def __post_init__(self):
        check_fields(self)
        try:
            self.scores = parse_scores(self.scores)
        except ValueError as exc:
            raise ConfigError("scores", str(exc)) from None
        modes = self.modes
        check(modes is None or bool(modes) and set(modes) <= set(MODES)
              and len(set(modes)) == len(modes), "modes", f"--inference takes distinct modes "
              f"from {', '.join(MODES)}; got {','.join(modes or [])}")
        check(self.resize is None or min(self.resize) > 0, "resize", "must be positive")
        check(self.limit is None or self.limit >= 1, "limit",
              f"must be at least 1, got {self.limit}")
        check(self.panels >= 0, "panels", "must be >= 0")


class Predictor:
    """Image -> {mode: FrameOutputs at the image's resolution}, from one backend call (timed)."""

    def __init__(self, backend: Backend, modes: list[str], resize: tuple[int, int] | None):
        self.backend, self.modes, self.resize = backend, modes, resize
        self.seconds: dict[str, dict[str, float]] = {}  # timing key -> mode -> total seconds
        self.frames = 0

    def __call__(self, rgb: np.ndarray) -> dict[str, FrameOutputs]:
        image = rgb if self.resize is None else cv2.resize(
            rgb, self.resize[::-1], interpolation=cv2.INTER_LINEAR)
        info = self.backend.info  # fixed-size engines: resized to their input and back
        batch = to_chw_batch([image] * (info.batch_size or 1), info.input_size)
        outputs = {}
        for mode, result in self.backend.infer_modes(batch, self.modes).items():
            for key, s in result.timing.items():
                per_mode = self.seconds.setdefault(key, {})
                per_mode[mode] = per_mode.get(mode, 0.0) + s
            outputs[mode] = resize_outputs(result.frame(0), rgb.shape[:2])
        self.frames += 1
        return outputs

    def timing(self) -> dict:
        """network_ms_per_image + postprocess_ms_per_image {mode}, or inference_ms_per_image."""
        n, out = max(self.frames, 1), {}
        for key, per_mode in self.seconds.items():
            ms = {m: 1e3 * s / n for m, s in per_mode.items()}
            out[key[:-2] + "_ms_per_image"] = ms if key == "postprocess_s" else ms[self.modes[0]]
        return out


def _thumb(array: np.ndarray, nearest: bool = False) -> np.ndarray:
    h, w = array.shape[:2]
    scale = THUMB_SIZE / max(h, w)
    if scale >= 1:
        return array.copy()
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(array, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


class PanelPicker:
    """Thumbnails of the ``k`` best and ``k`` worst images by per-image AP (bounded memory)."""

    def __init__(self, k: int):
        self.k, self.entries = k, []

    def add(self, ap: float, sample: Sample, amap: np.ndarray) -> None:
        if self.k <= 0 or not np.isfinite(ap):
            return
        self.entries.append((ap, sample.name, _thumb(sample.image), _thumb(amap),
                             _thumb(sample.label, nearest=True)))
        self.entries.sort(key=lambda e: e[0])
        if len(self.entries) > 2 * self.k:
            self.entries = self.entries[:self.k] + self.entries[-self.k:]

    def picks(self) -> list[tuple[str, tuple]]:
        n = len(self.entries)
        best = [("best", e) for e in self.entries[::-1][:min(self.k, n)]]
        worst = [("worst", e) for e in self.entries[:min(self.k, n - len(best))]]
        return best + worst


def run_eval(cfg: EvalConfig, argv: list[str] | None = None) -> dict:
    """Evaluate, write results.json / results.md / plots into ``cfg.out``; return the report."""
    require("matplotlib", "eval")
    dataset = open_dataset(cfg.dataset, cfg.root, cfg.split, cfg.label_map, cfg.task)
    dataset = dataset.subset(cfg.limit) if cfg.limit else dataset
    protocol = cfg.protocol or dataset.protocol
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # Engines are exported per network input size (--resize: one) when first seen; several
    # inference modes need torch (an engine has one mode baked in), which auto then picks.
    several = len(cfg.modes or []) > 1
    if several and (cfg.backend in ("onnxruntime", "tensorrt")
                    or str(cfg.model).endswith(".onnx")):
        raise EvalError("an exported engine has one inference mode baked in: compare modes with "
                        "--backend torch")
    backend = load_backend(cfg.model, "torch" if several else cfg.backend, cfg.scores,
                           cfg.modes[0] if cfg.modes else None, cfg.device)
    modes = cfg.modes or [backend.info.mode]  # backends have the scores (load_backend checks)
    predictor = Predictor(backend, modes, cfg.resize)
    class_names = list(backend.info.class_names)
    closed = dataset.task == "closed"
    if closed and dataset.class_names is not None and len(dataset.class_names) != len(class_names):
        raise EvalError(f"the model has {len(class_names)} classes but {dataset.name} has "
                        f"{len(dataset.class_names)}: evaluate a model trained on it")
    keys = modes if closed else [(m, s) for m in modes for s in cfg.scores]
    evaluator = StreamingEvaluator(dataset.task, keys, protocol=protocol, track=dataset.track,
                                   class_names=class_names, ignore_index=dataset.ignore_index,
                                   workdir=out, float16=cfg.smiyc_float16)
    picker, per_image = PanelPicker(cfg.panels), []
    start = time.perf_counter()
    try:
        for sample in tqdm(dataset, desc=f"eval {dataset.name}", unit="img"):
            outputs = predictor(sample.image)
            evaluator.add(sample.label, {k: outputs[k].class_ids if closed else
                                         outputs[k[0]].scores[k[1]] for k in keys}, sample.name)
            if not closed:
                primary = outputs[modes[0]].scores[cfg.scores[0]]
                ap = frame_average_precision(primary, sample.label)
                per_image.append({"name": sample.name, "ap": ap})
                picker.add(ap, sample, primary)
    except BaseException:
        evaluator.close()  # no map cache left in --out (a full disk, Ctrl-C, a bad label)
        raise
    report = {
        "command": "rba " + " ".join(argv) if argv else None,
        "model": cfg.model, "model_name": backend.info.config.get("name"),
        "backend": backend.name, "runtime": backend_status(backend),
        "dataset": dataset.name, "root": str(cfg.root),
        "split": cfg.split, "num_images": len(dataset), "task": dataset.task,
        "resize": list(cfg.resize) if cfg.resize else None, "inference": list(modes),
    }
    files: list[str] = []
    if closed:
        report["closed_set"] = evaluator.results()
    else:
        flat, flat_curves = evaluator.results(), evaluator.curves()
        results = {m: {s: flat[m, s] for s in cfg.scores} for m in modes}
        curves = {m: {s: flat_curves[m, s] for s in cfg.scores} for m in modes}
        report.update(protocol=protocol, track=dataset.track if protocol == "smiyc" else None,
                      scores=list(cfg.scores), results=results, per_image=per_image,
                      smiyc_float16=cfg.smiyc_float16 if protocol == "smiyc" else None)
        files += plots.plot_curves(out, curves, results)
        files += plots.plot_panels(out, picker.picks(), f"{modes[0]} / {cfg.scores[0]}")
    report["timing"] = {"wall_s": time.perf_counter() - start, **predictor.timing()}
    return write_report(out, report, markdown(report), files)
