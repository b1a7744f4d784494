"""Helpers for tests that race several real processes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO


def race(script: str, args: list[str], tmp: Path, n: int = 2) -> list[subprocess.CompletedProcess]:
    """Run ``n`` copies of ``script`` (``python -c``), released together once all are ready.

    Each gets ``*args, READY, GO``: it touches READY when set up, then waits for GO to exist."""
    go = tmp / "go"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", script, *args, str(tmp / f"ready{i}"),
                               str(go)], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(n)]
    deadline = time.monotonic() + 300
    while not all((tmp / f"ready{i}").exists() for i in range(n)):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            raise AssertionError("a racer did not start:\n" + "\n".join(
                p.communicate()[0] for p in procs))
        time.sleep(0.02)
    go.touch()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out))
    return results
