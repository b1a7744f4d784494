"""ONNX Runtime / TensorRT without a hand-set input size: one graph per frame size, built on sight.

``load_backend`` returns a ``SizeAdaptiveBackend`` for our ``.safetensors`` (or a preset) on
onnxruntime or tensorrt (``auto`` included) without ``input_size`` (README "Automatic sizes"). The
first frame of each size (or ``prepare(size)``) exports and builds its graph, one build at a time.
``warmup`` says what frames of a size still building do: ``"wait"`` (the CLI) blocks until it is
ready; ``"torch"`` (the node) runs them on eager PyTorch meanwhile, where a failed build leaves
them (``status()['failed']``). Sizes beyond the first ``max_sizes`` and under 32 px run on torch.
``status()`` says what runs (backend, precision, sizes, what is building) for logs and /diagnostics.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Callable

import numpy as np

from .base import Backend, BackendError, InferenceResult, ModelInfo

log = logging.getLogger(__name__)

WARMUPS = ("wait", "torch")
MIN_SIDE = 32  # ExportSpec's smallest side
Size = tuple[int, int]


def size_text(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def backend_status(backend: Backend) -> dict[str, str]:
    """What runs: ``backend``, ``precision``, ``input_size`` (fixed size, 'any', or the sizes a
    size-adaptive backend has engines for) and, while warming up, ``building``."""
    if isinstance(backend, SizeAdaptiveBackend):
        return backend.status()
    size = backend.info.input_size
    return {"backend": backend.name, "precision": getattr(backend, "precision", "fp32"),
            "input_size": size_text(size) if size else "any"}


def status_text(backend: Backend) -> str:
    """One line for logs: 'onnxruntime fp32, input 360x480'."""
    run = backend_status(backend)
    extra = "".join(f"; {k} {run[k]}" for k in ("building", "failed") if run.get(k))
    return f"{run['backend']} {run['precision']}, input {run['input_size']}{extra}"


class SizeAdaptiveBackend:
    """``infer(uint8 [B,3,H,W])`` at any H, W (B = ``batch``): each size runs on its own
    fixed-size engine.

    ``engine``/``precision``: what the engines are (onnxruntime, tensorrt; fp32, fp16, int8);
    ``build(size)`` returns the engine for (H, W) (export + session / engine build: slow);
    ``make_torch()`` the eager backend (called at most once, at creation with ``warmup="torch"``,
    else on the first frame that needs it).
    """

    def __init__(self, engine: str, precision: str, info: ModelInfo, batch: int,
                 build: Callable[[Size], Backend], make_torch: Callable[[], Backend],
                 warmup: str = "wait", max_sizes: int = 4):
        if warmup not in WARMUPS:
            raise BackendError(f"warmup must be one of {', '.join(WARMUPS)}, got {warmup!r}")
        self.name, self.precision, self.warmup, self.max_sizes = engine, precision, warmup, max_sizes
        self.info = replace(info, input_size=None, batch_size=batch)  # any size, fixed batch
        self._build, self._make_torch = build, make_torch
        self._torch: Backend | None = make_torch() if warmup == "torch" else None
        self._engines: dict[Size, Backend] = {}
        self._failed: dict[Size, str] = {}
        self._queue: list[Size] = []          # sizes waiting for the builder, in order
        self._building: Size | None = None
        self._seen: list[Size] = []           # distinct sizes given an engine, first come first
        self._on_torch: set[Size] = set()     # sizes refused an engine (too small, too many)
        self._lock = threading.Condition()
        self._closed = False
        self._worker: threading.Thread | None = None

    # -- what runs ---------------------------------------------------------------------------
    def status(self) -> dict[str, str]:
        with self._lock:
            ready = sorted(self._engines)
            building = [s for s in [self._building, *self._queue] if s is not None]
            failed = dict(self._failed)
        return {"backend": self.name, "precision": self.precision,
                "input_size": ", ".join(map(size_text, ready)) or "any",
                "building": ", ".join(map(size_text, building)),
                "failed": "; ".join(f"{size_text(s)}: {e}" for s, e in failed.items()),
                "warmup": self.warmup}

    def runs(self, size: Size) -> str:
        """Which backend frames of ``size`` run on now ('onnxruntime' or 'torch')."""
        with self._lock:
            return self.name if tuple(size) in self._engines else "torch"

    # -- building ----------------------------------------------------------------------------
    def _eligible(self, size: Size) -> bool:
        """Does ``size`` get its own engine (new sizes count against ``max_sizes``)?"""
        if size in self._seen:
            return True
        if size in self._on_torch:
            return False
        if min(size) < MIN_SIDE or len(self._seen) >= self.max_sizes:
            self._on_torch.add(size)
            why = (f"too small to export (< {MIN_SIDE} px)" if min(size) < MIN_SIDE else
                   f"beyond the first {self.max_sizes} input sizes (fix one size with "
                   f"input_size to resize every frame to it)")
            log.warning("%s frames run on torch: %s", size_text(size), why)
            return False
        self._seen.append(size)
        return True

    def prepare(self, size: Size) -> None:
        """Start building the engine for ``size`` (H, W) if it is new; never blocks."""
        size = (int(size[0]), int(size[1]))
        with self._lock:
            if (size in self._engines or size in self._failed or size == self._building
                    or size in self._queue or self._closed or not self._eligible(size)):
                return
            self._queue.append(size)
            what = ("eager PyTorch runs it meanwhile" if self.warmup == "torch"
                    else "waiting for it")
            log.info("%s: building the %s graph (%s) for this input size; %s", size_text(size),
                     self.name, self.precision, what)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._build_loop, daemon=True,
                                                name="rba-engine-build")
                self._worker.start()

    def _build_loop(self) -> None:
        while True:
            with self._lock:
                if self._closed or not self._queue:
                    self._building = None
                    self._lock.notify_all()
                    return
                size = self._building = self._queue.pop(0)
            t0 = time.monotonic()
            try:
                engine, error = self._build(size), None
            except Exception as exc:  # noqa: BLE001 - reported; this size stays on torch
                engine, error = None, f"{type(exc).__name__}: {exc}".splitlines()[0]
            with self._lock:
                if engine is not None and not self._closed:
                    self._engines[size] = engine
                    log.info("%s: %s %s ready after %.0f s%s", size_text(size), self.name,
                             self.precision, time.monotonic() - t0,
                             "; switching from torch" if self.warmup == "torch" else "")
                elif error is not None:
                    self._failed[size] = error
                    log.error("%s: building the %s graph failed (%s)%s", size_text(size),
                              self.name, error, "; this size stays on torch"
                              if self.warmup == "torch" else "")
                self._building = None
                self._lock.notify_all()

    def wait(self, size: Size | None = None, timeout: float | None = None) -> bool:
        """Block until ``size`` (default: every queued size) is built or failed; True if done."""
        def done():
            if size is None:
                return self._building is None and not self._queue
            s = tuple(size)
            return s in self._engines or s in self._failed or (
                s != self._building and s not in self._queue)
        with self._lock:
            return self._lock.wait_for(done, timeout)

    def close(self) -> None:
        """Stop building (a build in progress finishes in its thread and is discarded)."""
        with self._lock:
            self._closed = True
            self._queue.clear()
            self._engines.clear()
            self._lock.notify_all()

    # -- inference ---------------------------------------------------------------------------
    def _backend_for(self, images: np.ndarray) -> Backend:
        if not isinstance(images, np.ndarray) or images.ndim != 4:
            raise BackendError(f"expected uint8 images [B, 3, H, W], got shape "
                               f"{getattr(images, 'shape', None)}")
        size = (int(images.shape[2]), int(images.shape[3]))
        self.prepare(size)
        if self.warmup == "wait":
            self.wait(size)
        with self._lock:
            engine = self._engines.get(size)
            if engine is None and self.warmup == "wait" and size in self._failed:
                raise BackendError(f"{size_text(size)}: building the {self.name} graph failed "
                                   f"({self._failed[size]})")
        if engine is not None:
            return engine
        if self._torch is None:
            self._torch = self._make_torch()
        return self._torch

    def infer(self, images: np.ndarray) -> InferenceResult:
        return self._backend_for(images).infer(images)

    def infer_modes(self, images: np.ndarray, modes: list[str]) -> dict[str, InferenceResult]:
        return self._backend_for(images).infer_modes(images, modes)
