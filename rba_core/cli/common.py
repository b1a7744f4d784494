"""Arguments and helpers shared by several subcommands."""
from __future__ import annotations

import argparse
import dataclasses

from ..model import MODES
from ..runtime import BACKENDS
from ..scoring import SCORES


def add_model_args(p: argparse.ArgumentParser, scores_default: str = "rba") -> None:
    p.add_argument("--model", default=None,
                   help="model file (.safetensors of ours, or .onnx), or preset:NAME for random "
                        "weights; default: the embedded default model")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="runtime (auto: TensorRT, else ONNX Runtime, else torch)")
    p.add_argument("--scores", default=scores_default,
                   help=f"comma-separated anomaly scores ({', '.join(SCORES)})")
    p.add_argument("--inference", choices=MODES, default="exact",
                   help="semantic inference: exact (reference) or fast (1/4 resolution einsum)")
    p.add_argument("--device", default=None, help="torch device (cpu, cuda); default: auto")


def config_from_args(cls, args: argparse.Namespace, **values):
    """A config dataclass from the arguments of the same names, and ``values`` (which win);
    the config checks its fields when created (errors name the field)."""
    names = {f.name for f in dataclasses.fields(cls)} - set(values)
    return cls(**{n: getattr(args, n) for n in names if hasattr(args, n)}, **values)
