"""File helpers: atomic writes (a kill never leaves a half-written file), sha256 digests, an
inter-process file lock, and one-line errors for outputs that cannot be written (a full disk).

The lock is ``fcntl.flock`` (Linux, macOS; works across processes and on local filesystems and
NFS). Where ``fcntl`` is missing (Windows) ``file_lock`` does not lock: concurrent builders may
then both build, and atomic publishing plus the checks of the caller still keep readers from
ever using a half-written file.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
from pathlib import Path
from typing import Iterator

from .errors import RbaError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

log = logging.getLogger(__name__)

# errno values that mean "the disk (or the user's share of it) is full"
DISK_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
             errno.EFBIG: "file too large for the filesystem"}


class WriteError(RbaError):
    """An output could not be written (full disk, quota, permissions): one line naming the path."""


def fsync(path: str | Path) -> None:
    """Flush a written file to the disk (before a rename publishes it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(src: str | Path, dst: str | Path) -> None:
    """fsync ``src``, then rename it onto ``dst`` (same filesystem): a reader of ``dst`` sees the
    old file or the whole new one, never a part."""
    fsync(src)
    os.replace(src, dst)


@contextlib.contextmanager
def atomic_path(path: str | Path, sync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; it replaces ``path`` only if the block succeeds
    (``sync``: fsync'ed first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if sync:
            publish(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes, sync: bool = False) -> None:
    with atomic_path(path, sync) as tmp:
        tmp.write_bytes(data)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[bool]:
    """Hold an exclusive inter-process lock on the file ``path`` for the block (yields True;
    False where there is no ``fcntl``, see the module docstring).

    The file is created, and removed on release (so no lock files pile up): a waiter that gets
    the lock of a file meanwhile removed retries on the new one. Released by the kernel when the
    holder dies (even by SIGKILL). A no-op without ``fcntl`` (see the module docstring).
    """
    path = Path(path)
    if fcntl is None:
        yield False
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    log.info("waiting for another process to finish with %s", path)
                    waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            held = os.fstat(fd)
            if current is not None and (current.st_ino, current.st_dev) == (held.st_ino,
                                                                            held.st_dev):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the previous holder removed this file: lock the new one
    try:
        yield True
    finally:
        path.unlink(missing_ok=True)  # still held: a waiter on this file will retry
        os.close(fd)


def disk_full_reason(exc: BaseException) -> str | None:
    """'no space left on device' (or quota) if ``exc`` says the disk is full, else None.

    SQLite reports a full disk as ``sqlite3.OperationalError('database or disk is full')``."""
    if isinstance(exc, OSError):
        return DISK_FULL.get(exc.errno)
    if type(exc).__module__ == "sqlite3" and "disk is full" in str(exc):
        return DISK_FULL[errno.ENOSPC]
    return None


def write_error(exc: BaseException, path: str | Path | None, hint: str = "") -> WriteError:
    """One line: what could not be written, where, and why (``hint``: what to do next)."""
    reason = disk_full_reason(exc)
    if reason is None:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    detail = getattr(exc, "filename", None)
    if path is None:
        path, detail = detail or "an output", None
    where = f" ({detail})" if detail and str(detail) != str(path) else ""
    return WriteError(f"writing {path} failed: {reason}{where}{hint}")


@contextlib.contextmanager
def writing(path: str | Path, hint: str = "") -> Iterator[None]:
    """Turn an OSError (or SQLite's "disk is full") raised while writing ``path`` into a
    ``WriteError`` line naming it."""
    try:
        yield
    except WriteError:
        raise
    except Exception as exc:
        if not (isinstance(exc, OSError) or disk_full_reason(exc)):
            raise
        raise write_error(exc, path, hint) from exc
