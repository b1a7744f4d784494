"""NodeConfig: what the node loads and subscribes to (fixed while configured), as data.

The post-processing settings live in :class:`rba_core.pipeline.config.PipelineConfig` and may
change live; everything here is read when the node is configured (ROS-free, so it is testable).
Each field's ``param`` metadata (description, bounds) makes its ROS parameter descriptor and its
README row (``rba_ros.params``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rba_core.dataconf import check, check_bounds, from_dict, param
from rba_core.pipeline.image_msgs import DEFAULT_MAX_PIXELS, MAX_PIXELS
from rba_core.pipeline.messages import OUTPUT_NAMESPACE

TRANSPORTS = ("raw", "compressed")
MAX_BATCH = 16  # an exported graph's batch (rba_core.runtime.ExportSpec)
MIN_SIDE = 32   # an exported graph's smallest side (ExportSpec)


@dataclass
class QosConfig:
    reliability: Literal["best_effort", "reliable"] = param(
        "best_effort", "best_effort (sensor data) or reliable (works with every subscriber)")
    depth: int = param(5, "history depth", (1, 1000))

    def __post_init__(self):
        check_bounds(self)


@dataclass
class NodeConfig:
    autostart: bool = param(True, "configure and activate when the node starts (false: wait for "
                                  "a lifecycle manager)")
    model_path: str = param("", "model file: .safetensors (ours), .onnx (rba export) or "
                                "preset:NAME (random weights, tests only); empty = the embedded "
                                "default model")
    backend: Literal["auto", "tensorrt", "onnxruntime", "torch"] = param(
        "auto", "inference runtime; auto = TensorRT if usable, else ONNX Runtime, else torch; "
                "without input_size a .safetensors model is exported at each camera's frame "
                "size, and torch runs that size until its graph is built")
    scores: list[str] = param(["rba", "energy", "max_logit"], "anomaly scores the model "
                              "computes; `score` can switch live between them")
    inference: Literal["exact", "fast"] = param(
        "exact", "semantic inference: exact (paper order) or fast (class map at 1/4 resolution, "
                 "then resized)")
    device: str = param("", "torch device (cpu, cuda, cuda:1); empty = cuda when available")
    fp16: bool = param(False, "half precision (torch autocast on CUDA, TensorRT FP16 engine)")
    int8: bool = param(False, "int8 QDQ graph (ONNX Runtime, TensorRT int8 engine); an fp32 "
                              "model is quantized once into the cache, calibrated on the "
                              "packaged demo frames (your camera's: `rba export --int8 "
                              "--calibration`)")
    input_size: list[int] = param([], "[height, width] the ONNX / TensorRT graph is exported at "
                                  "(frames are resized to it and results back); empty = each "
                                  "frame size gets its own graph (or the .onnx graph's size)",
                                  (MIN_SIDE, None))
    batch_size: int = param(1, "fixed batch of an exported graph (cameras batched together)",
                            (1, MAX_BATCH))
    threads: int = param(0, "CPU threads for ONNX Runtime / torch; 0 = runtime default", (0, 256))
    cache_dir: str = param("", "folder for exported graphs and TensorRT engines; empty = "
                               "~/.cache/rba_ros")
    cameras: list[str] = param(["camera"], "camera namespaces; each subscribes "
                               "<ns>/<image_topic> and <ns>/<camera_info_topic>, publishes under "
                               "<ns>/<output_namespace>; append :compressed or :raw to override "
                               "image_transport for one camera")
    image_topic: str = param("image_raw", "image topic relative to each camera namespace "
                                          "(compressed: <image_topic>/compressed)")
    camera_info_topic: str = param("camera_info", "CameraInfo topic relative to each camera "
                                                  "namespace")
    image_transport: Literal["raw", "compressed"] = param(
        "raw", "raw = sensor_msgs/Image, compressed = sensor_msgs/CompressedImage (jpeg, png, "
                 "tiff)")
    output_namespace: str = param(OUTPUT_NAMESPACE,
                                  "outputs go to <camera>/<output_namespace>/<topic>")
    input_qos: QosConfig = param(QosConfig(), "camera subscriptions (the node keeps only the "
                                              "newest frame anyway)")
    output_qos: QosConfig = param(QosConfig("reliable", 1), "output publishers")
    max_age: float = param(0.5, "seconds; a frame older than this (header stamp vs node clock, or "
                                "since receipt when unstamped) when inference could start is "
                                "dropped and counted; 0 = never drop", (0.0, 3600.0), live=True)
    batch_cameras: bool = param(True, "run one inference over the newest frames of all cameras")
    max_image_pixels: int = param(DEFAULT_MAX_PIXELS, "frames with more pixels are rejected "
                                  "(counted as conversion errors); compressed frames from the "
                                  "size in their header, before decoding", (1, MAX_PIXELS))
    diagnostics_period: float = param(1.0, "seconds between /diagnostics messages",
                                      (0.05, 3600.0))

    def __post_init__(self):
        check_bounds(self)
        check(len(self.input_size) in (0, 2), "input_size", "needs [] or [height, width]")
        check(len(self.cameras) >= 1, "cameras", "needs at least one camera")
        check(len(set(self.cameras)) == len(self.cameras), "cameras", "has duplicates")
        for i, cam in enumerate(self.cameras):
            _, _, transport = cam.partition(":")
            check(transport in ("",) + TRANSPORTS, f"cameras.{i}",
                  f"{cam!r}: the transport after ':' must be raw or compressed")

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
