"""Loss and validation curves from a run's metrics.jsonl (matplotlib, no display needed)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import require


def plot_metrics(jsonl: Path, out: Path) -> Path | None:
    """Total/class/mask/dice (+RbA) losses and val mIoU against iterations -> PNG."""
    matplotlib = require("matplotlib", "train")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not jsonl.is_file():
        return None
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_miou" in r]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "loss_ce", "loss_mask", "loss_dice", "loss_rba"):
        pts = [(r["iter"], r[key]) for r in train if key in r]
        if pts:
            axes[0].plot(*zip(*pts), label=key)
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("loss")
    axes[0].set_yscale("log")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    if val:
        axes[1].plot([r["iter"] for r in val], [r["val_miou"] for r in val], "o-", label="val mIoU")
    anomaly = [(r["iter"], r["anomaly_ap"]) for r in rows if "anomaly_ap" in r]
    if anomaly:
        axes[1].plot(*zip(*anomaly), "s-", label="anomaly AP (RbA)")
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("%")
    if val or anomaly:
        axes[1].legend()
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
