"""rba_core.training: closed-set Mask2Former training and RbA fine-tuning with AnomalyMix.

criterion (matcher + losses + RbA loss), anomalymix (outlier bank + paste), data/transforms
(deterministic sample-counter pipeline), optim (scope, AdamW groups, poly), trainer (loop, DDP,
checkpoints, validation). Recipes live in the top-level ``training/`` folder.
"""
from .config import TrainConfig

__all__ = ["TrainConfig"]
