"""Closed-set segmentation: streaming confusion matrix, per-class IoU and mIoU."""
from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    """Rows = ground-truth class, columns = predicted class; ``ignore_index`` pixels are skipped.

    IoU_c = TP / (TP + FP + FN). mIoU averages the classes that occur in the ground truth or the
    prediction (a class absent from both has no IoU), as detectron2's SemSegEvaluator does.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def add(self, prediction: np.ndarray, labels: np.ndarray) -> None:
        """One frame: predicted class ids [H, W] and ground-truth ids [H, W]."""
        prediction, labels = np.asarray(prediction), np.asarray(labels)
        if prediction.shape != labels.shape:
            raise ValueError(f"prediction {prediction.shape} and labels {labels.shape} differ")
        valid = labels != self.ignore_index
        gt, pred = labels[valid].astype(np.int64), prediction[valid].astype(np.int64)
        k = self.num_classes
        for name, ids in (("label", gt), ("predicted class", pred)):
            if ids.size and (ids.min() < 0 or ids.max() >= k):
                bad = ids[(ids < 0) | (ids >= k)][0]
                raise ValueError(f"{name} {bad} outside 0..{k - 1} (ignore is {self.ignore_index})")
        self.matrix += np.bincount(gt * k + pred, minlength=k * k).reshape(k, k)

    def iou(self) -> np.ndarray:
        """Per-class IoU [K]; NaN for classes in neither ground truth nor prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def result(self, class_names: list[str] | None = None) -> dict:
        iou = self.iou()
        names = class_names or [str(i) for i in range(self.num_classes)]
        miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
        total = self.matrix.sum()
        return {"miou": miou,
                "pixel_accuracy": float(np.trace(self.matrix) / total) if total else float("nan"),
                "per_class_iou": {n: float(v) for n, v in zip(names, iou)}}
