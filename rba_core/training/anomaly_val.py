"""Anomaly validation during training: RbA AP / FPR95 (paper protocol) on an anomaly set."""
from __future__ import annotations

from ..data.datasets import open_dataset
from ..errors import RbaError
from ..model import Mask2Former
from ..scoring import get_score
from .validate import evaluate, model_input


def evaluate_anomaly(model: Mask2Former, spec: dict[str, str], score: str = "rba") -> dict:
    """spec = {dataset: road_anomaly|fs_static|..., root: DIR[, limit: N]} -> AP, FPR95 in %."""
    if "dataset" not in spec or "root" not in spec:
        raise RbaError("anomaly_val needs 'dataset' and 'root'")
    dataset = open_dataset(spec["dataset"], spec["root"])
    if spec.get("limit"):
        dataset = dataset.subset(int(spec["limit"]))
    fn = get_score(score)
    res = evaluate(model, dataset, "anomaly",
                   lambda image, _: fn(model.semantic(model_input(model, image)))[0].cpu().numpy())
    return {"anomaly_ap": res["ap"] * 100, "anomaly_fpr95": res["fpr95"] * 100,
            "anomaly_auroc": res["auroc"] * 100}
