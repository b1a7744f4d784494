"""Bag plumbing shared by replay, calibration and bag-from-images (rosbags, no ROS install).

- ``output_typestore()``: ROS 2 Jazzy types plus our vision_msgs 4.x definitions (same RIHS01
  hashes as the real package), so Detection2DArray / LabelInfo can be written and read back.
- ``to_message()``: the ROS-free dicts of ``pipeline.messages`` -> rosbags message objects.
- Topic naming: an image topic ``/front/image_raw`` (or ``/front/image_raw/compressed``) belongs
  to the camera namespace ``/front``; its CameraInfo is ``/front/camera_info`` and the node's
  outputs go to ``/front/rba/<name>`` (``pipeline.messages.output_topic``; the namespace template
  ``OUTPUT_NAMESPACE`` is overridable).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..errors import RbaError
from ..pipeline import messages

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_MESSAGE_TYPE = "tf2_msgs/msg/TFMessage"
TF_STATIC_TOPIC = "/tf_static"
OUTPUT_NAMESPACE = "{camera}/" + messages.OUTPUT_NAMESPACE  # a camera's outputs: /CAM/rba/...
VISION_MSGS = Path(__file__).resolve().parent.parent / "ros_msgs" / "vision_msgs" / "msg"
STORAGES = ("mcap", "sqlite3")


class BagError(RbaError):
    """A bag cannot be read or written (missing, unknown format, no such topic)."""


@functools.lru_cache(maxsize=1)
def output_typestore():
    """Jazzy typestore + vision_msgs (registered from ``rba_core/ros_msgs/vision_msgs/msg``)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(VISION_MSGS.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    store.register(types)
    return store


def to_message(store, msgtype: str, value):
    """Nested dict (field -> value, numpy arrays for primitive sequences) -> message object.

    Missing or unknown fields raise ``KeyError`` naming them (a builder bug, not user input).
    """
    from rosbags.typesys.base import Nodetype

    if not isinstance(value, dict):
        return value  # already a message object
    _, fields = store.fielddefs[msgtype]
    extra = set(value) - {name for name, _ in fields}
    if extra:
        raise KeyError(f"{msgtype} has no field(s) {sorted(extra)}")
    kwargs = {}
    for name, (node, desc) in fields:
        if name not in value:
            raise KeyError(f"{msgtype}.{name} is missing")
        v = value[name]
        if node == Nodetype.NAME:
            v = to_message(store, desc, v)
        elif node in (Nodetype.SEQUENCE, Nodetype.ARRAY):
            (sub_node, sub_desc), _ = desc
            if sub_node == Nodetype.NAME:
                v = [to_message(store, sub_desc, x) for x in v]
            elif sub_desc[0] != "string":
                dtype = "uint8" if sub_desc[0] in ("char", "byte", "octet") else sub_desc[0]
                v = np.ascontiguousarray(v, dtype=np.dtype(dtype)).reshape(-1)
        kwargs[name] = v
    return store.types[msgtype](**kwargs)


def serialize(store, msgtype: str, value) -> memoryview:
    """Dict or message -> little-endian CDR bytes (what rclpy would publish)."""
    return store.serialize_cdr(to_message(store, msgtype, value), msgtype)


# -- topics ------------------------------------------------------------------------------------
def camera_namespace(image_topic: str) -> str:
    """'/front/image_raw' -> '/front'; '/front/image_raw/compressed' -> '/front'; '/image' -> ''."""
    parts = image_topic.rstrip("/").split("/")
    if len(parts) > 2 and parts[-1] == "compressed":
        parts = parts[:-1]
    return "/".join(parts[:-1])


def camera_info_topic(image_topic: str) -> str:
    return f"{camera_namespace(image_topic)}/camera_info"


def output_topic(image_topic: str, name: str, template: str = OUTPUT_NAMESPACE) -> str:
    """'/front/image_raw', 'semantic' -> '/front/rba/semantic' (always absolute in a bag)."""
    return "/" + messages.output_topic(camera_namespace(image_topic), name, template).lstrip("/")


def output_namespace(image_topic: str, template: str = OUTPUT_NAMESPACE) -> str:
    """'/front/image_raw' -> '/front/rba'."""
    return output_topic(image_topic, "", template)


def resolve_topic(name: str, image_topic: str) -> str:
    """An absolute topic stays as is; a relative one lives in the image's camera namespace."""
    return name if name.startswith("/") else f"{camera_namespace(image_topic)}/{name}"


def qos_profile(transient_local: bool = False) -> list:
    """QoS as rosbag2 records it: the node's outputs (reliable, depth 1, volatile) and its
    ``labels`` topic (the same, transient-local)."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)

    zero = QosTime(0, 0)
    durability = QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE
    return [Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, durability,
                zero, zero, QosLiveliness.AUTOMATIC, zero, False)]


# -- storage formats ---------------------------------------------------------------------------
def storage_plugin(name: str):
    from rosbags.rosbag2 import StoragePlugin

    if name not in STORAGES:
        raise BagError(f"unknown storage {name!r} (choose from {', '.join(STORAGES)})")
    return StoragePlugin.MCAP if name == "mcap" else StoragePlugin.SQLITE3


def storage_suffix(name: str) -> str:
    return ".mcap" if name == "mcap" else ".db3"


def open_reader(path: str | Path):
    """An open rosbags ``AnyReader`` on a rosbag2 folder, a .mcap / .db3 file or a ROS 1 .bag."""
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.typesys import Stores, get_typestore

    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is a folder without metadata.yaml: not a rosbag2 bag (if a "
                       f"replay was killed before its first segment closed, it holds nothing)")
    reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY))
    try:
        reader.open()
    except (AnyReaderError, Exception) as exc:  # rosbags raises several error types
        raise BagError(f"cannot open bag {path}: {exc}") from None
    return reader


def image_connections(reader, topics: list[str] | None) -> dict[str, list]:
    """Image / CompressedImage topic -> its connections (every image topic when none given)."""
    found: dict[str, list] = {}
    for conn in reader.connections:
        if conn.msgtype in IMAGE_TYPES:
            found.setdefault(conn.topic, []).append(conn)
    if not topics:
        if not found:
            raise BagError("the bag has no sensor_msgs/Image or CompressedImage topic")
        return dict(sorted(found.items()))
    missing = [t for t in topics if t not in found]
    if missing:
        have = ", ".join(sorted(found)) or "none"
        raise BagError(f"no image topic {missing[0]} in the bag (image topics: {have})")
    return {t: found[t] for t in topics}


def ros2_converter(reader, msgtype: str):
    """Raw bytes of ``reader`` -> ROS 2 CDR: identity for rosbag2, migration for ROS 1 bags."""
    if reader.is2:
        return bytes
    from rosbags.convert.converter import generate_message_converter

    convert = generate_message_converter(reader.typestore, output_typestore(), msgtype, msgtype,
                                         {}, src_is2=False, dst_is2=True)
    return lambda raw: bytes(convert(raw))
