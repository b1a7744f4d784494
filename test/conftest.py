"""Shared fixtures. Sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST before anything can start rclpy."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
if "RBA_CACHE_DIR" not in os.environ:  # exported engines of test runs stay out of ~/.cache
    import tempfile
    os.environ["RBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="rba-test-cache-")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

REPO = Path(__file__).resolve().parent.parent
SUMMARY: list[str] = []  # measured steps (colcon build time, shutdown matrix), shown after the run


def pytest_terminal_summary(terminalreporter):
    if SUMMARY:
        terminalreporter.write_sep("-", "measured")
        for line in SUMMARY:
            terminalreporter.write_line(line)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def data_root() -> Path:
    return Path(os.environ.get("RBA_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder (RBA_DATA_DIR, default ../shared/data); skip when absent."""
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set RBA_DATA_DIR)")
    return root


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found (set RBA_DATA_DIR to the shared data folder)")
    return path
