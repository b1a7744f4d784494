"""Atomic writes and file digests (rba_core.files), checked against hashlib and the file system."""
import hashlib

import pytest

from rba_core.files import atomic_path, atomic_write, file_sha256


def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "sub" / "state.json"
    atomic_write(path, b"first")
    assert path.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_path(path, sync=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "first"  # the old content survives a failed write
    atomic_write(path, b"second")
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]  # no temp files left


def test_file_sha256_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 40_000  # > one 4 MiB read block
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
