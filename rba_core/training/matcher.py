"""Hungarian matching of queries to ground-truth masks (Mask2Former's HungarianMatcher).

Cost = class_weight * (-p(class)) + mask_weight * BCE + dice_weight * dice, the mask terms on
the same random points for every query and target; solved with scipy's linear_sum_assignment.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from .points import point_sample


def pairwise_sigmoid_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE of each prediction [N, P] against each target [M, P] -> [N, M]."""
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    cost = torch.einsum("np,mp->nm", pos, targets) + torch.einsum("np,mp->nm", neg, 1 - targets)
    return cost / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss of each prediction [N, P] against each target [M, P] -> [N, M]."""
    probs = logits.sigmoid()
    num = 2 * torch.einsum("np,mp->nm", probs, targets)
    den = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


class HungarianMatcher:
    def __init__(self, class_weight: float = 2.0, mask_weight: float = 5.0,
                 dice_weight: float = 5.0, num_points: int = 12544):
        self.class_weight, self.mask_weight, self.dice_weight = class_weight, mask_weight, dice_weight
        self.num_points = num_points

    def cost_matrix(self, logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                    target_masks: torch.Tensor, generator=None) -> torch.Tensor:
        """One image: logits [Q, K+1], masks [Q, h, w], labels [M], target_masks [M, H, W] -> [Q, M]."""
        cost_class = -logits.float().softmax(-1)[:, labels]
        coords = torch.rand(1, self.num_points, 2, device=masks.device, generator=generator)
        tgt = point_sample(target_masks[:, None].float(),
                           coords.expand(target_masks.shape[0], -1, -1))[:, 0]
        pred = point_sample(masks[:, None].float(), coords.expand(masks.shape[0], -1, -1))[:, 0]
        return (self.class_weight * cost_class + self.mask_weight * pairwise_sigmoid_ce(pred, tgt)
                + self.dice_weight * pairwise_dice(pred, tgt))

    @torch.no_grad()
    def __call__(self, outputs: dict, targets: list[dict], generator=None
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image (query indices, target indices), each sorted by query."""
        indices = []
        for b, tgt in enumerate(targets):
            if len(tgt["labels"]) == 0:
                empty = torch.empty(0, dtype=torch.long)
                indices.append((empty, empty))
                continue
            cost = self.cost_matrix(outputs["pred_logits"][b], outputs["pred_masks"][b],
                                    tgt["labels"], tgt["masks"], generator)
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.long),
                            torch.as_tensor(cols, dtype=torch.long)))
        return indices
