"""Read pickled checkpoints (detectron2 ``.pth`` / ``.pkl``) without running code from them.

A pickle can call any Python function while it is read. Only data is accepted here: tensors,
numpy arrays, containers, numbers and strings, which is all a detectron2 checkpoint
(``{"model": state_dict, "iteration": ..., "optimizer": ...}``) needs.

* ``torch.save`` files (zip, or the pre-1.6 format): ``torch.load(weights_only=True)``, with numpy
  arrays (detectron2 model-zoo files hold them) added to its allowlist.
* Plain pickles (``.pkl`` written by ``pickle.dump``): a ``pickle.Unpickler`` whose ``find_class``
  allows only the same numpy / ``OrderedDict`` globals (the "restricting globals" recipe of the
  ``pickle`` documentation).

Anything else is refused with :class:`UnsafeCheckpointError`, naming what the file asks for and how
to extract its weights when the file is trusted.
"""
from __future__ import annotations

import codecs
import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import CheckpointError

_multiarray = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
_multiarray = _multiarray.multiarray

# (module, name) -> object: the only globals a checkpoint may reference (numpy 1 and 2 spellings)
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles (str -> bytes only)
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
}


class UnsafeCheckpointError(CheckpointError):
    """The pickle asks for Python objects beyond plain data; it was not unpickled."""


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _DataUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS` (no persistent ids either)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def _refuse(path: Path, names: list[str], torch_file: bool) -> UnsafeCheckpointError:
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    read = (f"torch.load('{path}', weights_only=False)" if torch_file else
            f"pickle.load(open('{path}', 'rb'), encoding='latin1')")
    return UnsafeCheckpointError(
        f"refusing to unpickle {path}: it needs more than plain weights ({shown}), and unpickling "
        "that could run code from the file. If you trust the file, save its weights alone in a "
        f"separate Python session, e.g. `torch.save({{'model': {{k: torch.as_tensor(v) for k, v "
        f"in {read}['model'].items()}}}}, 'weights.pth')`, and convert weights.pth")


# numeric dtype classes: torch's weights-only unpickler also checks the type of each BUILD
_DTYPE_CLASSES = [type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1",
                                              "u2", "u4", "u8", "?")]


def _torch_safe_globals() -> list:
    return [(obj, f"{module}.{name}") for (module, name), obj in ALLOWED_GLOBALS.items()
            ] + _DTYPE_CLASSES


def _reason(exc: Exception) -> str:
    """The weights-only unpickler's reason, e.g. 'Unsupported global: GLOBAL builtins.exec'."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "unsupported content")
    return line.split(" was not an allowed global")[0]


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_torch_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        names: list[str] = []
        if zipfile.is_zipfile(path):  # lists globals by reading opcodes, without unpickling
            allowed = {f"{m}.{n}" for m, n in ALLOWED_GLOBALS}
            names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(path)
                     if n not in allowed]
        if not names:  # pre-1.6 format: the weights-only unpickler's own reason
            names = [_reason(exc)]
        raise _refuse(path, names, torch_file=True) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({exc})") from None


def load_pickle(path: str | Path) -> Any:
    """The object pickled in ``path`` (CPU tensors / numpy arrays), or raise without running it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if zipfile.is_zipfile(path):
        return _torch_load(path)
    try:
        with open(path, "rb") as f:
            obj = _DataUnpickler(f, encoding="latin1").load()  # latin1: Python 2 era .pkl files
    except _RefusedGlobal as exc:
        raise _refuse(path, [exc.name], torch_file=False) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a readable pickle ({exc})") from None
    if isinstance(obj, int) and obj == torch.serialization.MAGIC_NUMBER:
        return _torch_load(path)  # torch.save before 1.6: the first pickle is the magic number
    return obj
