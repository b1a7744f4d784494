"""Configuration as data: dataclasses <-> plain dicts / YAML, checked on load.

Every configuration in rba_core (model, training, pipeline, the CLI's runs) is a tree of
dataclasses. ``from_dict`` builds one from a mapping and raises :class:`ConfigError` naming the
dotted path of the first bad field (unknown key, wrong type, value out of range); a config built in
code calls ``check_fields`` in its ``__post_init__`` for the same type checks. ``to_dict`` is the
exact inverse, so a config round-trips through YAML and through checkpoint metadata.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from .errors import RbaError

T = TypeVar("T")


class ConfigError(RbaError, ValueError):
    """A configuration value is invalid; the message starts with the dotted field path."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.detail = message
        super().__init__(f"{path}: {message}" if path else message)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Convert ``value`` to type annotation ``tp`` or raise ConfigError at ``path``."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except ConfigError:
                pass
        raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(path, f"must be one of {list(allowed)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(path, f"expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, _join(path, i)) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_convert(item, v, _join(path, i)) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {value!r}")
        args = get_args(tp)
        vt = args[1] if args else Any
        return {str(k): _convert(vt, v, _join(path, k)) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {value!r}")
        return value
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and bad values name their field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(_join(path, unknown[0]),
                          f"unknown field (known: {', '.join(sorted(fields))})")
    kwargs = {name: _convert(hints[name], data[name], _join(path, name))
              for name in fields if name in data}
    try:
        obj = cls(**kwargs)
    except ConfigError as exc:  # from cls.__post_init__: its path is relative to cls
        if path:
            raise ConfigError(_join(path, exc.path), exc.detail) from None
        raise
    except TypeError as exc:  # a required field is missing
        raise ConfigError(path or cls.__name__, str(exc)) from None
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML/JSON-safe) form of a dataclass tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping with a one-line error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path} must hold a mapping at the top level")
    return data


def nest(flat: dict[str, Any]) -> dict:
    """Dotted keys (ROS parameter names) -> a tree: {'a.b': 1} -> {'a': {'b': 1}}."""
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = str(key).split(".")
        d = out
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = value
    return out


def check_fields(obj: Any) -> None:
    """Type-check (and convert, e.g. int -> float) every field of a dataclass in place."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        setattr(obj, f.name, _convert(hints[f.name], getattr(obj, f.name), f.name))


def check(condition: bool, path: str, message: str) -> None:
    """Raise ConfigError(path, message) unless ``condition`` holds (for __post_init__ checks)."""
    if not condition:
        raise ConfigError(path, message)


def param(default: Any, doc: str, bounds: tuple | None = None, live: bool = False) -> Any:
    """A documented config field: ``doc``, the closed ``bounds`` (lo, hi; hi None = no upper
    bound; on a list: every item) and ``live`` make the ROS parameter descriptors and the README
    table of the node; ``check_bounds`` enforces the bounds."""
    meta = {"doc": doc, "bounds": bounds, "live": live}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def bounds_text(bounds: tuple) -> str:
    """(1, 16) -> '[1, 16]'; (32, None) -> '>= 32'."""
    lo, hi = (f"{v:.6g}" if isinstance(v, float) else str(v) for v in bounds)
    return f">= {lo}" if bounds[1] is None else f"[{lo}, {hi}]"


def check_bounds(obj: Any) -> None:
    """ConfigError naming the first field (or list item) of ``obj`` outside its ``param`` bounds."""
    for f in dataclasses.fields(obj):
        if not f.metadata.get("bounds"):
            continue
        (lo, hi), value = f.metadata["bounds"], getattr(obj, f.name)
        for i, v in enumerate(value) if isinstance(value, list) else [(None, value)]:
            check(lo <= v and (hi is None or v <= hi), f.name if i is None else f"{f.name}.{i}",
                  f"must be {'' if hi is None else 'in '}{bounds_text((lo, hi))}, got {v}")
