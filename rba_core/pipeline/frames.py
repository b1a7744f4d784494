"""Run a backend on camera frames of any size: batching, and resizing for fixed-size engines.

ONNX / TensorRT graphs have a static input shape. Frames of another size are resized to it
(bilinear) and the outputs resized back (nearest for class ids, bilinear for scores), so callers
always get maps at the frame's own resolution.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..runtime import Backend, FrameOutputs


def to_chw_batch(frames: list[np.ndarray], size: tuple[int, int] | None) -> np.ndarray:
    """RGB uint8 [H, W, 3] frames (all one size after optional resize) -> [B, 3, H, W]."""
    if size is not None:
        h, w = size
        frames = [f if f.shape[:2] == (h, w) else
                  cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames]
    return np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2))


def resize_outputs(out: FrameOutputs, shape: tuple[int, int]) -> FrameOutputs:
    """Outputs at engine size -> frame size ``shape`` (H, W)."""
    if out.class_ids.shape == tuple(shape):
        return out
    h, w = shape
    ids = cv2.resize(out.class_ids.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    conf = cv2.resize(out.confidence, (w, h), interpolation=cv2.INTER_LINEAR)
    scores = {k: cv2.resize(v, (w, h), interpolation=cv2.INTER_LINEAR)
              for k, v in out.scores.items()}
    return FrameOutputs(ids.astype(out.class_ids.dtype), conf, scores)


def infer_frames(backend: Backend, frames: list[np.ndarray]) -> list[FrameOutputs]:
    """Outputs for each RGB uint8 [H, W, 3] frame, at that frame's resolution.

    Frames are batched up to the backend's fixed batch size (padding the last batch by repeating
    a frame); a backend without a fixed size gets one batch per distinct frame size.
    """
    info = backend.info
    results: list[FrameOutputs | None] = [None] * len(frames)
    if info.input_size is not None:
        groups = {None: list(range(len(frames)))}
    else:
        groups: dict = {}
        for i, f in enumerate(frames):
            groups.setdefault(f.shape[:2], []).append(i)
    step = info.batch_size or max(len(frames), 1)
    for idx in groups.values():
        for s in range(0, len(idx), step):
            chunk = idx[s:s + step]
            batch = [frames[i] for i in chunk]
            if info.batch_size:
                batch += [batch[-1]] * (info.batch_size - len(batch))
            result = backend.infer(to_chw_batch(batch, info.input_size))
            for j, i in enumerate(chunk):
                results[i] = resize_outputs(result.frame(j), frames[i].shape[:2])
    return results  # type: ignore[return-value]
