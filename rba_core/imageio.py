"""Image files: read RGB, write RGB/ids, list a folder's frames, with one-line errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import RbaError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 [H, W, 3]; one clear error for missing or undecodable files."""
    path = Path(path)
    if not path.is_file():
        raise RbaError(f"image not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RbaError(f"cannot decode image: {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    if not cv2.imwrite(str(path), img):
        raise RbaError(f"cannot write {path}")


def list_images(inputs: list[str]) -> list[Path]:
    """Files and folders (their images, sorted) -> image paths."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS))
        elif p.is_file():
            out.append(p)
        else:
            raise RbaError(f"no such file or folder: {p}")
    if not out:
        raise RbaError(f"no images found in {', '.join(inputs)}")
    return out


def parse_wxh(spec: str | None, flag: str) -> tuple[int, int] | None:
    """'1280x720' (width x height, as users write it) -> (720, 1280); None/''/'none' -> None."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    try:
        w, h = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise RbaError(f"{flag} must be WIDTHxHEIGHT (e.g. 1280x720), got {spec!r}") from None
    if w <= 0 or h <= 0:
        raise RbaError(f"{flag} must be positive, got {spec!r}")
    return h, w
