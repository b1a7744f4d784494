"""Our checkpoint format: safetensors weights + the ModelConfig in the header metadata.

One ``.safetensors`` file is a complete model: ``load_model(path)`` rebuilds the architecture from
the embedded config and loads the weights strictly (every key present, nothing extra, every shape
right), reporting all offending keys at once.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..dataconf import ConfigError
from ..errors import RbaError
from ..model import Mask2Former, ModelConfig, build_model

FORMAT = "rba_ros.model/1"
SCALE = "::scale"     # suffix of the per-channel scale of an int8-stored weight
INT8_MIN = 4096       # smaller tensors (norms, biases, embeddings) stay fp16


class CheckpointError(RbaError, ValueError):
    """A checkpoint is missing, unreadable or does not match its architecture."""


def save_model(model: Mask2Former, path: str | Path, *, half: bool = False, int8: bool = False,
               info: dict[str, Any] | None = None) -> Path:
    """Write weights + config (+ free-form ``info``) to ``path``.

    fp32 by default; ``half``: floating tensors in fp16; ``int8``: additionally the large
    conv/linear weights as int8 with one fp16 scale per output channel (symmetric max-abs, stored
    as ``<key>::scale``), a quarter of the fp32 size. Loading always gives fp32 tensors.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if int8 and value.is_floating_point() and value.ndim >= 2 and value.numel() >= INT8_MIN:
            scale = value.abs().amax(dim=tuple(range(1, value.ndim)), keepdim=True) / 127.0
            scale = scale.half().float().clamp_min(1e-12)  # the scale as loaded (fp16)
            tensors[key] = torch.round(value / scale).clamp(-127, 127).to(torch.int8)
            tensors[key + SCALE] = scale.flatten().half()
            continue
        if (half or int8) and value.is_floating_point():
            value = value.half()
        tensors[key] = value.contiguous()
    meta = {"format": FORMAT, "config": json.dumps(model.cfg.to_dict()),
            "info": json.dumps(info or {})}
    save_file(tensors, str(path), metadata=meta)
    return path


def _dequantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """int8 weights * per-output-channel scale -> fp32; every other floating tensor -> fp32."""
    out = {}
    for key, value in state.items():
        if key.endswith(SCALE):
            continue
        if (scale := state.get(key + SCALE)) is not None:
            if value.dtype != torch.int8 or scale.numel() != value.shape[0]:
                raise CheckpointError(f"{key}: int8 weight and scale {SCALE} do not match")
            value = value.float() * scale.float().view(-1, *[1] * (value.ndim - 1))
        out[key] = value.float() if value.is_floating_point() else value
    return out


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        if (size := _declared_size(path)) is not None and size > path.stat().st_size:
            raise CheckpointError(f"{path} is truncated: {path.stat().st_size} bytes, its "
                                  f"header describes at least {size}") from None
        raise CheckpointError(f"{path} is not a readable safetensors model ({exc}); models are "
                              "the .safetensors of `rba train` / `rba convert` or the .onnx of "
                              "`rba export`") from None


def _declared_size(path: Path) -> int | None:
    """File size a safetensors header promises (8-byte length, JSON, data), None if unreadable."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= 100_000_000 or f.read(1) != b"{":
                return None
            if 8 + n > path.stat().st_size:  # cut inside the header
                return 8 + n
            header = json.loads(b"{" + f.read(n - 1))
        return 8 + n + max((v["data_offsets"][1] for k, v in header.items()
                            if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def read_config(path: str | Path) -> tuple[ModelConfig, dict]:
    """(ModelConfig, info) embedded in a checkpoint, without loading the weights."""
    path = Path(path)
    meta = _metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has no rba_ros model metadata (format "
                              f"{meta.get('format')!r}); convert it with `rba convert`")
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: config metadata is malformed ({exc})") from None
    except ConfigError as exc:
        raise CheckpointError(f"{path}: embedded config is invalid: {exc}") from None
    return cfg, json.loads(meta.get("info", "{}"))


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError listing every missing, unexpected and mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                    for k, v in expected.items() if k in state and state[k].shape != v.shape)
    if missing or unexpected or shapes:
        lines = []
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("mis-shaped", shapes)):
            if items:
                shown = items[:20] + ([f"... and {len(items) - 20} more"] if len(items) > 20 else [])
                lines.append(f"{len(items)} {title} key(s):\n  " + "\n  ".join(shown))
        raise CheckpointError("weights do not match the architecture:\n" + "\n".join(lines))


def load_checkpoint(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict]:
    """(config, fp32 state dict, info) from one of our files."""
    path = Path(path)
    cfg, info = read_config(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is corrupt ({exc})") from None
    return cfg, _dequantize(state), info


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Mask2Former:
    """Rebuild the model described by ``path`` and load its weights strictly (eval mode)."""
    cfg, state, info = load_checkpoint(path)
    model = build_model(cfg)
    check_state_dict(model, state)
    model.load_state_dict(state, strict=True)
    model.info = info
    return model.eval().to(device)
