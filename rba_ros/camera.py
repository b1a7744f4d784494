"""One camera's keep-latest slot, its camera model, tracker and counters (ROS-free, thread-safe).

The subscription callback only swaps the newest message into the slot (replacing an unprocessed
one counts as a drop); the inference worker takes it when it is free. So inference never works
through a queue of stale frames, whatever the input rate. CameraInfo becomes a validated
``CameraModel`` when it arrives (not per frame); the obstacle tracker keeps this camera's ids.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from rba_core.pipeline.camera import CameraModel, CameraModelError
from rba_core.pipeline.tracking import ObstacleTracker


@dataclass
class Pending:
    """A received frame waiting for inference."""
    msg: object
    received: float        # time.monotonic() at receipt
    received_ros: int      # node clock (ns) at receipt, for the age of unstamped frames


@dataclass
class CameraStats:
    """Counters since start (totals) and samples since the last diagnostics report."""
    received: int = 0
    processed: int = 0
    dropped_replaced: int = 0   # a newer frame arrived before this one was processed
    dropped_stale: int = 0      # older than max_age when the worker could take it
    conversion_errors: int = 0  # undecodable message (encoding, step, size, corrupt data)
    processing_errors: int = 0  # inference / post-processing failed on a decoded frame
    missing_camera_info: int = 0
    missing_transform: int = 0  # ground_frame set, no transform: ground.* fallback
    inference_ms: deque = field(default_factory=lambda: deque(maxlen=1000))
    e2e_ms: deque = field(default_factory=lambda: deque(maxlen=1000))   # stamp -> published
    node_ms: deque = field(default_factory=lambda: deque(maxlen=1000))  # receipt -> published
    window_start: float = field(default_factory=time.monotonic)
    window_received: int = 0
    window_processed: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_replaced + self.dropped_stale


@dataclass
class WindowSummary:
    """What diagnostics reports for one camera and one period."""
    input_hz: float
    output_hz: float
    inference_ms: tuple[float, float]  # mean, max over the period (nan when none)
    e2e_ms: tuple[float, float]
    node_ms: tuple[float, float]


def _mean_max(samples) -> tuple[float, float]:
    if not samples:
        return float("nan"), float("nan")
    a = np.asarray(samples, np.float64)
    return float(a.mean()), float(a.max())


class CameraSlot:
    """Newest frame + CameraInfo of one camera; counters for diagnostics."""

    def __init__(self, name: str, transport: str):
        self.name = name            # camera namespace ("front"), "" for none
        self.transport = transport  # raw | compressed
        self.stats = CameraStats()
        self.camera: CameraModel | None = None  # from the latest valid CameraInfo
        self.camera_error = ""      # why the latest CameraInfo is not usable ("" = none yet)
        self.transform_error = ""   # why the last ground_frame lookup failed
        self.tracker = ObstacleTracker()
        self._pending: Pending | None = None
        self._lock = threading.Lock()

    def set_camera_info(self, msg) -> bool:
        """Validate a CameraInfo; True when it changes the camera model (rays to compute)."""
        try:
            model = CameraModel.from_msg(msg)
        except CameraModelError as exc:
            self.camera, self.camera_error = None, str(exc)
            return False
        changed, self.camera, self.camera_error = model != self.camera, model, ""
        return changed

    def put(self, msg, received_ros: int) -> None:
        item = Pending(msg, time.monotonic(), received_ros)
        with self._lock:
            if self._pending is not None:
                self.stats.dropped_replaced += 1
            self._pending = item
            self.stats.received += 1
            self.stats.window_received += 1

    def take(self) -> Pending | None:
        with self._lock:
            item, self._pending = self._pending, None
            return item

    def peek_received(self) -> float | None:
        """Receipt time of the pending frame (None when empty), to serve the oldest first."""
        item = self._pending
        return None if item is None else item.received

    def clear(self) -> None:
        with self._lock:
            self._pending = None

    def count(self, counter: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + n)

    def record(self, inference_ms: float, e2e_ms: float, node_ms: float) -> None:
        with self._lock:
            s = self.stats
            s.processed += 1
            s.window_processed += 1
            s.inference_ms.append(inference_ms)
            s.e2e_ms.append(e2e_ms)
            s.node_ms.append(node_ms)

    def summary(self) -> WindowSummary:
        """Rates and latencies since the previous call (then starts a new period)."""
        with self._lock:
            s = self.stats
            now = time.monotonic()
            dt = max(now - s.window_start, 1e-6)
            out = WindowSummary(s.window_received / dt, s.window_processed / dt,
                                _mean_max(s.inference_ms), _mean_max(s.e2e_ms),
                                _mean_max(s.node_ms))
            s.window_start, s.window_received, s.window_processed = now, 0, 0
            s.inference_ms.clear()
            s.e2e_ms.clear()
            s.node_ms.clear()
            return out
