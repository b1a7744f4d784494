"""Validation during training: closed-set mIoU on a dataset reader (``rba_core.data``)."""
from __future__ import annotations

import cv2
import torch

from ..metrics.closed_set import ConfusionMatrix
from ..model import Mask2Former


@torch.no_grad()
def evaluate_miou(model: Mask2Former, dataset, size: list[int] | None = None,
                  mode: str = "exact") -> dict:
    """mIoU (in %) of ``model`` on a closed-set dataset, optionally resizing inputs to ``size``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    conf = ConfusionMatrix(model.num_classes, dataset.ignore_index)
    for _, image, label in dataset:
        h, w = label.shape
        if size:
            image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(image.transpose(2, 0, 1).copy())[None].to(device)
        sem = model.semantic(x, mode)
        if sem.shape[-2:] != (h, w):
            sem = torch.nn.functional.interpolate(sem, size=(h, w), mode="bilinear",
                                                  align_corners=False)
        conf.add(sem.argmax(1)[0].cpu().numpy(), label)
    model.train(was_training)
    res = conf.result(model.cfg.class_names)
    return {"miou": res["miou"] * 100,
            "iou": {n: (None if v != v else round(v * 100, 2))
                    for n, v in res["per_class_iou"].items()}}
