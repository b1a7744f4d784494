"""ROS parameters <-> the config dataclasses (NodeConfig, PipelineConfig).

Every dataclass field becomes one parameter with a dotted name (``obstacles.min_area``,
``input_qos.depth``), declared with a descriptor made from the field's ``param`` metadata
(description, bounds, live) and its allowed values. When a value is read (``ParamSpec.read_at``):
PipelineConfig fields and live NodeConfig fields take effect at once; the other NodeConfig fields
are read at configure, so the node takes them while unconfigured and refuses changes while
configured (``configure_time_changes``); ``autostart`` is read once, at node start (read-only).
Values are validated by the dataclasses, so an error names the parameter.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any, Literal

from rba_core.dataconf import bounds_text, nest
from rba_core.pipeline.config import PipelineConfig

from .config import NodeConfig


READ_AT_START = ("autostart",)  # NodeConfig fields read once, when the node starts
READ_AT = {"live": "yes", "configure": "at configure", "start": "at start"}  # README "live" column


@dataclass
class ParamSpec:
    name: str            # dotted ROS parameter name
    tp: Any              # annotation: bool, int, float, str, Literal[...], list[...]
    default: Any
    description: str
    read_at: str         # live | configure | start (see READ_AT)
    range: tuple | None = None  # (lo, hi) closed, hi None = open (lists only; not ROS-checked)

    @property
    def live(self) -> bool:
        return self.read_at == "live"

    @property
    def choices(self) -> tuple | None:
        return typing.get_args(self.tp) if typing.get_origin(self.tp) is Literal else None

    @property
    def kind(self) -> str:
        """bool | int | float | str | str[] | int[] | float[]"""
        if typing.get_origin(self.tp) is list:
            return f"{typing.get_args(self.tp)[0].__name__}[]"
        return "str" if self.choices else self.tp.__name__


def _walk(obj, fixed: bool, prefix: str = "", context: str = ""):
    """ParamSpec of every leaf field of a dataclass instance tree (``context``: parent's doc)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        name, value, meta = prefix + f.name, getattr(obj, f.name), f.metadata
        if dataclasses.is_dataclass(value):
            yield from _walk(value, fixed, name + ".", meta["doc"])
        else:
            read_at = ("live" if not fixed or meta["live"] else
                       "start" if name in READ_AT_START else "configure")
            yield ParamSpec(name, hints[f.name], value,
                            f"{context}: {meta['doc']}" if context else meta["doc"],
                            read_at, meta["bounds"])


def parameter_specs() -> list[ParamSpec]:
    """Every parameter of the node, NodeConfig first."""
    return [*_walk(NodeConfig(), True), *_walk(PipelineConfig(), False)]


def split_configs(values: dict[str, Any]) -> tuple[NodeConfig, PipelineConfig]:
    """Flat parameter values -> (NodeConfig, PipelineConfig); ConfigError names the parameter."""
    node_fields = {f.name for f in dataclasses.fields(NodeConfig)}
    tree = nest(values)
    node = {k: v for k, v in tree.items() if k in node_fields}
    pipe = {k: v for k, v in tree.items() if k not in node_fields}
    return NodeConfig.from_dict(node), PipelineConfig.from_dict(pipe)


def markdown_table(specs: list[ParamSpec] | None = None) -> str:
    """README table of the parameters (name, type, default, live, range, description)."""
    rows = ["| parameter | type | default | live | range | description |",
            "|---|---|---|---|---|---|"]
    for s in specs or parameter_specs():
        default = "unset" if s.default == [] else json.dumps(s.default)
        desc = s.description
        if s.choices and not all(c in desc for c in s.choices):
            desc += f" ({' / '.join(s.choices)})"
        cells = [desc, bounds_text(s.range) if s.range else ""]
        desc, rng = (c.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;") for c in cells)
        rows.append(f"| `{s.name}` | {s.kind} | `{default}` | {READ_AT[s.read_at]} "
                    f"| {rng} | {desc} |")
    return "\n".join(rows)


def configure_time_changes(specs: list[ParamSpec], current: dict[str, Any],
                           new: dict[str, Any]) -> list[str]:
    """Names of the parameters in ``new`` that are read at configure and differ from ``current``
    (setting the value a parameter already has is no change: ``ros2 param load`` of a whole file)."""
    read_at = {s.name: s.read_at for s in specs}
    return sorted(n for n, v in new.items() if read_at[n] != "live" and v != current[n])


def refusal(names: list[str], active: bool) -> str:
    """Why a configured node refuses new values for configure-time parameters ``names``."""
    steps = "deactivate and clean up the node first" if active else "clean up the node first"
    return (f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} read at configure: "
            f"{steps}, then set {'it' if len(names) == 1 else 'them'} and configure "
            f"(the node is {'active' if active else 'inactive'})")


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
    note = {"live": "", "configure": " [read at configure: set it while the node is unconfigured]",
            "start": " [read at node start]"}
    specs = specs or parameter_specs()
    for s in specs:
        # not read_only for configure-time values: ROS cannot toggle that at run time, so the
        # set-parameters callback refuses them while configured
        d = ParameterDescriptor(name=s.name, type=types[s.kind],
                                description=s.description + note[s.read_at],
                                read_only=s.read_at == "start")
        if s.choices:
            d.additional_constraints = "one of: " + ", ".join(s.choices)
        if s.range and s.kind == "float":
            d.floating_point_range = [FloatingPointRange(from_value=float(s.range[0]),
                                                         to_value=float(s.range[1]))]
        elif s.range and s.kind == "int":
            d.integer_range = [IntegerRange(from_value=int(s.range[0]), to_value=int(s.range[1]),
                                            step=1)]
        elif s.range:  # arrays: checked by the dataclass
            d.additional_constraints = f"every item {bounds_text(s.range)}"
        # an empty list has no ROS type: declare it typed but unset
        default = unset[s.kind] if s.default == [] else s.default
        node.declare_parameter(s.name, default, d)
    return specs


def plain(spec: ParamSpec, value) -> Any:
    """A parameter value as the configs take it (unset arrays: None -> []; array.array -> list)."""
    return [] if value is None else (list(value) if spec.kind.endswith("[]") else value)


def read_values(node, specs: list[ParamSpec]) -> dict[str, Any]:
    """Current values of ``specs`` (unset arrays -> [])."""
    return {s.name: plain(s, node.get_parameter_or(s.name).value) for s in specs}
