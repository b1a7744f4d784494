"""Point sampling for mask losses (PointRend / Mask2Former): losses on K points, not all pixels."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of x [N, C, H, W] at coords [N, P, 2] ((x, y) in [0, 1]) -> [N, C, P]."""
    out = F.grid_sample(x, 2.0 * coords.unsqueeze(2) - 1.0, mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out.squeeze(3)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Points whose logit is close to 0 are the most uncertain."""
    return -logits.abs()


def uncertain_points(logits: torch.Tensor, num_points: int, oversample_ratio: float,
                     importance_ratio: float, generator: torch.Generator | None = None,
                     ) -> torch.Tensor:
    """Mask2Former's importance sampling on mask logits [N, 1, H, W] -> coords [N, P, 2].

    Draw ``oversample_ratio * P`` random points, keep the ``importance_ratio * P`` most uncertain,
    fill the rest with fresh uniform points.
    """
    n, device = logits.shape[0], logits.device
    num_sampled = int(num_points * oversample_ratio)
    coords = torch.rand(n, num_sampled, 2, device=device, generator=generator)
    point_unc = uncertainty(point_sample(logits, coords))  # [N, 1, S]
    k = int(importance_ratio * num_points)
    idx = torch.topk(point_unc[:, 0, :], k=k, dim=1)[1]  # [N, k]
    chosen = torch.gather(coords, 1, idx.unsqueeze(-1).expand(n, k, 2))
    if num_points - k > 0:
        rand = torch.rand(n, num_points - k, 2, device=device, generator=generator)
        chosen = torch.cat([chosen, rand], dim=1)
    return chosen
