"""On-disk cache of built artefacts: TensorRT engines and ONNX exports of our checkpoints.

An engine is only valid for the exact graph, TensorRT version, GPU and precision it was built for,
so its file name carries a digest of ``EngineKey`` (ONNX sha256 + TensorRT version + GPU name +
compute capability + precision). A launch computes the key and loads the matching engine without
rebuilding; any change gives a new key, hence a rebuild, and the stale engines built from the same
ONNX path at the same precision are removed. Files are written atomically (temp file + rename),
so an interrupted build never leaves a truncated engine behind. No TensorRT import here: this logic is tested without it.

Location: ``$RBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/rba_ros``, else ``~/.cache/rba_ros``;
engines under ``engines/``, ONNX exports of ``.safetensors`` models under ``onnx/``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..files import atomic_write

log = logging.getLogger(__name__)

SCHEMA = 1  # bump when the way engines are built changes (builder flags, precision pinning)


def cache_root() -> Path:
    if os.environ.get("RBA_CACHE_DIR"):
        return Path(os.environ["RBA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rba_ros"


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on."""
    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    precision: str           # "fp32" | "fp16" | "int8" | "int8+fp16"
    schema: int = SCHEMA

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:20]

    def to_dict(self) -> dict:
        return asdict(self)


class EngineCache:
    """``<dir>/<onnx stem>-<key digest>.engine`` + a ``.json`` sidecar with the key and source."""

    def __init__(self, directory: str | Path | None = None):
        self.dir = Path(directory) if directory else cache_root() / "engines"

    def path(self, key: EngineKey, onnx_path: str | Path) -> Path:
        return self.dir / f"{Path(onnx_path).stem}-{key.digest()}.engine"

    def load(self, key: EngineKey, onnx_path: str | Path) -> bytes | None:
        """The cached engine for ``key``, or None (missing, or its sidecar names another key)."""
        path = self.path(key, onnx_path)
        try:
            sidecar = json.loads(path.with_suffix(".json").read_text())
            if sidecar.get("key") != key.to_dict():
                return None
            return path.read_bytes()
        except (OSError, ValueError):
            return None

    def store(self, key: EngineKey, onnx_path: str | Path, engine: bytes) -> Path:
        path = self.path(key, onnx_path)
        atomic_write(path, engine)
        sidecar = {"key": key.to_dict(), "onnx": str(Path(onnx_path).resolve())}
        atomic_write(path.with_suffix(".json"), json.dumps(sidecar, indent=1).encode())
        self.prune(key, onnx_path)
        return path

    def prune(self, keep: EngineKey, onnx_path: str | Path) -> list[Path]:
        """Remove stale engines: same ONNX path and precision, another key (an older ONNX,
        TensorRT or GPU). Engines of the other precision stay: both may be in use."""
        removed, source = [], str(Path(onnx_path).resolve())
        keep_path = self.path(keep, onnx_path)
        for sidecar in self.dir.glob(f"{Path(onnx_path).stem}-*.json"):
            engine = sidecar.with_suffix(".engine")
            try:
                meta = json.loads(sidecar.read_text())
                stale = (meta.get("onnx") == source
                         and meta.get("key", {}).get("precision") == keep.precision)
            except (OSError, ValueError, AttributeError):
                continue
            if stale and engine != keep_path:
                for p in (engine, sidecar):
                    p.unlink(missing_ok=True)
                removed.append(engine)
        return removed

    def get_or_build(self, key: EngineKey, onnx_path: str | Path, build: Callable[[], bytes],
                     accept: Callable[[bytes], bool] = lambda data: True) -> tuple[bytes, bool]:
        """(engine bytes, built?): the cached engine if present and ``accept``-ed, else build,
        store and return a new one. ``accept`` is where the caller tries to deserialize."""
        data = self.load(key, onnx_path)
        if data is not None:
            if accept(data):
                log.info("loaded cached engine %s", self.path(key, onnx_path))
                return data, False
            log.warning("cached engine %s is unusable: rebuilding", self.path(key, onnx_path))
        log.info("building TensorRT engine for %s (%s); this can take minutes, once",
                 onnx_path, key.precision)
        data = build()
        path = self.store(key, onnx_path, data)
        log.info("engine cached at %s", path)
        return data, True
