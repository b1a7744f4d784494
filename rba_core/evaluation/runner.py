"""The evaluation loop behind ``rba eval``: one network pass per image, every score side by side.

With the torch backend the network runs once per image and each requested inference mode
(``exact``, ``fast``) is applied to the same raw outputs, so the accuracy price of ``fast`` and its
post-processing time are read off one run. ONNX Runtime / TensorRT engines have one mode baked in
and run through ``pipeline.frames.infer_frames`` (resized to the engine's size and back).
Metrics are computed at the label's resolution; ``resize`` only changes the network's input.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..data.datasets import Sample, SegmentationDataset, open_dataset
from ..errors import RbaError
from ..metrics import (ComponentMetrics, ConfusionMatrix, PaperMetrics, SmiycPixelMetrics,
                       frame_average_precision)
from ..model import MODES, padded_size, semantic_inference
from ..pipeline.frames import infer_frames, resize_outputs, to_chw_batch
from ..runtime import Backend, FrameOutputs, load_backend
from ..scoring import parse_scores
from . import plots
from .report import write_report

log = logging.getLogger(__name__)

ALL_SCORES = ("rba", "energy", "max_logit", "msp", "entropy")
PROTOCOLS = ("paper", "smiyc")
THUMB_SIZE = 640  # longest side of the images kept for the qualitative panels


class EvalError(RbaError):
    """Bad evaluation arguments (scores, modes, protocol, model/dataset mismatch)."""


@dataclass
class EvalConfig:
    model: str | None
    dataset: str
    root: str
    out: str
    scores: list[str] = field(default_factory=lambda: list(ALL_SCORES))
    protocol: str | None = None          # None: the dataset's own (smiyc_* -> smiyc, else paper)
    backend: str = "auto"
    modes: list[str] | None = None       # None: exact (torch), or the mode baked into an engine
    resize: tuple[int, int] | None = None  # network input (H, W); None = native resolution
    device: str | None = None
    split: str | None = None
    label_map: str | None = None
    task: str | None = None
    limit: int | None = None
    panels: int = 2                      # best and worst images drawn per run
    smiyc_float16: bool = False          # smiyc protocol: maps cast to float16 (the leaderboard's)


# -- prediction: image -> {mode: FrameOutputs at the image's resolution} --------------------------
class TorchPredictor:
    """One network pass; each inference mode post-processes the same raw outputs (timed)."""

    def __init__(self, backend, modes: list[str], resize: tuple[int, int] | None):
        self.graph, self.device = backend.graph, backend.device
        self.modes, self.resize = modes, resize
        self.network_s, self.post_s, self.frames = 0.0, {m: 0.0 for m in modes}, 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> dict[str, FrameOutputs]:
        x = torch.from_numpy(to_chw_batch([rgb], self.resize)).to(self.device)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        model = self.graph.model
        t0 = time.perf_counter()
        out = model(x, with_aux=False)
        self._sync()
        self.network_s += time.perf_counter() - t0
        outputs = {}
        for mode in self.modes:
            t0 = time.perf_counter()
            sem = semantic_inference(out["pred_logits"], out["pred_masks"], (h, w),
                                     padded_size(h, w, model.cfg.size_divisibility), mode)
            class_ids, confidence, scores = self.graph.heads(sem)
            frame = FrameOutputs(class_ids[0].cpu().numpy(), confidence[0].float().cpu().numpy(),
                                 {n: scores[0, i].float().cpu().numpy()
                                  for i, n in enumerate(self.graph.score_names)})
            self.post_s[mode] += time.perf_counter() - t0
            outputs[mode] = resize_outputs(frame, rgb.shape[:2])
        self.frames += 1
        return outputs

    def timing(self) -> dict:
        n = max(self.frames, 1)
        return {"network_ms_per_image": 1e3 * self.network_s / n,
                "postprocess_ms_per_image": {m: 1e3 * s / n for m, s in self.post_s.items()}}


class BackendPredictor:
    """Engines with one baked-in mode (ONNX Runtime, TensorRT): network + post-processing timed."""

    def __init__(self, backend: Backend, resize: tuple[int, int] | None):
        self.backend, self.resize, self.mode = backend, resize, backend.info.mode
        self.infer_s, self.frames = 0.0, 0

    def __call__(self, rgb: np.ndarray) -> dict[str, FrameOutputs]:
        image = rgb if self.resize is None else cv2.resize(
            rgb, self.resize[::-1], interpolation=cv2.INTER_LINEAR)
        t0 = time.perf_counter()
        (frame,) = infer_frames(self.backend, [image])
        self.infer_s += time.perf_counter() - t0
        self.frames += 1
        return {self.mode: resize_outputs(frame, rgb.shape[:2])}

    def timing(self) -> dict:
        return {"inference_ms_per_image": 1e3 * self.infer_s / max(self.frames, 1)}


def make_predictor(backend: Backend, modes: list[str], scores: list[str],
                   resize: tuple[int, int] | None):
    missing = [s for s in scores if s not in backend.info.score_names]
    if missing:
        raise EvalError(f"the {backend.name} model computes {', '.join(backend.info.score_names)}; "
                        f"it lacks {', '.join(missing)} (re-export it with those scores)")
    if hasattr(backend, "graph"):
        return TorchPredictor(backend, modes, resize)
    if modes != [backend.info.mode]:
        raise EvalError(f"this {backend.name} model was exported with --inference "
                        f"{backend.info.mode}; other modes need the torch backend")
    return BackendPredictor(backend, resize)


# -- accumulation ---------------------------------------------------------------------------------
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


class AnomalyEvaluator:
    """Per (mode, score): paper metrics (exact) or SMIYC pixel + component metrics."""

    def __init__(self, protocol: str, modes: list[str], scores: list[str], track: str,
                 workdir: Path, panels: int, float16: bool = False):
        self.protocol, self.modes, self.scores, self.track = protocol, modes, scores, track
        self.float16 = float16
        make = PaperMetrics if protocol == "paper" else partial(SmiycPixelMetrics, float16=float16)
        self.pixel = {(m, s): make() for m in modes for s in scores}
        self.picker = PanelPicker(panels)
        self.per_image: list[dict] = []
        self.cache = Path(tempfile.mkdtemp(prefix="smiyc_maps_", dir=workdir)) \
            if protocol == "smiyc" else None
        self.count = 0

    def add(self, sample: Sample, outputs: dict[str, FrameOutputs]) -> None:
        for (mode, score), acc in self.pixel.items():
            acc.add(outputs[mode].scores[score], sample.label)
            if self.cache is not None:  # component metrics need the maps again (2nd pass)
                np.save(self.cache / f"{self.count}_{mode}_{score}.npy",
                        outputs[mode].scores[score])
        if self.cache is not None:
            np.save(self.cache / f"{self.count}_label.npy", sample.label)
        primary = outputs[self.modes[0]].scores[self.scores[0]]
        ap = frame_average_precision(primary, sample.label)
        self.per_image.append({"name": sample.name, "ap": ap})
        self.picker.add(ap, sample, primary)
        self.count += 1

    def _components(self, mode: str, score: str, threshold: float) -> dict:
        comp = ComponentMetrics(self.track, float16=self.float16)
        for i in range(self.count):
            comp.add(np.load(self.cache / f"{i}_{mode}_{score}.npy"),
                     np.load(self.cache / f"{i}_label.npy"), threshold)
        return comp.result()

    def results(self) -> tuple[dict, dict]:
        """({mode: {score: metrics}}, {mode: {score: curves}})."""
        results = {m: {} for m in self.modes}
        curves = {m: {} for m in self.modes}
        items = self.pixel.items()
        if self.cache is not None:
            items = tqdm(items, desc="components", unit="score")
        try:
            for (mode, score), acc in items:
                res = acc.result()
                if self.cache is not None and np.isfinite(res["best_f1_threshold"]):
                    res.update(self._components(mode, score, res["best_f1_threshold"]))
                results[mode][score] = res
                curves[mode][score] = acc.curves()
        finally:
            if self.cache is not None:
                shutil.rmtree(self.cache, ignore_errors=True)
        return results, curves


class ClosedSetEvaluator:
    def __init__(self, modes: list[str], class_names: list[str], ignore_index: int):
        self.class_names = class_names
        self.matrices = {m: ConfusionMatrix(len(class_names), ignore_index) for m in modes}

    def add(self, sample: Sample, outputs: dict[str, FrameOutputs]) -> None:
        for mode, cm in self.matrices.items():
            try:
                cm.add(outputs[mode].class_ids, sample.label)
            except ValueError as exc:
                raise EvalError(f"{sample.name}: {exc}") from None

    def results(self) -> dict:
        return {m: cm.result(self.class_names) for m, cm in self.matrices.items()}


# -- the run --------------------------------------------------------------------------------------
def _check(cfg: EvalConfig, dataset: SegmentationDataset) -> str:
    try:
        parse_scores(cfg.scores)
    except ValueError as exc:
        raise EvalError(str(exc)) from None
    bad = [m for m in cfg.modes or [] if m not in MODES]
    if bad or cfg.modes == [] or len(set(cfg.modes or [])) != len(cfg.modes or []):
        raise EvalError(f"--inference takes distinct modes from {', '.join(MODES)}; "
                        f"got {','.join(cfg.modes)}")
    protocol = cfg.protocol or dataset.protocol
    if protocol not in PROTOCOLS:
        raise EvalError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    return protocol


def load_dataset(cfg: EvalConfig) -> SegmentationDataset:
    dataset = open_dataset(cfg.dataset, cfg.root, cfg.split, cfg.label_map, cfg.task)
    if cfg.limit is not None:
        if cfg.limit < 1:
            raise EvalError(f"--limit must be at least 1, got {cfg.limit}")
        dataset = dataset.subset(cfg.limit)
    return dataset


def run_eval(cfg: EvalConfig, argv: list[str] | None = None) -> dict:
    """Evaluate, write results.json / results.md / plots into ``cfg.out``; return the report."""
    dataset = load_dataset(cfg)
    protocol = _check(cfg, dataset)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # Fixed-size engines are exported at --resize, else at the first image's size.
    fixed = cfg.backend in ("onnxruntime", "tensorrt")
    if (fixed or str(cfg.model).endswith(".onnx")) and len(cfg.modes or []) > 1:
        raise EvalError("an exported engine has one inference mode baked in: compare modes with "
                        "--backend torch")
    input_size = (cfg.resize or dataset[0].image.shape[:2]) if fixed else None
    backend = load_backend(cfg.model, cfg.backend, cfg.scores, cfg.modes[0] if cfg.modes else None,
                           cfg.device, input_size=input_size)
    modes = cfg.modes or [backend.info.mode]
    predictor = make_predictor(backend, modes, cfg.scores, cfg.resize)
    class_names = list(backend.info.class_names)
    if dataset.task == "closed":
        if dataset.class_names is not None and len(dataset.class_names) != len(class_names):
            raise EvalError(f"the model has {len(class_names)} classes but {dataset.name} has "
                            f"{len(dataset.class_names)}: evaluate a model trained on it")
        evaluator = ClosedSetEvaluator(modes, class_names, dataset.ignore_index)
    else:
        evaluator = AnomalyEvaluator(protocol, modes, cfg.scores, dataset.track, out,
                                     cfg.panels, cfg.smiyc_float16)
    start = time.perf_counter()
    for sample in tqdm(dataset, desc=f"eval {dataset.name}", unit="img"):
        evaluator.add(sample, predictor(sample.image))
    report = {
        "command": "rba " + " ".join(argv) if argv else None,
        "model": cfg.model, "model_name": backend.info.config.get("name"),
        "backend": backend.name, "dataset": dataset.name, "root": str(cfg.root),
        "split": cfg.split, "num_images": len(dataset), "task": dataset.task,
        "resize": list(cfg.resize) if cfg.resize else None, "inference": list(modes),
    }
    files: list[str] = []
    if dataset.task == "closed":
        report["closed_set"] = evaluator.results()
    else:
        results, curves = evaluator.results()
        report.update(protocol=protocol, track=dataset.track if protocol == "smiyc" else None,
                      smiyc_float16=cfg.smiyc_float16 if protocol == "smiyc" else None,
                      scores=list(cfg.scores), results=results, per_image=evaluator.per_image)
        files += plots.plot_curves(out, curves, results)
        files += plots.plot_panels(out, evaluator.picker.picks(),
                                   f"{modes[0]} / {cfg.scores[0]}")
    report["timing"] = {"wall_s": time.perf_counter() - start, **predictor.timing()}
    write_report(out, report, files)
    return report
