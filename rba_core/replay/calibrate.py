"""``rba calibrate``: the anomaly threshold that keeps false alarms on normal driving below a rate.

On frames without anomalies every flagged pixel (score > threshold, the node's rule) is a false
alarm. The scores of all (region) pixels are pooled exactly as sorted distinct values with counts
(``metrics.CountTable``), so the flagged share at a threshold t is a tail sum and the chosen
threshold is the smallest score value v with share(score > v) <= target: exact, with no
histogram binning. Scores are float32, so the threshold is one of them, exactly representable
in the YAML snippet (shortest round-trip repr) and in the node's float32 comparison.

The same pooled counts give every score's calibration to 0..1 (``pipeline/calibration.py``: the
share of these pixels scoring at most s), written as ``<model>.calibration.yaml``-format file
(``--calibration``, default beside the snippet); its value at the threshold is exactly
1 - the achieved false-alarm rate.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from ..errors import RbaError, require
from ..metrics import CountTable
from ..pipeline.calibration import ScoreCalibration, save_calibrations
from ..pipeline.frames import infer_frames
from ..pipeline.perception import Perception
from .bags import open_reader
from .source import FrameReader


class CalibrationError(RbaError):
    """Bad calibration arguments, or no pixel to calibrate on."""


@dataclass
class CalibrationConfig:
    input: str
    out: str                          # YAML snippet; .json and .png are written beside it
    target_fpr: float
    region: str = "all"               # 'all' or comma-separated class names (predicted)
    topics: list[str] = field(default_factory=list)
    node_name: str = "/**/rba_perception"  # the key config/perception.yaml uses
    limit: int | None = None
    batch: int = 1
    calibration: str | None = None  # score -> probability file; None: <out stem>.calibration.yaml
    model: str = ""                   # recorded in the calibration file


def threshold_for_rate(values: np.ndarray, counts: np.ndarray, rate: float
                       ) -> tuple[float, float]:
    """Smallest v among ``values`` (ascending, distinct) with share(x > v) <= rate, and the share.

    The share is a non-increasing step function of v and is 0 at the largest value, so such a v
    always exists; any threshold below it flags more than ``rate``.
    """
    total = int(counts.sum())
    above = total - np.cumsum(counts, dtype=np.int64)  # pixels strictly above values[k]
    k = int(np.argmax(above / total <= rate))
    return float(values[k]), float(above[k] / total)


def flagged_curve(values: np.ndarray, counts: np.ndarray, max_points: int = 2000
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, flagged share) at up to ``max_points`` of the distinct values."""
    above = counts.sum() - np.cumsum(counts, dtype=np.int64)
    idx = np.unique(np.linspace(0, values.size - 1, min(max_points, values.size)).astype(int))
    return values[idx].astype(np.float64), above[idx] / counts.sum()


def region_ids(region: str, class_names: list[str]) -> list[int] | None:
    if region.strip().lower() == "all":
        return None
    names = [r.strip() for r in region.split(",") if r.strip()]
    unknown = [n for n in names if n not in class_names]
    if unknown or not names:
        raise CalibrationError(f"--region: unknown class {unknown[0] if unknown else region!r} "
                               f"(model classes: {', '.join(class_names)}, or 'all')")
    return [class_names.index(n) for n in names]


def plot_curve(path: Path, thresholds: np.ndarray, share: np.ndarray, target: float,
               threshold: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    floor = max(share[share > 0].min() / 2, 1e-9) if (share > 0).any() else 1e-9
    ax.step(thresholds, np.maximum(share, floor), where="post", lw=1.5, label="flagged share")
    ax.axhline(target, color="tab:red", ls="--", lw=1, label=f"target {target:g}")
    ax.axvline(threshold, color="tab:green", ls=":", lw=1.5, label=f"threshold {threshold:.5g}")
    ax.set_yscale("log")
    ax.set_xlabel("threshold (score > threshold is flagged)")
    ax.set_ylabel("share of pixels flagged")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def snippet(cfg: CalibrationConfig, result: dict) -> str:
    """The params-file snippet (node name / ros__parameters / score + threshold), commented."""
    region = "all pixels" if result["region"] == "all" else f"predicted {result['region']} pixels"
    text = (f"# rba calibrate: at most {cfg.target_fpr:g} of {region} flagged on normal driving\n"
            f"# bag {cfg.input}: {result['frames']} frames, {result['pixels']} pixels; "
            f"achieved {result['achieved_fpr']:.6g}\n"
            f"# anomaly probability of this threshold (LabelInfo.threshold): "
            f"{result['threshold_probability']!r} ({Path(result['calibration']).name})\n"
            f"{json.dumps(cfg.node_name)}:\n"
            f"  ros__parameters:\n"
            f"    score: {result['score']}\n"
            f"    threshold: {result['threshold']!r}\n")
    parsed = yaml.safe_load(text)[cfg.node_name]["ros__parameters"]
    assert parsed["threshold"] == result["threshold"], "threshold must round-trip exactly"
    return text


def collect_scores(cfg: CalibrationConfig, perception: Perception, ids: list[int] | None
                   ) -> tuple[dict[str, CountTable], int, int]:
    """Pool every score of every (region) pixel of every frame: ({score: table}, frames, errors)."""
    tables = {name: CountTable() for name in perception.info.score_names}
    reader = open_reader(cfg.input)
    frames = 0
    try:
        source = FrameReader(reader, cfg.topics, limit=cfg.limit, copy_camera_info=False)
        it = iter(source)
        with tqdm(total=source.total, desc="calibrate", unit="frame") as bar:
            while batch := [f for _, f in zip(range(cfg.batch), it)]:
                good = [f for f in batch if f.rgb is not None]
                for out in (infer_frames(perception.backend, [f.rgb for f in good])
                            if good else []):
                    region = None if ids is None else np.isin(out.class_ids, ids)
                    for name, values in out.scores.items():
                        tables[name].add(values if region is None else values[region])
                frames += len(good)
                bar.update(sum(f.index >= 0 for f in batch))
        return tables, frames, source.decode_errors
    finally:
        reader.close()


def calibrate(cfg: CalibrationConfig, perception: Perception) -> dict:
    """Find the threshold; write the YAML snippet, a JSON summary and the curve PNG."""
    require("matplotlib", "eval")  # before the long pass over the bag, not after it
    if not 0.0 < cfg.target_fpr < 1.0:
        raise CalibrationError(f"--target-fpr must be in (0, 1), got {cfg.target_fpr}")
    if Path(cfg.out).suffix.lower() not in (".yaml", ".yml"):
        raise CalibrationError(f"-o must name a .yaml file, got {cfg.out}")
    ids = region_ids(cfg.region, list(perception.info.class_names))
    start = time.perf_counter()
    tables, frames, errors = collect_scores(cfg, perception, ids)
    score = perception.cfg.score
    table = tables[score]
    values, counts = table.table()
    if table.total == 0:
        raise CalibrationError(f"no pixel to calibrate on ({frames} frames decoded; region "
                               f"{cfg.region!r} never predicted?)")
    threshold, achieved = threshold_for_rate(values, counts, cfg.target_fpr)
    out = Path(cfg.out)
    cal_path = Path(cfg.calibration) if cfg.calibration else \
        out.with_name(out.stem + ".calibration.yaml")
    source = {"input": cfg.input, "region": cfg.region, "frames": frames,
              "pixels": int(table.total), "model": cfg.model or "default"}
    calibrations = {name: ScoreCalibration.from_counts(
        name, *t.table(), include=(threshold,) if name == score else (),
        info={"threshold": threshold, "target_fpr": cfg.target_fpr} if name == score else {})
        for name, t in tables.items() if t.total}
    save_calibrations(cal_path, calibrations, {"method": "inlier_cdf", "source": source})
    result = {"input": cfg.input, "topics": cfg.topics, "score": score,
              "region": cfg.region, "target_fpr": cfg.target_fpr, "threshold": threshold,
              "achieved_fpr": achieved,
              "threshold_probability": float(calibrations[score](threshold, np.float64)),
              "calibration": str(cal_path), "frames": frames, "decode_errors": errors,
              "pixels": int(table.total), "distinct_scores": int(values.size),
              "score_range": [float(values[0]), float(values[-1])],
              "wall_s": time.perf_counter() - start}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(snippet(cfg, result))
    png, js = out.with_suffix(".png"), out.with_suffix(".json")
    plot_curve(png, *flagged_curve(values, counts), cfg.target_fpr, threshold,
               f"{Path(cfg.input).name}: {score}, region {cfg.region}, {frames} frames")
    result["files"] = [str(out), str(js), str(png), str(cal_path)]
    js.write_text(json.dumps(result, indent=1))
    return result
