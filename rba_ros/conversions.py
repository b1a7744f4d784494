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


def _same(v):
    return v


def _converter(t):
    """Function: dict / numpy / plain value -> the field value for rosidl type ``t``."""
    from rosidl_parser.definition import AbstractNestedType, Array, BasicType, NamespacedType

    if isinstance(t, NamespacedType):
        cls = _nested(t)
        return lambda v: to_msg(cls, v) if isinstance(v, dict) else v
    if isinstance(t, AbstractNestedType):
        vt = t.value_type
        if isinstance(vt, NamespacedType):
            cls = _nested(vt)
            return lambda v: [to_msg(cls, x) if isinstance(x, dict) else x for x in v]
        if isinstance(vt, BasicType) and vt.typename in TYPECODES:
            code = TYPECODES[vt.typename]
            dtype = np.dtype(code)
            if isinstance(t, Array):  # fixed size: the generated setter takes numpy
                return lambda v: np.asarray(v, dtype=dtype)

            def sequence(v):
                if isinstance(v, np.ndarray):  # one copy, straight from the array's buffer
                    out = array.array(code)
                    out.frombytes(np.ascontiguousarray(v, dtype).reshape(-1).view(np.uint8))
                    return out
                return array.array(code, v)
            return sequence
        return list
    if isinstance(t, BasicType) and t.typename == "boolean":
        return bool
    if isinstance(t, BasicType) and t.typename in ("float", "double"):
        return float
    if isinstance(t, BasicType) and t.typename != "octet":
        return int
    return _same


@functools.lru_cache(maxsize=None)
def _converters(cls) -> dict:
    """Field name -> converter of a message class (built once per class)."""
    return {name: _converter(t) for name, t in _slots(cls)}


def to_msg(cls, data: dict):
    """Nested dict -> message of class ``cls``. Unknown fields raise KeyError (a builder bug)."""
    msg = cls()
    convert = _converters(cls)
    for name, v in data.items():
        if name not in convert:
            raise KeyError(f"{cls.__name__} has no field {name!r}")
        setattr(msg, name, convert[name](v))
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
