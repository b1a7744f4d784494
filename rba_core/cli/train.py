"""``rba train`` / ``rba finetune``: run a YAML recipe (single process or under torchrun)."""
from __future__ import annotations

import argparse

DESCRIPTION = """Run a training recipe (see training/README.md). Works the same under
`torchrun --nproc_per_node N -m rba_core.cli train CONFIG` (DDP: NCCL on GPUs, gloo on CPU)."""


def _add(sub, name: str, help_text: str, finetune: bool) -> None:
    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("config", help="YAML recipe")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUTPUT_DIR/checkpoints/last.pt (exactly where it stopped)")
    p.add_argument("--output-dir", help="override output_dir of the recipe")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set solver.iterations=100 (repeatable)")
    p.set_defaults(func=run, finetune=finetune)


def add_parser(sub) -> None:
    _add(sub, "train", "closed-set Mask2Former training", finetune=False)
    _add(sub, "finetune", "RbA fine-tuning with AnomalyMix (needs model.init)", finetune=True)


def run(args: argparse.Namespace) -> int:
    from ..errors import RbaError
    from ..training.config import TrainConfig
    from ..training.trainer import Trainer

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    cfg = TrainConfig.load(args.config, overrides)
    if args.finetune:
        if not cfg.model.init:
            raise RbaError("finetune needs model.init: the closed-set weights to start from")
        if cfg.loss.rba == "none":
            raise RbaError("finetune needs loss.rba (hinge, mse, l1 or bce)")
    Trainer(cfg, resume=args.resume).run()
    return 0
