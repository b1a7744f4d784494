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


# Several processes increment a counter file under the lock; O_EXCL on a marker file fails if
# two of them are ever inside at once (independent of the counter).
LOCKER = """
import os, sys, time
from pathlib import Path
from rba_core.files import file_lock
lock, counter, inside, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
for _ in range(n):
    with file_lock(lock):
        os.close(os.open(inside, os.O_CREAT | os.O_EXCL))
        value = int(counter.read_text())
        time.sleep(0.001)
        counter.write_text(str(value + 1))
        os.unlink(inside)
"""


def test_file_lock_excludes_other_processes_and_leaves_nothing(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    lock, counter, inside = tmp_path / "e.lock", tmp_path / "counter", tmp_path / "inside"
    counter.write_text("0")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", LOCKER, str(lock), str(counter), str(inside),
                               "40"], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert counter.read_text() == "120"  # no lost update
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter"]  # lock file removed


def test_file_lock_is_released_when_its_holder_is_killed(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO
    from rba_core.files import file_lock

    lock = tmp_path / "e.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from rba_core.files import file_lock\n"
         "with file_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)",
         str(lock)], env={"PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    t = time.monotonic()
    with file_lock(lock):  # the kernel released it with the process; the stale file is reused
        assert time.monotonic() - t < 5
    assert not lock.exists()
