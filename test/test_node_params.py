"""Node parameters <-> configs, and the shipped config/perception.yaml (no ROS processes)."""
import dataclasses
import math
import re

import pytest
import yaml

from rba_core.dataconf import ConfigError
from rba_ros.config import NodeConfig
from rba_ros.params import (configure_time_changes, markdown_table, nest, parameter_specs, refusal,
                            split_configs)

from conftest import REPO

YAML = REPO / "config" / "perception.yaml"
NODE_FIELDS = {f.name for f in dataclasses.fields(NodeConfig)}

def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def shipped() -> tuple[dict, str]:
    text = YAML.read_text()
    (params,) = [v["ros__parameters"] for v in yaml.safe_load(text).values()]
    return flatten(params), text


def test_yaml_lists_every_parameter_with_its_default():
    values, text = shipped()
    specs = {s.name: s for s in parameter_specs()}
    assert set(values) <= set(specs), f"unknown keys: {set(values) - set(specs)}"
    for name, spec in specs.items():
        if spec.default == []:  # no ROS type for an empty list: shown commented out
            leaf = name.split(".")[-1]
            assert re.search(rf"^\s*# {re.escape(leaf)}: \[", text, re.M), name
            assert name not in values
        else:
            assert values[name] == spec.default, name


def test_yaml_values_make_valid_configs():
    values, _ = shipped()
    node, pipe = split_configs(values)
    assert node.camera_specs() == [("camera", "raw")]
    assert pipe.obstacles.drivable_classes == ["road"]


def test_fixed_and_live_parameters():
    specs = {s.name: s for s in parameter_specs()}
    live = {n for n, s in specs.items() if s.live}
    # what the issue asks to change live, at least
    assert {"threshold", "score", "overlay_alpha", "obstacles.region",
            "obstacles.drivable_classes", "obstacles.min_area", "max_age"} <= live
    # read by on_configure (NodeConfig) -> settable while unconfigured; autostart only at start
    node_fields = {s.name for s in parameter_specs() if s.name.split(".")[0] in NODE_FIELDS}
    at_configure = {n for n, s in specs.items() if s.read_at == "configure"}
    assert at_configure == node_fields - {"max_age", "autostart"}
    assert {"model_path", "backend", "device", "cameras", "input_size"} <= at_configure
    assert specs["autostart"].read_at == "start"
    assert specs["overlay_alpha"].range == (0.0, 1.0)
    assert specs["ground.pitch"].range == (-math.pi / 2, math.pi / 2)
    assert specs["obstacles.region"].choices == ("all", "adjacent", "within")


def test_configure_time_changes_and_the_refusal():
    specs = parameter_specs()
    current = {s.name: s.default for s in specs}
    new = {"model_path": "preset:tiny", "threshold": 0.3, "backend": "auto", "cameras": ["a"]}
    # threshold is live, backend unchanged: only the two real configure-time changes count
    assert configure_time_changes(specs, current, new) == ["cameras", "model_path"]
    assert configure_time_changes(specs, current, {"max_age": 2.0}) == []
    # the reason names the parameters and the lifecycle steps from the node's state
    active = refusal(["model_path"], active=True)
    assert active.startswith("model_path is read at configure")
    assert "deactivate" in active and "clean up" in active
    inactive = refusal(["cameras", "device"], active=False)
    assert inactive.startswith("cameras, device are read at configure")
    assert "clean up" in inactive and "deactivate" not in inactive


@pytest.mark.parametrize("values, field", [
    ({"obstacles.region": "road"}, "obstacles.region"),
    ({"ground.camera_height": 0.0}, "ground.camera_height"),
    ({"cameras": ["front", "rear:h264"]}, "cameras.1"),
    ({"cameras": []}, "cameras"),
    ({"input_size": [512]}, "input_size"),
    ({"input_qos.depth": 0}, "input_qos.depth"),
    ({"backend": "cuda"}, "backend"),
])
def test_errors_name_the_parameter(values, field):
    with pytest.raises(ConfigError) as err:
        split_configs(values)
    assert err.value.path == field


def test_camera_specs():
    cfg = NodeConfig(cameras=["front", "/rear:compressed", "left:raw"],
                     image_transport="compressed")
    assert cfg.camera_specs() == [("front", "compressed"), ("rear", "compressed"),
                                  ("left", "raw")]


def test_nest_and_table():
    assert nest({"a.b": 1, "a.c": 2, "d": 3}) == {"a": {"b": 1, "c": 2}, "d": 3}
    table = markdown_table()
    assert table.count("\n") == len(parameter_specs()) + 1
    assert "| `obstacles.region` | str | `\"all\"` | yes |" in table
    assert "| `model_path` | str | `\"\"` | at configure |" in table
    assert "| `autostart` | bool | `true` | at start |" in table


def test_readme_parameter_table_is_generated_from_the_specs():
    """README.md's table == markdown_table() (regenerate it after changing a field's param())."""
    lines = (REPO / "README.md").read_text().split("\n")
    start = lines.index(markdown_table().split("\n")[0])
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    assert "\n".join(lines[start:end]) == markdown_table()


ROS_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def test_yaml_values_have_the_ros_type_choices_and_bounds():
    """What `--params-file` hands rclpy: a double parameter given 1 instead of 1.0 is refused."""
    values, _ = shipped()
    specs = {s.name: s for s in parameter_specs()}
    for name, value in values.items():
        spec = specs[name]
        items = value if spec.kind.endswith("[]") else [value]
        assert isinstance(items, list), name
        for v in items:
            assert type(v) is ROS_TYPES[spec.kind.removesuffix("[]")], (name, v)
            if spec.choices:
                assert v in spec.choices, (name, v)
            if spec.range:
                lo, hi = spec.range
                assert lo <= v and (hi is None or v <= hi), (name, v)


@pytest.mark.parametrize("values, field", [
    ({"batch_size": 17}, "batch_size"),
    ({"input_size": [16, 64]}, "input_size.0"),
    ({"max_image_pixels": 64_000_001}, "max_image_pixels"),
    ({"ground.pitch": 2.0}, "ground.pitch"),
    ({"obstacles.max_detections": 0}, "obstacles.max_detections"),
])
def test_bounds_are_checked_by_the_configs(values, field):
    """Outside a parameter's bounds: the same error from the node and from a replay config."""
    with pytest.raises(ConfigError) as err:
        split_configs(values)
    assert err.value.path == field


def test_bounds_agree_with_the_code_behind_them():
    """The node's limits are those of the exporter and the image decoder, not looser."""
    from types import SimpleNamespace

    from rba_core.pipeline.image_msgs import ImageDecodeError, decode_image
    from rba_core.runtime.onnx_export import ExportSpec

    specs = {s.name: s for s in parameter_specs()}
    lo, hi = specs["batch_size"].range
    ExportSpec(64, 64, batch=hi)
    for bad in (lo - 1, hi + 1):
        with pytest.raises(ConfigError):
            ExportSpec(64, 64, batch=bad)
    side = specs["input_size"].range[0]
    ExportSpec(side, side)
    with pytest.raises(ConfigError):
        ExportSpec(side - 1, side)
    most, default = specs["max_image_pixels"].range[1], specs["max_image_pixels"].default

    def image(pixels):  # 1 row, no data: only the size check passes or fails
        return SimpleNamespace(height=1, width=pixels, encoding="mono8", step=pixels, data=b"")
    for limit, kw in ((most, {"max_pixels": most}), (default, {})):  # replay: the default
        with pytest.raises(ImageDecodeError, match="needs"):  # size accepted, data missing
            decode_image(image(limit), **kw)
        with pytest.raises(ImageDecodeError, match="too large"):
            decode_image(image(limit + 1), **kw)
