"""Fine-tuning scope, AdamW parameter groups and the poly schedule (Mask2Former's solver)."""
from __future__ import annotations

import torch
from torch import nn

from ..model import Mask2Former

# Which modules train in each fine-tuning scope (paper Table 7).
SCOPE_MODULES = {
    "head": ("decoder.class_embed", "decoder.mask_embed"),  # MLP + linear: 0.21 % on Swin-B
    "decoder": ("decoder",),
    "pixel_decoder": ("pixel_decoder",),
    "full": ("",),
}

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.SyncBatchNorm, nn.InstanceNorm2d,
              nn.LocalResponseNorm)
# Released Mask2Former ``build_optimizer``: these parameter names get weight decay 0; the pixel
# decoder's ``level_embed`` (a bare nn.Parameter, not an nn.Embedding) keeps the normal decay.
NO_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed")


def set_scope(model: Mask2Former, scope: str) -> tuple[int, int]:
    """Freeze everything outside ``scope``; returns (trainable, total) parameter counts."""
    prefixes = SCOPE_MODULES[scope]
    total = trainable = 0
    for name, p in model.named_parameters():
        p.requires_grad = any(name == pre or name.startswith(pre + ".") or pre == ""
                              for pre in prefixes)
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def param_groups(model: nn.Module, lr: float, weight_decay: float, backbone_mult: float,
                 wd_norm: float, wd_embed: float) -> list[dict]:
    """One group per (lr, weight decay), as released Mask2Former: backbone LR multiplier; decay
    ``wd_norm`` on norm layers, ``wd_embed`` on nn.Embedding modules, 0 on Swin's position tables."""
    groups: dict[tuple[float, float], list] = {}
    seen = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            p_lr = lr * backbone_mult if full.startswith("backbone.") else lr
            wd = 0.0 if any(n in p_name for n in NO_DECAY_NAMES) else weight_decay
            if isinstance(module, NORM_TYPES):
                wd = wd_norm
            if isinstance(module, nn.Embedding):
                wd = wd_embed
            groups.setdefault((p_lr, wd), []).append(p)
    return [{"params": ps, "lr": g_lr, "weight_decay": wd, "initial_lr": g_lr}
            for (g_lr, wd), ps in groups.items()]


def poly_lambda(iterations: int, power: float, warmup: int = 0):
    """LR factor at step i: linear warm-up, then (1 - i / iterations) ** power."""
    def factor(i: int) -> float:
        w = min(1.0, (i + 1) / warmup) if warmup else 1.0
        return w * max(0.0, 1.0 - i / iterations) ** power
    return factor


def build_optimizer(model: nn.Module, solver) -> tuple[torch.optim.Optimizer, object]:
    groups = param_groups(model, solver.lr, solver.weight_decay, solver.backbone_lr_multiplier,
                          solver.weight_decay_norm, solver.weight_decay_embed)
    optimizer = torch.optim.AdamW(groups, lr=solver.lr, weight_decay=solver.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, poly_lambda(solver.iterations, solver.poly_power, solver.warmup_iterations))
    return optimizer, scheduler
