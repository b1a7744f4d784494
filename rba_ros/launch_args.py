"""launch/perception.launch.py's arguments as data (ROS-free, so they are tested without launch).

- ``parameter_overrides``: model_path, device, backend, threshold, input_size given on the
  command line override the params file; empty ones leave it alone.
- ``rviz_config``: config/rba.rviz with its topics moved to the node's namespace and the image
  topic the launch remaps (``namespace:=robot1`` shows /robot1/camera/rba/...).
"""
from __future__ import annotations

import re

from rba_core.imageio import parse_wxh

OVERRIDES = ("model_path", "device", "backend", "threshold", "input_size")


def parameter_overrides(values: dict[str, str]) -> dict:
    """Launch argument strings -> typed node parameters (input_size WxH, as rba --input-size,
    becomes the node's [height, width])."""
    out: dict = {}
    for name in OVERRIDES:
        text = values.get(name, "").strip()
        if not text:
            continue
        if name == "threshold":
            try:
                out[name] = float(text)
            except ValueError:
                raise ValueError(f"threshold:={text}: not a number") from None
        elif name == "input_size":
            out[name] = list(parse_wxh(text, "input_size:="))  # (height, width)
        else:
            out[name] = text
    return out


def resolve(topic: str, namespace: str) -> str:
    """Absolute name of ``topic`` for a node in ``namespace`` (absolute topics stay)."""
    if topic.startswith("/"):
        return topic
    return "/" + "/".join(p for p in (*namespace.strip("/").split("/"), topic.strip("/")) if p)


def rviz_config(text: str, namespace: str = "", image: str = "camera/image_raw") -> str:
    """rba.rviz (written for /camera/...) for a node in ``namespace`` whose camera/image_raw is
    remapped to ``image``."""
    text = re.sub(r"(Value: )/camera/image_raw\b", lambda m: m[1] + resolve(image, namespace),
                  text)
    outputs = resolve("camera/rba", namespace)
    return re.sub(r"(Value: )/camera/rba/", lambda m: f"{m[1]}{outputs}/", text)
