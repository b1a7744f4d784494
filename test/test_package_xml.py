"""package.xml: every ROS package the code imports is declared (and nothing unused), and every key
resolves for Ubuntu noble (Jazzy) and jammy (Humble) in the rosdistro snapshot.

The snapshot is ``../shared/ros/rosdistro`` beside the repository (or ``$RBA_ROSDISTRO_DIR``):
rosdep/{base,python}.yaml hold the system keys, <distro>/distribution.yaml the released ROS
packages. rosdep itself is not needed: the rules it applies are the few below.
"""
from __future__ import annotations

import ast
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from conftest import REPO

DISTROS = {"jazzy": "noble", "humble": "jammy"}
DEPEND_TAGS = ("depend", "exec_depend", "build_depend", "test_depend", "build_export_depend")
# declared without an import: `ros2 launch` itself (the launch file needs it to be run)
TOOLS = {"ros2launch"}


def package_keys() -> dict[str, set[str]]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {tag: {e.text.strip() for e in root.findall(tag)} for tag in DEPEND_TAGS}


@pytest.fixture(scope="module")
def rosdistro() -> Path:
    path = Path(os.environ.get("RBA_ROSDISTRO_DIR", REPO.parent / "shared" / "ros" / "rosdistro"))
    if not (path / "rosdep" / "base.yaml").is_file():
        pytest.skip(f"rosdistro snapshot not found at {path} (set RBA_ROSDISTRO_DIR)")
    return path


@pytest.fixture(scope="module")
def rules(rosdistro) -> dict:
    out = {}
    for name in ("base.yaml", "python.yaml"):
        out.update(yaml.safe_load((rosdistro / "rosdep" / name).read_text()))
    return out


@pytest.fixture(scope="module")
def released(rosdistro) -> dict[str, dict[str, str]]:
    """distro -> {ROS package: release version}."""
    out = {}
    for distro in DISTROS:
        repos = yaml.safe_load((rosdistro / distro / "distribution.yaml").read_text())[
            "repositories"]
        out[distro] = {pkg: (repo.get("release") or {}).get("version", "")
                       for name, repo in repos.items() if repo.get("release")
                       for pkg in repo["release"].get("packages", [name])}
    return out


def resolve(rule, codename: str):
    """rosdep's rule for Ubuntu ``codename`` -> (installer, packages), None when unavailable."""
    rule = (rule or {}).get("ubuntu")
    if isinstance(rule, dict) and not {"pip", "apt", "source"} & rule.keys():
        rule = rule.get(codename, rule.get("*"))  # per-release entries, '*' for the others
    if rule is None:
        return None
    if isinstance(rule, list):
        return ("apt", rule) if rule else None
    installer = next(iter(rule))
    packages = rule[installer].get("packages") if isinstance(rule[installer], dict) else None
    return (installer, packages) if packages else None


def test_every_key_resolves_on_noble_and_jammy(rules, released):
    keys = set().union(*package_keys().values())
    table, missing = [], []
    for key in sorted(keys):
        row = [key]
        for distro, codename in DISTROS.items():
            if key in released[distro]:
                row.append(f"ros-{distro}-{key.replace('_', '-')} {released[distro][key]}")
            elif key in rules and resolve(rules[key], codename):
                installer, pkgs = resolve(rules[key], codename)
                row.append(f"{installer}: {' '.join(pkgs)}")
            else:
                row.append(None)
                missing.append(f"{key} ({distro}/{codename})")
        table.append(row)
    print("\nkey | jazzy/noble | humble/jammy\n" + "\n".join(" | ".join(map(str, r)) for r in table))
    assert not missing, f"keys rosdep cannot resolve: {', '.join(missing)}"


def test_resolver_reads_rules_like_rosdep():
    """The rule shapes of rosdep's yaml files, resolved by hand."""
    assert resolve({"ubuntu": ["python3-numpy"]}, "jammy") == ("apt", ["python3-numpy"])
    assert resolve({"ubuntu": {"pip": {"packages": ["timm"]}}}, "noble") == ("pip", ["timm"])
    per_release = {"ubuntu": {"*": ["python3-torch"], "focal": None}}
    assert resolve(per_release, "noble") == ("apt", ["python3-torch"])
    assert resolve(per_release, "focal") is None
    assert resolve({"debian": ["x"]}, "noble") is None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _message_packages() -> set[str]:
    """Packages of every message type the node builds (rba_core.pipeline.messages), nested
    types included, from the generated classes (rosidl_parser definitions)."""
    pytest.importorskip("rclpy", reason="rclpy not installed")
    pytest.importorskip("vision_msgs.msg", reason="vision_msgs not installed")
    from rosidl_parser.definition import AbstractNestedType, NamespacedType

    from rba_core.pipeline.messages import LABELS_TOPIC, OUTPUT_TOPICS
    from rba_ros.conversions import message_class, message_type

    seen, todo = set(), [message_type(t) for t in [*OUTPUT_TOPICS.values(), LABELS_TOPIC[1]]]
    while todo:
        cls = todo.pop()
        seen.add(cls.__module__.split(".")[0])
        for t in cls.SLOT_TYPES:
            t = t.value_type if isinstance(t, AbstractNestedType) else t
            if isinstance(t, NamespacedType):
                todo.append(message_class(tuple(t.namespaces), t.name))
    return seen


def test_declared_ros_packages_are_the_imported_ones(released):
    ros = set(released["jazzy"]) | set(released["humble"])
    files = [*(REPO / "rba_ros").glob("*.py"), *(REPO / "launch").glob("*.py")]
    imported = {m for f in files for m in _imports(f)} & ros
    imported |= _message_packages()
    declared = {k for k in package_keys()["exec_depend"] if k in ros}
    assert imported - declared == set(), "imported but not declared in package.xml"
    assert declared - imported - TOOLS == set(), "declared in package.xml but never imported"


def test_python_keys_cover_the_robot_install_requirements(rules):
    """Each pip/apt key maps onto a requirement of the robot install (setup.py install_requires)
    and no requirement with a key is left to requirements/robot.txt."""
    import re

    tree = ast.parse((REPO / "setup.py").read_text())
    requires = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                    and getattr(n.targets[0], "id", "") == "ROBOT_REQUIRES")
    names = {re.split(r"[<>=\[ ]", r)[0].lower() for r in requires}
    keys = {k for k in package_keys()["exec_depend"] if k.startswith("python3-")}
    by_package = {}
    for key in keys:
        _, pkgs = resolve(rules[key], "noble")
        by_package[key] = pkgs
    pip_names = {p.lower() for k, pkgs in by_package.items() if k.endswith("-pip") for p in pkgs}
    apt_to_pypi = {"python3-numpy": "numpy", "python3-opencv": "opencv-python-headless",
                   "python3-scipy": "scipy", "python3-yaml": "pyyaml", "python3-tqdm": "tqdm",
                   "python3-torch": "torch", "python3-pil": "pillow"}
    covered = pip_names | {apt_to_pypi[k] for k in keys if not k.endswith("-pip")}
    assert covered <= names, f"keys without a requirement: {covered - names}"
    robot_txt = (REPO / "requirements" / "robot.txt").read_text()
    listed = {re.split(r"[<>=\[ ]", line.strip())[0].lower() for line in robot_txt.splitlines()
              if line.strip() and not line.lstrip().startswith("#")}
    assert names - covered <= listed, f"neither a rosdep key nor in robot.txt: {names - covered - listed}"
