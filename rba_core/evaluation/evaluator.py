"""The streaming evaluator: metrics accumulated one frame at a time, per key.

Serves ``rba eval`` (a key per inference mode and score), the replay's ground truth (a key per
image topic, plus ``pooled``) and validation during training (one key). Anomaly task: the paper
protocol (``PaperMetrics``, exact) or SMIYC (``SmiycPixelMetrics``, then ``ComponentMetrics`` at
each key's best-F1 threshold from maps cached on disk); closed task: ``ConfusionMatrix`` (mIoU).
Predictions come at the label's resolution: anomaly scores (higher = anomalous) or class ids.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Hashable

import numpy as np
from tqdm import tqdm

from ..errors import RbaError
from ..files import WriteError, writing
from ..metrics import ComponentMetrics, ConfusionMatrix, PaperMetrics, SmiycPixelMetrics

POOLED = "pooled"


class EvalError(RbaError):
    """Bad evaluation arguments, or predictions that do not fit their labels."""


class StreamingEvaluator:
    """``add`` frames, then ``results``; ``pooled`` adds one accumulator over every key, and the
    SMIYC map cache lives in ``workdir`` (default: the system's temporary folder) until then."""

    def __init__(self, task: str, keys: list[Hashable], *, protocol: str = "paper",
                 track: str = "anomaly", class_names: list[str] | None = None,
                 ignore_index: int = 255, pooled: bool = False,
                 workdir: str | Path | None = None, float16: bool = False):
        self.task, self.protocol, self.track = task, protocol, track
        self.class_names, self.ignore_index, self.keys = class_names, ignore_index, list(keys)
        self.float16 = float16  # SMIYC: maps cast to float16 first, as the benchmark stores them
        self.acc = {k: self._accumulator() for k in self.keys + ([POOLED] if pooled else [])}
        self.smiyc = task == "anomaly" and protocol == "smiyc"
        self.workdir, self.cache, self.frames = workdir, None, 0

    def _accumulator(self):
        if self.task == "closed":
            return ConfusionMatrix(len(self.class_names), self.ignore_index)
        if self.protocol == "paper":
            return PaperMetrics()
        return SmiycPixelMetrics(float16=self.float16)

    def add(self, label: np.ndarray, predictions: dict, where: str = "") -> None:
        """One frame: label [H, W] and, per key, scores (float) or class ids [H, W]."""
        if self.smiyc and self.cache is None:  # component metrics read the maps again
            self.cache = Path(tempfile.mkdtemp(prefix="smiyc_maps_", dir=self.workdir))
        for key, pred in predictions.items():
            try:
                self.acc[key].add(pred, label)
                if POOLED in self.acc:
                    self.acc[POOLED].add(pred, label)
            except ValueError as exc:
                raise EvalError(f"{where}: {exc}" if where else str(exc)) from None
            if self.cache is not None:
                self._cache(f"{self.frames}_{self.keys.index(key)}.npy", pred)
        if self.cache is not None:
            self._cache(f"{self.frames}_label.npy", label)
        self.frames += 1

    def _cache(self, name: str, array: np.ndarray) -> None:
        path = self.cache / name
        try:
            with writing(path, " (the SMIYC map cache; the evaluation stopped)"):
                np.save(path, array)
        except WriteError:
            self.close()  # a full disk must not stay full of maps
            raise

    def close(self) -> None:
        """Remove the map cache (``results`` does; call it when stopping early)."""
        if self.cache is not None:
            shutil.rmtree(self.cache, ignore_errors=True)
            self.cache = None

    def _components(self, key: Hashable, threshold: float) -> dict:
        comp = ComponentMetrics(self.track, float16=self.float16)
        k = self.keys.index(key)
        for i in range(self.frames):
            comp.add(np.load(self.cache / f"{i}_{k}.npy"),
                     np.load(self.cache / f"{i}_label.npy"), threshold)
        return comp.result()

    def results(self) -> dict:
        """{key: metrics} (fractions); frees the map cache."""
        if self.task == "closed":
            return {k: acc.result(self.class_names) for k, acc in self.acc.items()}
        out = {}
        try:
            for key, acc in tqdm(self.acc.items(), desc="components", unit="score",
                                 disable=self.cache is None):
                out[key] = res = acc.result()
                if self.cache is not None and key in self.keys and np.isfinite(
                        res["best_f1_threshold"]):
                    res.update(self._components(key, res["best_f1_threshold"]))
        finally:
            self.close()
        return out

    def curves(self) -> dict:
        """{key: ROC / precision-recall curve points} (anomaly task)."""
        return {k: acc.curves() for k, acc in self.acc.items()}
