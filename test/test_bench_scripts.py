"""The benchmark scripts stay runnable: each imports what it uses and answers --help.

They are not run by the suite (they measure speed); this catches a rename in rba_core that would
only surface the next time somebody benchmarks.
"""
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPTS = sorted((REPO / "bench").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_answers_help(script):
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
