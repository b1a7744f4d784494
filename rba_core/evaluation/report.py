"""Evaluation reports: ``results.json`` (everything, fractions) and ``results.md`` (percent).

``rba eval``'s table has one row per (score, inference mode), the columns of the paper's tables
(paper protocol), of the SMIYC leaderboard (smiyc protocol) or mIoU (closed set), and the
post-processing time per image of each mode, so the accuracy price of ``fast`` sits next to its
saving. The replay's ground-truth report uses the same tables, one row per image topic.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..files import atomic_write, writing

COLUMNS = {
    "paper": [("AUROC", "auroc"), ("AP", "ap"), ("FPR95", "fpr95")],
    "smiyc": [("AP", "ap"), ("FPR95", "fpr95"), ("AUROC", "auroc"), ("best F1", "best_f1"),
              ("sIoU gt", "siou_gt"), ("PPV", "ppv"), ("mean F1", "mean_f1")],
    "closed": [("mIoU", "miou"), ("pixel acc.", "pixel_accuracy")],
}


def _pct(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.2f}"


def _ms(timing: dict, mode: str) -> str:
    post = timing.get("postprocess_ms_per_image", {})
    return f"{post[mode]:.1f}" if mode in post else "-"


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def results_table(lead: list[str], rows: list[tuple[list, dict, list]], columns: str,
                  tail: list[str] = ()) -> list[str]:
    """Markdown rows: ``lead`` cells, the metrics of ``COLUMNS[columns]`` (percent), ``tail``."""
    metrics = COLUMNS[columns]
    lines = [_row([*lead, *(c for c, _ in metrics), *tail]),
             _row(["---"] * (len(lead) + len(metrics) + len(tail)))]
    for cells, res, extra in rows:
        lines.append(_row([*cells, *(_pct(res.get(k)) for _, k in metrics), *extra]))
    return lines


def class_iou_table(results: dict[str, dict]) -> list[str]:
    """One row per class, one column per closed-set result (its ``per_class_iou``)."""
    names = list(next(iter(results.values()))["per_class_iou"])
    lines = ["", _row(["class IoU", *results]), _row(["---"] * (1 + len(results)))]
    for name in names:
        lines.append(_row([name] + [_pct(r["per_class_iou"].get(name)) for r in results.values()]))
    return lines


def markdown_table(report: dict) -> str:
    """The results table (Markdown) of a report; also what ``rba eval`` prints."""
    timing = report["timing"]
    ms = ["post-proc. ms/img"]
    if report["task"] == "closed":
        rows = [([mode], res, [_ms(timing, mode)]) for mode, res in report["closed_set"].items()]
        return "\n".join(results_table(["inference"], rows, "closed", ms)
                         + class_iou_table(report["closed_set"]))
    rows = [([score, mode], per_score[score], [_ms(timing, mode)])
            for score in report["scores"] for mode, per_score in report["results"].items()]
    return "\n".join(results_table(["score", "inference"], rows, report["protocol"], ms))


def markdown(report: dict) -> str:
    timing = report["timing"]
    protocol = report.get("protocol")
    head = [f"# rba eval: {report['dataset']} ({report['num_images']} images)", "",
            f"- model: `{report['model']}` ({report['model_name']}), backend {report['backend']}"
            + ("" if not report.get("runtime") else
               f" ({report['runtime']['precision']}, input {report['runtime']['input_size']})"),
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


def write_report(out: str | Path, report: dict, text: str, files: list[str] = ()) -> dict:
    """Write ``report`` (results.json) and its Markdown ``text`` (results.md) into ``out``;
    ``report['files']`` lists every output (``files`` written before, then these two)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report["files"] = [*files, "results.json", "results.md"]
    for name, data in (("results.json", json.dumps(json_safe(report), indent=1, allow_nan=False)),
                       ("results.md", text)):
        with writing(out / name):  # atomic: a full disk leaves the old file or none
            atomic_write(out / name, data.encode())
    return report
