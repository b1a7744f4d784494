"""ROS parameters <-> the config dataclasses (NodeConfig, PipelineConfig).

Every dataclass field becomes one parameter with a dotted name (``obstacles.min_area``,
``input_qos.depth``), declared with a descriptor: description, range, allowed values, and
read-only for NodeConfig fields (they are used when the node is configured). PipelineConfig fields
and ``max_age`` change live. Values are validated by the dataclasses, so an error names the
parameter.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from rba_core.pipeline.config import PipelineConfig

from .config import NodeConfig

LIVE_NODE_PARAMS = {"max_age"}

# name -> (description, (lo, hi) range or None)
DOCS: dict[str, tuple[str, tuple | None]] = {
    "autostart": ("configure and activate when the node starts (false: wait for a lifecycle "
                  "manager)", None),
    "model_path": ("model file: .safetensors (ours), .onnx (rba export) or preset:NAME (random "
              "weights, tests only); empty = the embedded default model", None),
    "backend": ("inference runtime; auto = TensorRT if usable, else ONNX Runtime (with "
                "input_size or an .onnx model), else torch", None),
    "scores": ("anomaly scores the model computes; `score` can switch live between them", None),
    "inference": ("semantic inference: exact (paper order) or fast (class map at 1/4 "
                  "resolution, then resized)", None),
    "device": ("torch device (cpu, cuda, cuda:1); empty = cuda when available", None),
    "fp16": ("half precision (torch autocast on CUDA, TensorRT FP16 engine)", None),
    "input_size": ("[height, width] the ONNX / TensorRT graph is exported at (frames are "
                   "resized to it and results back); empty = torch at frame size, or the "
                   ".onnx graph's size", None),
    "batch_size": ("fixed batch of an exported graph (cameras batched together)", (1, 64)),
    "threads": ("CPU threads for ONNX Runtime / torch; 0 = runtime default", (0, 256)),
    "cache_dir": ("folder for exported graphs and TensorRT engines; empty = ~/.cache/rba_ros",
                  None),
    "cameras": ("camera namespaces; each subscribes <ns>/<image_topic> and "
                "<ns>/<camera_info_topic>, publishes under <ns>/<output_namespace>; append "
                ":compressed or :raw to override image_transport for one camera", None),
    "image_topic": ("image topic relative to each camera namespace (compressed: "
                    "<image_topic>/compressed)", None),
    "camera_info_topic": ("CameraInfo topic relative to each camera namespace", None),
    "image_transport": ("raw = sensor_msgs/Image, compressed = sensor_msgs/CompressedImage "
                        "(jpeg, png)", None),
    "output_namespace": ("outputs go to <camera>/<output_namespace>/<topic>", None),
    "input_qos.reliability": ("camera subscriptions: best_effort (sensor data) or reliable",
                              None),
    "input_qos.depth": ("camera subscription queue depth (the node keeps only the newest "
                        "frame anyway)", (1, 1000)),
    "output_qos.reliability": ("output publishers: reliable (works with every subscriber) or "
                               "best_effort", None),
    "output_qos.depth": ("output publisher history depth", (1, 1000)),
    "max_age": ("seconds; a frame older than this (header stamp vs node clock, or since "
                "receipt when unstamped) when inference could start is dropped and counted; "
                "0 = never drop", (0.0, 3600.0)),
    "batch_cameras": ("run one inference over the newest frames of all cameras", None),
    "max_image_pixels": ("frames with more pixels are rejected (counted as conversion errors)",
                         (1, 2**31 - 1)),
    "diagnostics_period": ("seconds between /diagnostics messages", (0.05, 3600.0)),
    "score": ("anomaly score driving threshold, obstacles and anomaly output (one of scores)",
              None),
    "threshold": ("score > threshold = anomalous pixel (calibrate with `rba calibrate`)", None),
    "overlay_alpha": ("weight of the colours in semantic_color / anomaly_color", (0.0, 1.0)),
    "heatmap_range": ("[lo, hi] score range of the anomaly_color heat map; unset or [] = per "
                      "frame 1st..99th percentile", None),
    "obstacles.min_area": ("pixels; smaller anomalous components are ignored", (1, 100_000_000)),
    "obstacles.region": ("all; adjacent = components near a drivable pixel; within = only "
                         "pixels inside the drivable area (holes filled)", None),
    "obstacles.drivable_classes": ("class names that make up the drivable area", None),
    "obstacles.adjacency_px": ("pixels; how near `adjacent` components must come to the "
                               "drivable area", (0, 10_000)),
    "obstacles.score": ("detection score: peak or mean anomaly of the component", None),
    "obstacles.max_detections": ("largest components kept per frame", (1, 10_000)),
    "ground.camera_height": ("metres of the camera above the ground plane", (0.001, 1000.0)),
    "ground.pitch": ("radians; camera tilted down is positive", (-math.pi / 2, math.pi / 2)),
    "ground.roll": ("radians; clockwise seen from behind is positive",
                    (-math.pi / 2, math.pi / 2)),
    "ground.point_height": ("metres; obstacle points are lifted this far above the ground so "
                            "Nav2's height band keeps them", (-100.0, 100.0)),
    "ground.max_range": ("metres; farther ground points are dropped", (0.001, 100_000.0)),
    "ground.stride": ("project every n-th obstacle pixel in x and y", (1, 1024)),
}


@dataclass
class ParamSpec:
    name: str            # dotted ROS parameter name
    tp: Any              # annotation: bool, int, float, str, Literal[...], list[...]
    default: Any
    description: str
    read_only: bool
    range: tuple | None = None

    @property
    def choices(self) -> tuple | None:
        return typing.get_args(self.tp) if typing.get_origin(self.tp) is Literal else None

    @property
    def kind(self) -> str:
        """bool | int | float | str | str[] | int[] | float[]"""
        if typing.get_origin(self.tp) is list:
            return f"{typing.get_args(self.tp)[0].__name__}[]"
        return "str" if self.choices else self.tp.__name__


def _walk(obj, prefix: str = ""):
    """(dotted name, annotation, default) of every leaf field of a dataclass instance tree."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        name, value = prefix + f.name, getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _walk(value, name + ".")
        else:
            yield name, hints[f.name], value


def parameter_specs() -> list[ParamSpec]:
    """Every parameter of the node, NodeConfig first."""
    specs = []
    for cls, fixed in ((NodeConfig, True), (PipelineConfig, False)):
        for name, tp, default in _walk(cls()):
            desc, rng = DOCS[name]
            specs.append(ParamSpec(name, tp, default, desc,
                                   fixed and name not in LIVE_NODE_PARAMS, rng))
    return specs


def nest(flat: dict[str, Any]) -> dict:
    """{'a.b': 1} -> {'a': {'b': 1}}"""
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        d = out
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = value
    return out


def split_configs(values: dict[str, Any]) -> tuple[NodeConfig, PipelineConfig]:
    """Flat parameter values -> (NodeConfig, PipelineConfig); ConfigError names the parameter."""
    node_fields = {f.name for f in dataclasses.fields(NodeConfig)}
    tree = nest(values)
    node = {k: v for k, v in tree.items() if k in node_fields}
    pipe = {k: v for k, v in tree.items() if k not in node_fields}
    return NodeConfig.from_dict(node), PipelineConfig.from_dict(pipe)


def markdown_table(specs: list[ParamSpec] | None = None) -> str:
    """README table of the parameters (name, type, default, live, description)."""
    rows = ["| parameter | type | default | live | description |", "|---|---|---|---|---|"]
    for s in specs or parameter_specs():
        default = "unset" if s.default == [] else json.dumps(s.default)
        desc = s.description
        if s.choices and not all(c in desc for c in s.choices):
            desc += f" ({' / '.join(s.choices)})"
        desc = desc.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{s.name}` | {s.kind} | `{default}` | {'no' if s.read_only else 'yes'} "
                    f"| {desc} |")
    return "\n".join(rows)


# -- rclpy side ----------------------------------------------------------------------------------
def declare_all(node, specs: list[ParamSpec] | None = None) -> list[ParamSpec]:
    """Declare every parameter on ``node`` with its descriptor (values from --params-file / -p)."""
    from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                    ParameterType)
    from rclpy.parameter import Parameter

    types = {"bool": ParameterType.PARAMETER_BOOL, "int": ParameterType.PARAMETER_INTEGER,
             "float": ParameterType.PARAMETER_DOUBLE, "str": ParameterType.PARAMETER_STRING,
             "str[]": ParameterType.PARAMETER_STRING_ARRAY,
             "int[]": ParameterType.PARAMETER_INTEGER_ARRAY,
             "float[]": ParameterType.PARAMETER_DOUBLE_ARRAY}
    unset = {"str[]": Parameter.Type.STRING_ARRAY, "int[]": Parameter.Type.INTEGER_ARRAY,
             "float[]": Parameter.Type.DOUBLE_ARRAY}
    specs = specs or parameter_specs()
    for s in specs:
        d = ParameterDescriptor(name=s.name, type=types[s.kind], description=s.description,
                                read_only=s.read_only)
        if s.choices:
            d.additional_constraints = "one of: " + ", ".join(s.choices)
        if s.range and s.kind == "float":
            d.floating_point_range = [FloatingPointRange(from_value=float(s.range[0]),
                                                         to_value=float(s.range[1]))]
        elif s.range and s.kind == "int":
            d.integer_range = [IntegerRange(from_value=int(s.range[0]), to_value=int(s.range[1]),
                                            step=1)]
        # an empty list has no ROS type: declare it typed but unset
        default = unset[s.kind] if s.default == [] else s.default
        node.declare_parameter(s.name, default, d)
    return specs


def read_values(node, specs: list[ParamSpec]) -> dict[str, Any]:
    """Current values of ``specs`` (unset arrays -> [])."""
    out = {}
    for s in specs:
        value = node.get_parameter_or(s.name).value  # unset typed arrays: None
        out[s.name] = [] if value is None else (list(value) if s.kind.endswith("[]") else value)
    return out
