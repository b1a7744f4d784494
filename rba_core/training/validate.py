"""Validation during training: closed-set mIoU and anomaly AP / FPR95 on dataset readers
(``rba_core.data``), accumulated by the evaluator of ``rba eval``."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import torch

from ..evaluation.evaluator import StreamingEvaluator
from ..model import Mask2Former


def model_input(model: Mask2Former, image: np.ndarray) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> [1, 3, H, W] on the model's device."""
    x = torch.from_numpy(image.transpose(2, 0, 1).copy())[None]
    return x.to(next(model.parameters()).device)


@torch.no_grad()
def evaluate(model: Mask2Former, dataset, task: str,
             predict: Callable[[np.ndarray, tuple[int, int]], np.ndarray]) -> dict:
    """Metrics of ``predict(image [H, W, 3], label shape) -> [H, W]`` over ``dataset``, with
    ``model`` in eval mode (its mode is restored after); task: ``closed`` or ``anomaly``."""
    was_training = model.training
    model.eval()
    evaluator = StreamingEvaluator(task, ["val"], class_names=model.cfg.class_names,
                                   ignore_index=dataset.ignore_index)
    try:
        for _, image, label in dataset:
            evaluator.add(label, {"val": predict(image, label.shape)})
    finally:
        model.train(was_training)
    return evaluator.results()["val"]


def evaluate_miou(model: Mask2Former, dataset, size: list[int] | None = None,
                  mode: str = "exact") -> dict:
    """mIoU (in %) of ``model`` on a closed-set dataset, optionally resizing inputs to ``size``."""
    def predict(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        if size:
            image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        sem = model.semantic(model_input(model, image), mode)
        if sem.shape[-2:] != shape:
            sem = torch.nn.functional.interpolate(sem, size=shape, mode="bilinear",
                                                  align_corners=False)
        return sem.argmax(1)[0].cpu().numpy()

    res = evaluate(model, dataset, "closed", predict)
    return {"miou": res["miou"] * 100,
            "iou": {n: (None if v != v else round(v * 100, 2))
                    for n, v in res["per_class_iou"].items()}}
