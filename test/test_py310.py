"""The code runs on Python 3.10 (ROS 2 Humble, Ubuntu 22.04): vermin finds no construct, module
or function newer than 3.10 in the sources (the venv here is 3.11, so nothing else would)."""
import importlib.util
import subprocess
import sys

import pytest

from conftest import REPO

SOURCES = ["rba_core", "rba_ros", "launch", "test", "bench", "setup.py"]


def vermin(*paths) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())",
                           "--target=3.10-", "--violations", "--no-tips", "--no-parse-comments",
                           *map(str, paths)], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module", autouse=True)
def have_vermin():
    if importlib.util.find_spec("vermin") is None:
        pytest.skip("vermin not installed (pip install -e '.[dev]')")


def test_sources_need_at_most_python_3_10():
    r = vermin(*SOURCES)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_vermin_flags_what_3_10_lacks(tmp_path):
    """The check can fail: 3.11's tomllib and except* are reported."""
    bad = tmp_path / "new.py"
    bad.write_text("import tomllib\ntry:\n    pass\nexcept* ValueError:\n    pass\n")
    r = vermin(bad)
    assert r.returncode != 0 and "tomllib" in r.stdout, r.stdout + r.stderr
