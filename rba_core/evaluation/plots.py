"""Evaluation figures (PNG, matplotlib's Agg canvas, no pyplot state): curves and panels.

- ``roc_<mode>.png`` / ``pr_<mode>.png``: ROC and precision-recall curves, one line per score.
- ``panels/<best|worst>_<rank>_<image>.png``: image | anomaly map | ground truth for the images
  with the highest and lowest per-image AP (first score, first inference mode).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..files import atomic_path, writing

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
except ImportError:  # a robot install (no [eval] extra): run_eval says so before it starts
    FigureCanvasAgg = ListedColormap = Figure = None

# ground truth colours: normal, anomaly, void
GT_CMAP = ListedColormap and ListedColormap([(0.05, 0.05, 0.05), (1.0, 1.0, 1.0), (0.5, 0.5, 0.5)])


def _save(fig: Figure, path: Path) -> None:
    """Atomically (a full disk leaves no truncated PNG; one line names it)."""
    FigureCanvasAgg(fig)
    with writing(path), atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=path.suffix[1:])


def _pct(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.2f}"


def plot_curves(out: Path, curves: dict, results: dict) -> list[str]:
    """curves[mode][score] = {fpr, tpr, precision, recall}; returns the written file names."""
    files = []
    for mode, per_score in curves.items():
        for kind, (x, y, xlabel, ylabel, key) in {
                "roc": ("fpr", "tpr", "false positive rate", "true positive rate", "auroc"),
                "pr": ("recall", "precision", "recall", "precision", "ap")}.items():
            fig = Figure(figsize=(6, 5))
            ax = fig.add_subplot()
            for score, c in per_score.items():
                if c[x].size:
                    label = f"{score} ({key.upper()} {_pct(results[mode][score].get(key))})"
                    ax.plot(c[x], c[y], label=label, linewidth=1.5)
            if kind == "roc":
                ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
            ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=xlabel, ylabel=ylabel,
                   title=f"{kind.upper()} curves, inference {mode}")
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right" if kind == "roc" else "upper right", fontsize=8)
            fig.tight_layout()
            name = f"{kind}_{mode}.png"
            _save(fig, out / name)
            files.append(name)
    return files


def plot_panel(path: Path, image: np.ndarray, amap: np.ndarray, label: np.ndarray,
               title: str) -> None:
    """image | anomaly map | ground truth (black normal, white anomaly, grey void)."""
    h, w = image.shape[:2]
    fig = Figure(figsize=(15, 15 * h / (3 * w) + 0.8))
    axes = fig.subplots(1, 3)
    axes[0].imshow(image)
    axes[0].set_title("image")
    valid = (label == 0) | (label == 1)
    lo, hi = (np.percentile(amap[valid], [1, 99]) if valid.any() else (amap.min(), amap.max()))
    im = axes[1].imshow(amap, cmap="magma", vmin=lo, vmax=hi)
    axes[1].set_title("anomaly score")
    fig.colorbar(im, ax=axes[1], fraction=0.03, pad=0.01)
    axes[2].imshow(np.where(valid, label, 2), cmap=GT_CMAP, vmin=0, vmax=2,
                   interpolation="nearest")
    axes[2].set_title("ground truth")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def plot_panels(out: Path, picks: list, what: str) -> list[str]:
    """picks: [(kind, (ap, name, image, map, label))] from ``PanelPicker.picks``."""
    files, rank = [], {}
    for kind, (ap, name, image, amap, label) in picks:
        rank[kind] = rank.get(kind, 0) + 1
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        rel = f"panels/{kind}_{rank[kind]}_{safe}.png"
        plot_panel(out / rel, image, amap, label,
                   f"{kind} #{rank[kind]}: {name}, AP {_pct(ap)} ({what})")
        files.append(rel)
    return files
