"""SetCriterion (Mask2Former) + the RbA outlier loss (paper Eq. 6 as released, and the ablation's
variants).

Closed-set losses per prediction level (final + auxiliary, deep supervision): class cross-entropy
with a down-weighted no-object class, and point-sampled mask BCE + dice on matched queries.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model import class_probs
from .matcher import HungarianMatcher
from .points import point_sample, uncertain_points


def sigmoid_ce(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum() / num_masks


def dice(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    probs = logits.sigmoid()
    num = 2 * (probs * targets).sum(-1)
    den = probs.sum(-1) + targets.sum(-1)
    return (1 - (num + 1) / (den + 1)).sum() / num_masks


def semantic_targets(labels: torch.Tensor, num_classes: int) -> list[dict]:
    """Label maps [B, H, W] -> per image {labels [M], masks [M, H, W]}: one mask per class present.

    Ignore and outlier pixels belong to no mask (they are background for every query).
    """
    targets = []
    for lab in labels:
        classes = torch.unique(lab)
        classes = classes[classes < num_classes]
        targets.append({"labels": classes.long(),
                        "masks": (lab[None] == classes[:, None, None]).float()})
    return targets


def rba_score_map(pred_logits: torch.Tensor, pred_masks: torch.Tensor) -> torch.Tensor:
    """RbA at mask resolution: -sum_k tanh(sum_q p_qk sigmoid(m_q)) -> [B, h, w]."""
    sem = torch.einsum("bqc,bqhw->bchw", class_probs(pred_logits.float()),
                       pred_masks.float().sigmoid())
    return -torch.tanh(sem).sum(1)


def rba_loss(pred_logits: torch.Tensor, pred_masks: torch.Tensor, labels: torch.Tensor,
             outlier_label: int, ignore_label: int, kind: str = "hinge", alpha: float = 5.0,
             ) -> torch.Tensor:
    """Outlier loss of one prediction on its RbA score s, computed at 1/4 and upsampled
    (``align_corners=True``), as the released criterion (rba_reference.md):

    hinge: ``L = mean(relu(s_in)^2)`` over inlier pixels and, when the batch has outlier pixels,
    ``L = 0.5 * (L + mean(relu(alpha - s_out)^2))``. The inlier term is always 0 (s <= 0), so this is
    0.5 x the squared hinge of Eq. 6 over outlier pixels. mse / l1 (the paper's ablation) replace the
    outlier term by ``(s - alpha)^2`` / ``|s - alpha|``; bce: s as the logit of "outlier" over all
    labelled pixels.
    """
    score = rba_score_map(pred_logits, pred_masks)[:, None]
    score = F.interpolate(score, size=labels.shape[-2:], mode="bilinear", align_corners=True)[:, 0]
    outlier = labels == outlier_label
    if kind == "bce":
        valid = labels != ignore_label
        if not valid.any():
            return score.sum() * 0
        return F.binary_cross_entropy_with_logits(score[valid], outlier[valid].float())
    inlier = ~outlier & (labels != ignore_label)
    loss = F.relu(score[inlier]).square().mean() if inlier.any() else score.sum() * 0
    if not outlier.any():
        return loss  # keeps the graph (DDP needs every rank to backprop)
    s = score[outlier]
    if kind == "hinge":
        out = F.relu(alpha - s).square().mean()
    elif kind == "mse":
        out = (s - alpha).square().mean()
    elif kind == "l1":
        out = (s - alpha).abs().mean()
    else:
        raise ValueError(f"unknown RbA loss {kind!r}")
    return 0.5 * (loss + out)


class SetCriterion:
    """Weighted sum of class, mask and dice losses over all prediction levels (+ RbA loss)."""

    def __init__(self, num_classes: int, loss_cfg, ignore_label: int, outlier_label: int = 254):
        c = loss_cfg
        self.num_classes = num_classes
        self.cfg = c
        self.ignore_label, self.outlier_label = ignore_label, outlier_label
        self.matcher = HungarianMatcher(c.class_weight, c.mask_weight, c.dice_weight, c.num_points)
        self.empty_weight = torch.ones(num_classes + 1)
        self.empty_weight[-1] = c.no_object_weight

    def count_masks(self, labels: torch.Tensor) -> int:
        """Number of ground-truth masks (classes present per image) in a batch."""
        return sum(int((torch.unique(lab) < self.num_classes).sum()) for lab in labels)

    def level_losses(self, out: dict, targets: list[dict], num_masks: float,
                     generator=None) -> dict[str, torch.Tensor]:
        c = self.cfg
        logits, masks = out["pred_logits"], out["pred_masks"]
        indices = self.matcher(out, targets, generator)
        # class loss: matched queries get their target class, the rest "no object"
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.long,
                                    device=logits.device)
        for b, (q, t) in enumerate(indices):
            target_classes[b, q.to(logits.device)] = targets[b]["labels"][t]
        loss_ce = F.cross_entropy(logits.float().transpose(1, 2), target_classes,
                                  self.empty_weight.to(logits.device))
        # mask losses on matched pairs, at importance-sampled points
        src = torch.cat([masks[b, q] for b, (q, _) in enumerate(indices)])[:, None]
        tgt = torch.cat([targets[b]["masks"][t] for b, (_, t) in enumerate(indices)])[:, None]
        if src.shape[0] == 0:
            zero = masks.sum() * 0
            return {"loss_ce": loss_ce * c.class_weight, "loss_mask": zero, "loss_dice": zero}
        with torch.no_grad():
            coords = uncertain_points(src.float(), c.num_points, c.oversample_ratio,
                                      c.importance_sample_ratio, generator)
            point_labels = point_sample(tgt.to(src.dtype), coords)[:, 0]
        point_logits = point_sample(src.float(), coords)[:, 0]
        return {"loss_ce": loss_ce * c.class_weight,
                "loss_mask": sigmoid_ce(point_logits, point_labels.float(), num_masks) * c.mask_weight,
                "loss_dice": dice(point_logits, point_labels.float(), num_masks) * c.dice_weight}

    def __call__(self, outputs: dict, labels: torch.Tensor, num_masks: float | None = None,
                 generator=None) -> dict[str, torch.Tensor]:
        """outputs of the model in training mode, labels [B, H, W] -> named weighted losses."""
        targets = semantic_targets(labels, self.num_classes)
        if num_masks is None:
            num_masks = max(float(self.count_masks(labels)), 1.0)
        losses = self.level_losses(outputs, targets, num_masks, generator)
        if self.cfg.deep_supervision:
            for i, aux in enumerate(outputs.get("aux_outputs", [])):
                for k, v in self.level_losses(aux, targets, num_masks, generator).items():
                    losses[f"{k}_{i}"] = v
        if self.cfg.rba != "none":
            # released: "outlier" is one of the criterion's losses, so deep supervision applies it
            # to every auxiliary prediction too (loss_rba_0 = the query-only one), weight 1 each
            levels = [("loss_rba", outputs)]
            if self.cfg.deep_supervision and self.cfg.rba_aux:
                levels += [(f"loss_rba_{i}", aux)
                           for i, aux in enumerate(outputs.get("aux_outputs", []))]
            for name, out in levels:
                losses[name] = self.cfg.rba_weight * rba_loss(
                    out["pred_logits"], out["pred_masks"], labels, self.outlier_label,
                    self.ignore_label, self.cfg.rba, self.cfg.rba_alpha)
        return losses
