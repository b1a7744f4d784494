"""The ROS-free message dicts of ``rba_core.pipeline.messages`` -> rclpy message objects.

Walks the generated message class's ``SLOT_TYPES`` (rosidl_parser definitions), so every field of
every output type is filled from the same dict that ``rba replay`` writes with rosbags. numpy data
goes in without a per-element Python loop: uint8 sequences become one ``array.array('B')`` (a
memcpy), other numeric sequences and fixed arrays keep their numpy form.
"""
from __future__ import annotations

import array
import functools
import importlib

import numpy as np

# rosidl basic type -> array.array typecode for sequences
TYPECODES = {"uint8": "B", "octet": "B", "char": "B", "int8": "b", "uint16": "H", "int16": "h",
             "uint32": "I", "int32": "i", "uint64": "Q", "int64": "q", "float": "f",
             "double": "d"}


@functools.lru_cache(maxsize=None)
def message_class(namespaces: tuple[str, ...], name: str):
    return getattr(importlib.import_module(".".join(namespaces)), name)


@functools.lru_cache(maxsize=None)
def _slots(cls) -> tuple:
    """((field name, rosidl type), ...) of a message class."""
    return tuple((slot.lstrip("_"), t) for slot, t in zip(cls.__slots__, cls.SLOT_TYPES)
                 if slot != "_check_fields")


def _nested(t):
    return message_class(tuple(t.namespaces), t.name)


def _value(t, v):
    """One field value for rosidl type ``t``."""
    from rosidl_parser.definition import AbstractNestedType, Array, BasicType, NamespacedType

    if isinstance(t, NamespacedType):
        return to_msg(_nested(t), v) if isinstance(v, dict) else v
    if isinstance(t, AbstractNestedType):
        vt = t.value_type
        if isinstance(vt, NamespacedType):
            cls = _nested(vt)
            return [to_msg(cls, x) if isinstance(x, dict) else x for x in v]
        if isinstance(vt, BasicType) and vt.typename in TYPECODES:
            if isinstance(t, Array):  # fixed size: the generated setter takes numpy
                return np.asarray(v, dtype=np.dtype(TYPECODES[vt.typename]))
            code = TYPECODES[vt.typename]
            if isinstance(v, np.ndarray):
                return array.array(code, np.ascontiguousarray(v, np.dtype(code)).tobytes())
            return array.array(code, v)
        return list(v)
    if isinstance(t, BasicType) and t.typename == "boolean":
        return bool(v)
    if isinstance(t, BasicType) and t.typename in ("float", "double"):
        return float(v)
    if isinstance(t, BasicType) and t.typename != "octet":
        return int(v)
    return v


def to_msg(cls, data: dict):
    """Nested dict -> message of class ``cls``. Unknown fields raise KeyError (a builder bug)."""
    msg = cls()
    slots = dict(_slots(cls))
    for name, v in data.items():
        if name not in slots:
            raise KeyError(f"{cls.__name__} has no field {name!r}")
        setattr(msg, name, _value(slots[name], v))
    return msg


def message_type(name: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    pkg, sub, cls = name.split("/")
    return message_class((pkg, sub), cls)


def qos(reliable: bool, depth: int, transient_local: bool = False):
    """A keep-last QoS profile: reliable or best effort, transient-local or volatile."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable
                      else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local
                      else DurabilityPolicy.VOLATILE)
