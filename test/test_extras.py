"""A robot install has the inference dependencies only (setup.py install_requires, package.xml):
everything it runs imports without the [eval] / [train] extras, and what needs them says which
extra to install, in one line."""
import subprocess
import sys

from conftest import REPO

# the extras' packages made unimportable, as on a robot (None in sys.modules -> ImportError)
BLOCK = ("import sys\nfor m in ('matplotlib', 'pycocotools', 'cityscapesscripts', 'sklearn'):\n"
         "    sys.modules[m] = None\n")


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(REPO),
                                                       "PATH": "/usr/bin:/bin"})


def test_robot_side_imports_without_the_extras():
    r = run("import rba_core.cli as c\nc.build_parser()\n"
            "import rba_core.runtime, rba_core.pipeline.perception, rba_core.replay.runner\n"
            "import rba_core.replay.calibrate, rba_core.evaluation.runner\n"
            "import rba_ros.perception_node, rba_ros.demo\nprint('ok')")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


def test_what_needs_an_extra_names_it():
    r = run("from rba_core.cli import main\n"
            "sys.exit(main(['eval', '--dataset', 'road_anomaly', '--root', '.', '--out', '/tmp/x']))")
    assert r.returncode == 2, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'rba_ros[eval]'" in lines[0], r.stderr
    r = run("from rba_core.errors import RbaError, require\n"
            "try:\n    require('pycocotools.coco', 'train')\n"
            "except RbaError as e:\n    print(e)")
    assert "pycocotools is not installed" in r.stdout and "rba_ros[train]" in r.stdout, r.stderr
