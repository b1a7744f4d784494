"""Rigid transforms and a static TF tree (the tf2 fallback for a venv without tf2_ros).

A :class:`Pose` maps points of a ``source`` frame into a ``target`` frame:
p_target = R @ p_source + t, as tf2's ``lookup_transform(target, source)`` does. The
:class:`TransformTree` holds parent -> child transforms (TransformStamped: header.frame_id is the
parent, child_frame_id the child, translation + quaternion x, y, z, w), e.g. from ``/tf_static``,
and composes the chain between any two connected frames. On a robot, tf2_ros's buffer (which also
interpolates moving transforms at a stamp) is preferred; this tree covers the static case.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import RbaError


class TransformError(RbaError, LookupError):
    """No transform between two frames (unknown frame, or not connected)."""


@dataclass(frozen=True)
class Pose:
    """p_target = rotation @ p_source + translation (rotation 3x3 row-major, hashable)."""
    rotation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def make(cls, rotation, translation=(0.0, 0.0, 0.0)) -> "Pose":
        r = np.asarray(rotation, np.float64).reshape(3, 3)
        return cls(tuple(map(float, r.ravel())), tuple(map(float, np.ravel(translation))))

    @classmethod
    def from_quaternion(cls, translation, quaternion_xyzw) -> "Pose":
        q = np.asarray(quaternion_xyzw, np.float64)
        if q.shape != (4,) or not np.isfinite(q).all() or np.linalg.norm(q) < 1e-9:
            raise TransformError(f"invalid quaternion {list(q)} (x, y, z, w; non-zero)")
        return cls.make(Rotation.from_quat(q).as_matrix(), translation)

    @property
    def R(self) -> np.ndarray:  # noqa: N802
        return np.asarray(self.rotation, np.float64).reshape(3, 3)

    @property
    def t(self) -> np.ndarray:
        return np.asarray(self.translation, np.float64)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Points [N, 3] (or one [3]) in the source frame -> target frame."""
        p = np.asarray(points, np.float64)
        return p @ self.R.T + self.t

    def inverse(self) -> "Pose":
        r = self.R
        return Pose.make(r.T, -r.T @ self.t)

    def __matmul__(self, other: "Pose") -> "Pose":
        """(a @ b).apply(p) == a.apply(b.apply(p))."""
        return Pose.make(self.R @ other.R, self.R @ other.t + self.t)


def _field(obj, *path):
    for name in path:
        obj = obj[name] if isinstance(obj, dict) else getattr(obj, name)
    return obj


def transform_stamped(msg) -> tuple[str, str, Pose]:
    """(parent, child, Pose child -> parent) of a geometry_msgs/TransformStamped (or a dict)."""
    tr = _field(msg, "transform")
    t = [float(_field(tr, "translation", a)) for a in "xyz"]
    q = [float(_field(tr, "rotation", a)) for a in "xyzw"]
    return (_field(msg, "header", "frame_id"), _field(msg, "child_frame_id"),
            Pose.from_quaternion(t, q))


def _name(frame: str) -> str:
    return str(frame).strip().lstrip("/")  # tf2 ignores a leading slash


class TransformTree:
    """Static transforms: each frame has at most one parent; lookups compose the chain."""

    def __init__(self):
        self._parent: dict[str, tuple[str, Pose]] = {}  # child -> (parent, child -> parent)

    def __len__(self) -> int:
        return len(self._parent)

    def copy(self) -> "TransformTree":
        out = TransformTree()
        out._parent = dict(self._parent)
        return out

    @property
    def frames(self) -> set[str]:
        return set(self._parent) | {p for p, _ in self._parent.values()}

    def set(self, parent: str, child: str, pose: Pose) -> None:
        """Add or replace the transform of ``child`` relative to ``parent``."""
        parent, child = _name(parent), _name(child)
        if not parent or not child or parent == child:
            raise TransformError(f"bad transform {parent!r} -> {child!r} (two distinct names)")
        self._parent[child] = (parent, pose)

    def add_message(self, msg) -> int:
        """Every TransformStamped of a tf2_msgs/TFMessage (object or dict); returns the count."""
        transforms = _field(msg, "transforms")
        for ts in transforms:
            self.set(*transform_stamped(ts))
        return len(transforms)

    def _to_root(self, frame: str) -> list[tuple[str, Pose]]:
        """[(frame, pose frame -> root so far)] from ``frame`` up to its root."""
        chain, pose, seen = [(frame, Pose())], Pose(), {frame}
        while frame in self._parent:
            parent, step = self._parent[frame]
            if parent in seen:
                raise TransformError(f"transform loop at frame {parent!r}")
            pose = step @ pose
            frame = parent
            seen.add(frame)
            chain.append((frame, pose))
        return chain

    def lookup(self, target: str, source: str) -> Pose:
        """Pose mapping ``source`` points into ``target`` (tf2's lookup_transform order)."""
        target, source = _name(target), _name(source)
        for f in (target, source):
            if f not in self.frames:
                raise TransformError(f"frame {f!r} is not in the transform tree (known: "
                                     f"{', '.join(sorted(self.frames)) or 'none'})")
        up_source = dict(self._to_root(source))  # frame -> pose source -> frame
        for frame, target_to_frame in self._to_root(target):
            if frame in up_source:  # lowest common ancestor
                return target_to_frame.inverse() @ up_source[frame]
        raise TransformError(f"frames {target!r} and {source!r} are not connected")
