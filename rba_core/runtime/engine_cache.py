"""On-disk cache of built artefacts: TensorRT engines and ONNX exports of our checkpoints.

Every entry follows one protocol (``CacheEntry``): ``<name>`` (plus any file its build writes
beside it, e.g. ONNX external data) and ``<name>.key`` (JSON: the key it was built for, the size
and sha256 of each file). An entry is used only if all of that matches, else it is rebuilt,
never loaded (a warning says why). A build runs under ``<name>.lock`` (``files.file_lock``) in a
private ``.<name>.*.tmp`` folder; what it wrote is checked (``validate``), then published by
rename (fsync'ed), the key file last. README "Caches" and "Cache safety" give the whole protocol,
the engine key (``EngineKey``: a change rebuilds and removes the stale engine) and the location.
No TensorRT import here: this logic is tested without it.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..files import (atomic_write, disk_full_reason, file_lock, file_sha256, publish,
                     write_error)
from .base import BackendError

log = logging.getLogger(__name__)

SCHEMA = 1  # bump when the way engines are built changes (builder flags, precision pinning)
KEY_SUFFIX, LOCK_SUFFIX = ".key", ".lock"


def cache_root() -> Path:
    if os.environ.get("RBA_CACHE_DIR"):
        return Path(os.environ["RBA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rba_ros"


class CacheEntry:
    """One cached artefact ``path`` built for ``key`` (a JSON-able dict); ``info`` is recorded
    in the key file without being compared."""

    def __init__(self, path: str | Path, key: dict, info: dict | None = None):
        self.path, self.key, self.info = Path(path), key, dict(info or {})
        self.key_path = self.path.with_name(self.path.name + KEY_SUFFIX)
        self.lock_path = self.path.with_name(self.path.name + LOCK_SUFFIX)

    def _record(self) -> dict | None:
        """The key file's content (None: no key file; {}: unreadable)."""
        try:
            record = json.loads(self.key_path.read_text())
            return record if isinstance(record, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _files(record: dict | None) -> dict[str, dict]:
        """The key file's {file name: {size, sha256}} (plain names in the entry's folder)."""
        files = (record or {}).get("files")
        if not isinstance(files, dict) or not all(
                isinstance(v, dict) and "/" not in k and not k.startswith(".")
                for k, v in files.items()):
            return {}
        return files

    def check(self) -> tuple[str | None, str | None]:
        """(why the entry is unusable or None, the artefact's recorded sha256)."""
        record = self._record()
        if record is None:
            return ("its key file is missing" if self.path.exists() else "not built yet"), None
        files, key = self._files(record), record.get("key")
        if self.path.name not in files or not isinstance(key, dict):
            return "its key file is unreadable", None
        if key != self.key:
            changed = sorted(k for k in set(key) | set(self.key) if key.get(k) != self.key.get(k))
            return f"its key file is stale ({', '.join(changed)} changed)", None
        for name, want in files.items():
            path = self.path.parent / name
            try:
                size = path.stat().st_size
            except OSError:
                return f"{name} is missing", None
            if size != want.get("size"):
                return f"{name} is truncated or changed ({size} bytes, built {want.get('size')})", \
                    None
            if file_sha256(path) != want.get("sha256"):
                return f"{name} is corrupted (sha256 differs from the key file's)", None
        return None, files[self.path.name].get("sha256")

    def get_or_build(self, build: Callable[[Path], None],
                     validate: Callable[[Path], None] | None = None,
                     accept: Callable[[Path], bool] | None = None) -> tuple[Path, bool]:
        """(path, built?): the entry if it checks out, else built, validated and published.

        ``build(out)`` writes the artefact to ``out`` (the entry's name, in a private folder;
        other files it writes there are published with it). ``validate(out)`` raises if the
        result is unusable (nothing is published then). ``accept(path)`` is the caller's own
        load of a cached entry (e.g. deserializing an engine); False means rebuild.
        """
        reason, digest = self.check()
        rejected = None
        if reason is None:
            if accept is None or accept(self.path):
                log.info("using cached %s", self.path)
                return self.path, False
            reason, rejected = "its loader rejected it", digest
        try:
            with file_lock(self.lock_path) as locked:
                again, digest = self.check()  # another process may have built it meanwhile
                if again is None and digest != rejected:
                    if accept is None or accept(self.path):
                        log.info("using %s, just built by another process", self.path)
                        return self.path, False
                    again = "its loader rejected it"
                reason = again or reason
                if reason == "not built yet":
                    log.info("building %s (once)", self.path)
                else:
                    log.warning("cached %s is unusable (%s): rebuilding it", self.path, reason)
                self._build(build, validate, locked)
        except OSError as exc:  # a read-only or full cache folder: one line, not a traceback
            if isinstance(exc, PermissionError) or disk_full_reason(exc):
                raise write_error(exc, self.path, "; set RBA_CACHE_DIR to a writable folder "
                                  "with space") from exc
            raise
        return self.path, True

    def _build(self, build: Callable[[Path], None], validate, locked: bool) -> None:
        """Build in a temporary folder, validate, publish the files, then the key file."""
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        prefix = f".{self.path.name}."
        if locked:  # only killed builds of this entry can have left a folder
            for stale in glob.glob(glob.escape(str(folder / prefix)) + "*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix=prefix, suffix=".tmp", dir=folder) as tmp:
            out = Path(tmp) / self.path.name
            build(out)
            if not out.is_file():
                raise BackendError(f"building {self.path} wrote no file")
            if validate is not None:
                validate(out)
            files = {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
                     for p in sorted(Path(tmp).iterdir()) if p.is_file()}
            old = self._files(self._record())
            self.key_path.unlink(missing_ok=True)  # the entry is invalid until its new key lands
            for name in set(old) - set(files) - {self.key_path.name}:
                (folder / name).unlink(missing_ok=True)
            for name in files:
                publish(Path(tmp) / name, folder / name)
        record = {"key": self.key, "files": files, **self.info}
        atomic_write(self.key_path, json.dumps(record, indent=1, sort_keys=True).encode(),
                     sync=True)

    def remove(self) -> None:
        """Delete the artefact, its other files and its key file."""
        for name in {self.path.name, *self._files(self._record())} - {self.key_path.name}:
            (self.path.parent / name).unlink(missing_ok=True)
        self.key_path.unlink(missing_ok=True)


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
    """``<dir>/<onnx stem>-<key digest>.engine`` + its ``.engine.key`` (``CacheEntry``)."""

    def __init__(self, directory: str | Path | None = None):
        self.dir = Path(directory) if directory else cache_root() / "engines"

    def path(self, key: EngineKey, onnx_path: str | Path) -> Path:
        return self.dir / f"{Path(onnx_path).stem}-{key.digest()}.engine"

    def entry(self, key: EngineKey, onnx_path: str | Path) -> CacheEntry:
        return CacheEntry(self.path(key, onnx_path), key.to_dict(),
                          {"onnx": str(Path(onnx_path).resolve())})

    def load(self, key: EngineKey, onnx_path: str | Path) -> bytes | None:
        """The cached engine for ``key``, or None (missing, stale or corrupted)."""
        entry = self.entry(key, onnx_path)
        return entry.path.read_bytes() if entry.check()[0] is None else None

    def get_or_build(self, key: EngineKey, onnx_path: str | Path, build: Callable[[], bytes],
                     accept: Callable[[bytes], bool] = lambda data: True) -> tuple[bytes, bool]:
        """(engine bytes, built?): the cached engine if valid and ``accept``-ed, else build
        (under the entry's lock), store and return a new one. ``accept`` is where the caller
        tries to deserialize."""
        loaded = []

        def accept_file(path: Path) -> bool:
            loaded[:] = [path.read_bytes()]
            return accept(loaded[0])

        def build_file(out: Path) -> None:
            log.info("building TensorRT engine for %s (%s); this can take minutes, once",
                     onnx_path, key.precision)
            loaded[:] = [build()]
            out.write_bytes(loaded[0])

        entry = self.entry(key, onnx_path)
        path, built = entry.get_or_build(build_file, accept=accept_file)
        if built:
            log.info("engine cached at %s", path)
            self.prune(key, onnx_path)
        return loaded[0], built

    def prune(self, keep: EngineKey, onnx_path: str | Path) -> list[Path]:
        """Remove stale engines: same ONNX path and precision, another key (an older ONNX,
        TensorRT or GPU). Engines of the other precision stay: both may be in use."""
        removed, source = [], str(Path(onnx_path).resolve())
        keep_path = self.path(keep, onnx_path)
        for key_file in self.dir.glob(f"{glob.escape(Path(onnx_path).stem)}-*.engine{KEY_SUFFIX}"):
            engine = key_file.with_name(key_file.name[:-len(KEY_SUFFIX)])
            try:
                meta = json.loads(key_file.read_text())
                stale = (meta.get("onnx") == source
                         and meta.get("key", {}).get("precision") == keep.precision)
            except (OSError, ValueError, AttributeError):
                continue
            if stale and engine != keep_path:
                CacheEntry(engine, {}).remove()
                removed.append(engine)
        return removed
