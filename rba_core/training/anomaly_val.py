"""Anomaly validation during training: RbA AP / FPR95 (paper protocol) on an anomaly set."""
from __future__ import annotations

import torch

from ..data.datasets import open_dataset
from ..errors import RbaError
from ..metrics import PaperMetrics
from ..model import Mask2Former
from ..scoring import get_score


@torch.no_grad()
def evaluate_anomaly(model: Mask2Former, spec: dict[str, str], score: str = "rba") -> dict:
    """spec = {dataset: road_anomaly|fs_static|..., root: DIR[, limit: N]} -> AP, FPR95 in %."""
    if "dataset" not in spec or "root" not in spec:
        raise RbaError("anomaly_val needs 'dataset' and 'root'")
    dataset = open_dataset(spec["dataset"], spec["root"])
    if spec.get("limit"):
        dataset = dataset.subset(int(spec["limit"]))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    fn, metrics = get_score(score), PaperMetrics()
    for _, image, label in dataset:
        x = torch.from_numpy(image.transpose(2, 0, 1).copy())[None].to(device)
        metrics.add(fn(model.semantic(x))[0].cpu().numpy(), label)
    model.train(was_training)
    res = metrics.result()
    return {"anomaly_ap": res["ap"] * 100, "anomaly_fpr95": res["fpr95"] * 100,
            "anomaly_auroc": res["auroc"] * 100}
