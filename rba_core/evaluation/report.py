"""Evaluation reports: ``results.json`` (everything, fractions) and ``results.md`` (percent).

The Markdown table has one row per (score, inference mode), the columns of the paper's tables
(paper protocol) or of the SMIYC leaderboard (smiyc protocol), and the post-processing time per
image of each mode, so the accuracy price of ``fast`` sits next to its saving.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

COLUMNS = {
    "paper": [("AUROC", "auroc"), ("AP", "ap"), ("FPR95", "fpr95")],
    "smiyc": [("AP", "ap"), ("FPR95", "fpr95"), ("AUROC", "auroc"), ("best F1", "best_f1"),
              ("sIoU gt", "siou_gt"), ("PPV", "ppv"), ("mean F1", "mean_f1")],
}


def _pct(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.2f}"


def _ms(timing: dict, mode: str) -> str:
    post = timing.get("postprocess_ms_per_image", {})
    if mode in post:
        return f"{post[mode]:.1f}"
    return "-"


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown_table(report: dict) -> str:
    """The results table (Markdown) of a report; also what ``rba eval`` prints."""
    timing = report["timing"]
    lines = []
    if report["task"] == "closed":
        modes = list(report["closed_set"])
        lines += [_row(["inference", "mIoU", "pixel acc.", "post-proc. ms/img"]),
                  _row(["---"] * 4)]
        for mode, res in report["closed_set"].items():
            lines.append(_row([mode, _pct(res["miou"]), _pct(res["pixel_accuracy"]),
                               _ms(timing, mode)]))
        classes = list(report["closed_set"][modes[0]]["per_class_iou"])
        lines += ["", _row(["class IoU"] + modes), _row(["---"] * (1 + len(modes)))]
        for name in classes:
            lines.append(_row([name] + [_pct(report["closed_set"][m]["per_class_iou"][name])
                                        for m in modes]))
        return "\n".join(lines)
    columns = COLUMNS[report["protocol"]]
    lines += [_row(["score", "inference"] + [c for c, _ in columns] + ["post-proc. ms/img"]),
              _row(["---"] * (len(columns) + 3))]
    for score in report["scores"]:
        for mode, per_score in report["results"].items():
            res = per_score[score]
            lines.append(_row([score, mode] + [_pct(res.get(k)) for _, k in columns]
                              + [_ms(timing, mode)]))
    return "\n".join(lines)


def markdown(report: dict) -> str:
    timing = report["timing"]
    protocol = report.get("protocol")
    head = [f"# rba eval: {report['dataset']} ({report['num_images']} images)", "",
            f"- model: `{report['model']}` ({report['model_name']}), backend {report['backend']}",
            f"- root: `{report['root']}`"
            + (f", resized to {report['resize'][1]}x{report['resize'][0]} for the network"
               if report.get("resize") else "")]
    if protocol:
        head.append(f"- protocol: {protocol}" + (f" ({report['track']} track)"
                                                 if report.get("track") else "")
                    + "; values in percent")
    parts = [f"wall {timing['wall_s']:.1f} s"]
    if "network_ms_per_image" in timing:
        parts.append(f"network {timing['network_ms_per_image']:.1f} ms/img")
    if "inference_ms_per_image" in timing:
        parts.append(f"inference {timing['inference_ms_per_image']:.1f} ms/img")
    head += [f"- timing: {', '.join(parts)}", ""]
    return "\n".join(head + [markdown_table(report), ""])


def json_safe(value):
    """JSON-safe: NaN/inf -> null, numpy scalars/arrays -> Python."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(out: str | Path, report: dict, files: list[str]) -> list[str]:
    """Write results.json and results.md into ``out``; ``report['files']`` lists all outputs."""
    out = Path(out)
    report["files"] = list(files) + ["results.json", "results.md"]
    (out / "results.json").write_text(json.dumps(json_safe(report), indent=1, allow_nan=False))
    (out / "results.md").write_text(markdown(report))
    return report["files"]
