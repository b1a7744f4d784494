"""Score calibration: raw anomaly score -> anomaly probability in 0..1, monotone.

``rba calibrate`` pools the scores of every pixel of normal driving (no anomalies). The mapping is
their empirical distribution function: p(s) = share of normal pixels scoring at most s, i.e.
1 - (false-alarm rate of the threshold s). A pixel with p = 0.999 scores higher than 99.9 % of
normal pixels. It is exact at its knots (distinct calibration scores chosen densely in the upper
tail, the calibrated threshold always among them) and linear between them; below the lowest knot
it is the lowest knot's value, above the highest it is 1.

The threshold stays in score units (the node's ``threshold``, what ``rba calibrate`` writes, and the
raw 32FC1 ``anomaly`` image); everything published as 0..1 (Detection scores, LabelInfo.threshold,
point intensities) is p(score), so ``p(score) > p(threshold)`` <=> ``score > threshold`` for
every calibrated score, and p(threshold) = 1 - the false-alarm rate ``rba calibrate`` achieved.

Files: YAML ``<model stem>.calibration.yaml`` next to the model (the embedded default model's is
``rba_core/weights/default.calibration.yaml``), one mapping per score name.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..dataconf import ConfigError, load_yaml

FORMAT = "rba-score-calibration/1"
MAX_KNOTS = 256
TAIL_DECADES = 4.0  # heat overlay: red at a false-alarm rate of 10^-4 or rarer


@dataclass
class ScoreCalibration:
    """Monotone piecewise-linear map from one score's values to 0..1."""
    score: str
    knots: np.ndarray         # [K] float64 scores, strictly increasing
    probability: np.ndarray   # [K] float64 in [0, 1], non-decreasing
    info: dict = field(default_factory=dict)  # provenance (bag, region, frames, pixels, ...)

    def __post_init__(self):
        self.knots = np.asarray(self.knots, np.float64)
        self.probability = np.asarray(self.probability, np.float64)
        path = f"scores.{self.score}"
        if self.knots.ndim != 1 or self.knots.size < 2 or self.knots.shape != \
                self.probability.shape:
            raise ConfigError(path, "needs matching score/probability lists of >= 2 knots")
        if not (np.isfinite(self.knots).all() and np.isfinite(self.probability).all()):
            raise ConfigError(path, "knots must be finite")
        if (np.diff(self.knots) <= 0).any():
            raise ConfigError(path + ".score", "must be strictly increasing")
        if (np.diff(self.probability) < 0).any():
            raise ConfigError(path + ".probability", "must be non-decreasing (monotone)")
        if self.probability[0] < 0 or self.probability[-1] > 1:
            raise ConfigError(path + ".probability", "must lie in [0, 1]")

    def __call__(self, scores, dtype=np.float32) -> np.ndarray:
        """Scores (any shape) -> probabilities (``dtype``, float32 by default), same shape."""
        s = np.asarray(scores, np.float64)
        return np.interp(s, self.knots, self.probability, right=1.0).astype(dtype)

    def tail(self, scores) -> np.ndarray:
        """Scores -> 0..1 colour scale: -log10(1 - p) / TAIL_DECADES (0.5 at a 1 % rate)."""
        x = self(scores).astype(np.float64)  # p; the same steps in place (no temporaries):
        np.subtract(1.0, x, out=x)            # -log10(max(1 - p, 0)) / TAIL_DECADES, clipped
        np.maximum(x, 0.0, out=x)
        with np.errstate(divide="ignore"):
            np.log10(x, out=x)
        np.negative(x, out=x)
        np.divide(x, TAIL_DECADES, out=x)
        return np.clip(x, 0.0, 1.0, out=x).astype(np.float32)

    @classmethod
    def from_counts(cls, score: str, values: np.ndarray, counts: np.ndarray,
                    include: tuple[float, ...] = (), max_knots: int = MAX_KNOTS,
                    info: dict | None = None) -> "ScoreCalibration":
        """Empirical CDF of pooled scores (distinct ``values`` ascending with ``counts``).

        Knots: quantiles spread over 0..1 plus a log-spaced upper tail down to one pixel, the
        first and last value, and every value in ``include`` that occurs (the threshold).
        """
        values = np.asarray(values, np.float64)
        cdf = np.cumsum(counts, dtype=np.float64)
        total = cdf[-1]
        cdf /= total
        if values.size < 2:
            raise ConfigError(f"scores.{score}", "needs at least two distinct calibration scores")
        half = max_knots // 2
        levels = np.concatenate([np.linspace(0.0, 1.0, half),
                                 1.0 - np.logspace(-1.0, np.log10(1.0 / total), half)])
        idx = np.searchsorted(cdf, levels, side="left").clip(0, values.size - 1)
        inc = np.asarray(include, np.float64)
        pos = np.searchsorted(values, inc).clip(0, values.size - 1)
        extra = pos[values[pos] == inc]
        idx = np.unique(np.concatenate([[0, values.size - 1], idx, extra]))
        return cls(score, values[idx], cdf[idx], dict(info or {}))

    # -- files -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"score": [float(v) for v in self.knots],
                "probability": [float(p) for p in self.probability], **self.info}


def save_calibrations(path: str | Path, calibrations: dict[str, ScoreCalibration],
                      header: dict) -> Path:
    """Write ``{score: mapping}`` and provenance ``header`` as YAML (floats round-trip exactly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, **header,
           "scores": {name: c.to_dict() for name, c in calibrations.items()}}
    # JSON is valid YAML and writes floats with shortest round-trip repr; one line per knot list
    body = re.sub(r"\[\s*([^\[\]{}]*?)\s*\]",
                  lambda m: "[" + " ".join(m.group(1).split()) + "]", json.dumps(doc, indent=1))
    text = ("# rba calibrate: anomaly score -> probability (share of normal-driving pixels scoring"
            " at most that score)\n" + body + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def load_calibrations(path: str | Path, header: dict | None = None
                      ) -> dict[str, ScoreCalibration]:
    """Read a calibration file; ConfigError names the bad field. ``header`` receives the
    file's other top-level entries (method, source)."""
    data = load_yaml(path)
    if header is not None:
        header.update({k: v for k, v in data.items() if k not in ("format", "scores")})
    if data.get("format") != FORMAT:
        raise ConfigError("format", f"{path}: expected {FORMAT!r}, got {data.get('format')!r}")
    scores = data.get("scores")
    if not isinstance(scores, dict) or not scores:
        raise ConfigError("scores", f"{path}: needs a mapping of score name -> knots")
    out = {}
    for name, entry in scores.items():
        if not isinstance(entry, dict) or "score" not in entry or "probability" not in entry:
            raise ConfigError(f"scores.{name}", "needs 'score' and 'probability' lists")
        info = {k: v for k, v in entry.items() if k not in ("score", "probability")}
        try:
            out[name] = ScoreCalibration(name, entry["score"], entry["probability"], info)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"scores.{name}", f"bad knots: {exc}") from None
    return out


def calibration_path(model_path: str | Path | None) -> Path:
    """The calibration file that belongs to a model: ``<stem>.calibration.yaml`` beside it.

    ``None`` / '' / 'default' is the embedded default model.
    """
    if not model_path or str(model_path) == "default":
        from ..runtime.loader import DEFAULT_MODEL  # lazy: the loader imports torch

        model_path = DEFAULT_MODEL
    path = Path(model_path)
    return path.with_name(path.stem + ".calibration.yaml")


def model_calibrations(model_path: str | Path | None) -> dict[str, ScoreCalibration]:
    """The model's calibrations, {} when it has no calibration file (presets never do)."""
    if model_path and str(model_path).startswith("preset:"):
        return {}
    path = calibration_path(model_path)
    return load_calibrations(path) if path.is_file() else {}


def step_probability(scores, threshold: float) -> np.ndarray:
    """Uncalibrated fallback: 1 where score > threshold, else 0 (monotone, consistent)."""
    return (np.asarray(scores) > threshold).astype(np.float32)
