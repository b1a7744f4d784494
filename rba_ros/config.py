"""NodeConfig: what the node loads and subscribes to (fixed while configured), as data.

The post-processing settings live in :class:`rba_core.pipeline.config.PipelineConfig` and may
change live; everything here is read when the node is configured (ROS-free, so it is testable and
documented from one place).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rba_core.dataconf import check, from_dict

TRANSPORTS = ("raw", "compressed")


@dataclass
class QosConfig:
    reliability: Literal["best_effort", "reliable"] = "best_effort"
    depth: int = 5

    def __post_init__(self):
        check(1 <= self.depth <= 1000, "depth", "must be in [1, 1000]")


@dataclass
class NodeConfig:
    autostart: bool = True                      # configure + activate on start
    model_path: str = ""                        # .safetensors / .onnx / preset:NAME; "" = default
    backend: Literal["auto", "tensorrt", "onnxruntime", "torch"] = "auto"
    scores: list[str] = field(default_factory=lambda: ["rba", "energy", "max_logit"])
    inference: Literal["exact", "fast"] = "exact"
    device: str = ""                            # torch device (cpu, cuda:0); "" = auto
    fp16: bool = False
    input_size: list[int] = field(default_factory=list)  # [H, W] of the ONNX/TensorRT graph
    batch_size: int = 1                         # fixed batch of an exported graph
    threads: int = 0                            # CPU threads (ONNX Runtime / torch); 0 = default
    cache_dir: str = ""                         # export / engine cache; "" = ~/.cache/rba_ros
    cameras: list[str] = field(default_factory=lambda: ["camera"])  # namespaces[:raw|compressed]
    image_topic: str = "image_raw"
    camera_info_topic: str = "camera_info"
    image_transport: Literal["raw", "compressed"] = "raw"
    output_namespace: str = "rba"
    input_qos: QosConfig = field(default_factory=QosConfig)
    output_qos: QosConfig = field(default_factory=lambda: QosConfig("reliable", 1))
    max_age: float = 0.5                        # s; older frames are dropped; 0 = keep all
    batch_cameras: bool = True                  # one inference over all cameras' newest frames
    max_image_pixels: int = 16_777_216          # larger frames are rejected (4096 x 4096)
    diagnostics_period: float = 1.0             # s between /diagnostics messages

    def __post_init__(self):
        check(len(self.input_size) in (0, 2) and all(v > 0 for v in self.input_size),
              "input_size", "needs [] or [height, width] > 0")
        check(self.batch_size >= 1, "batch_size", "must be >= 1")
        check(self.threads >= 0, "threads", "must be >= 0")
        check(len(self.cameras) >= 1, "cameras", "needs at least one camera")
        check(len(set(self.cameras)) == len(self.cameras), "cameras", "has duplicates")
        for i, cam in enumerate(self.cameras):
            _, _, transport = cam.partition(":")
            check(transport in ("",) + TRANSPORTS, f"cameras.{i}",
                  f"{cam!r}: the transport after ':' must be raw or compressed")
        check(self.max_age >= 0, "max_age", "must be >= 0")
        check(self.max_image_pixels >= 1, "max_image_pixels", "must be >= 1")
        check(self.diagnostics_period > 0, "diagnostics_period", "must be > 0")

    @classmethod
    def from_dict(cls, data: dict) -> "NodeConfig":
        return from_dict(cls, data)

    def camera_specs(self) -> list[tuple[str, str]]:
        """[(namespace, transport)] from ``cameras`` ("front", "rear:compressed")."""
        out = []
        for cam in self.cameras:
            name, _, transport = cam.partition(":")
            out.append((name.strip("/"), transport or self.image_transport))
        return out
