"""Where obstacles touch the ground: footprints, 3D boxes, and the free ground that clears them.

An obstacle standing on the road is a vertical surface: only its lowest pixels meet the ground
plane where the object is; the rays of the pixels above it meet the plane far *behind* the object
(camera at 1.5 m: the top of a 1 m object at 5 m lands at 15 m). So per obstacle component and
per column, the lowest pixel is the ground contact; the footprint is the contact points plus the
component's pixels (on the ``stride`` grid) whose ground point lies at most ``footprint_depth``
metres farther than their column's contact: a band of bounded depth behind the contact line,
never farther. A "column" is a bin of ray bearing (azimuth in the ground frame) ``stride`` pixels
wide: a world-vertical edge keeps its bearing from bottom to top, whereas an image column cuts it
obliquely once the camera pitches, rolls or distorts (its lowest pixel would then sit up the
edge, not on the ground). For an upright pinhole camera the two agree.

Edge cases (documented in the README):
- a column whose lowest pixel is at or above the horizon, or meets the ground beyond
  ``max_range``, has no contact and adds nothing; a component without any contact (floating in
  the sky, or entirely beyond range) has no footprint and no 3D box (it stays a 2D detection);
- a component cut by the image's bottom edge touches the ground at or nearer than the bottom
  row's ground line: that line is its contact (the nearest ground this camera sees), and
  ``Footprint.cut_bottom`` says the object may reach closer;
- a component cut by the top edge has a height that is a lower bound (``Box3D.cut_top``);
- known limit: an overhang whose lowest pixel is above the ground (a table top between its legs)
  is taken for a contact.

3D box: view-aligned (x along the bearing from the camera to the footprint, y across, z up) around
the footprint; its height is where the component's top pixel's ray meets the vertical plane through
the column's contact point (facing the camera), the highest over the columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scipy.ndimage import minimum_filter1d

from .geometry import GroundMap
from .obstacles import Obstacle


@dataclass
class Box3D:
    center: np.ndarray   # [3] ground frame; z = height / 2 (the box stands on the ground)
    size: np.ndarray     # [3] along the view direction, across it, height (metres)
    yaw: float           # radians: the box's x axis (view direction) about the ground's z
    cut_top: bool        # the component touches the image's top edge: height is a lower bound


@dataclass
class Footprint:
    label: int           # component id in ObstacleResult.labels
    points: np.ndarray   # [N, 3] float32 ground frame, z = 0: contact points + fill behind them
    rows: np.ndarray     # [N] int pixel row of each point (map coordinates)
    cols: np.ndarray     # [N] int pixel column
    contact: np.ndarray  # [M, 3] float32 the contact points (one per bearing bin)
    cut_bottom: bool     # the component touches the image's bottom edge
    box: Box3D | None = None

    @property
    def center(self) -> np.ndarray:
        """[2] x, y of the 3D box centre (footprint centre)."""
        return self.box.center[:2] if self.box is not None else self.points[:, :2].mean(0)


def _bearing_box(xy: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Rectangle around ``xy`` [N, 2] along the bearing from ``origin``: centre, size, yaw."""
    d = xy.mean(0) - origin[:2]
    yaw = float(np.arctan2(d[1], d[0]))
    c, s = np.cos(yaw), np.sin(yaw)
    along = xy @ np.array([c, s])
    across = xy @ np.array([-s, c])
    lo, hi = np.array([along.min(), across.min()]), np.array([along.max(), across.max()])
    mid = (lo + hi) / 2
    center = np.array([c * mid[0] - s * mid[1], s * mid[0] + c * mid[1]])
    return center, hi - lo, yaw


def _height(gm: GroundMap, contact: np.ndarray, top_rows: np.ndarray, top_cols: np.ndarray
            ) -> float:
    """Highest point where the top pixels' rays meet the vertical planes through the contacts."""
    o = gm.origin
    n = contact[:, :2] - o[:2]                        # horizontal, towards each contact
    dist = np.linalg.norm(n, axis=1)
    n = n / np.maximum(dist, 1e-9)[:, None]
    d = gm.dirs[top_rows, top_cols].astype(np.float64)  # [M, 3] top pixels' rays
    denom = (d[:, :2] * n).sum(1)
    ok = denom > 1e-9
    z = o[2] + dist[ok] / denom[ok] * d[ok, 2]
    z = z[np.isfinite(z)]
    return float(max(z.max(), 0.0)) if z.size else 0.0


def _window(stride: int) -> int:
    """Neighbouring bins (each side) of a contact's lower envelope: about 2 pixels or 1 bin."""
    return max(1, -(-2 // stride))


def footprint(labels: np.ndarray, ob: Obstacle, gm: GroundMap, depth: float, max_range: float,
              stride: int = 1) -> Footprint | None:
    """Footprint of one obstacle component (None: no ground contact).

    ``labels`` [H, W] component ids on the map ``gm`` was built for. The component's pixels are
    grouped into bins of ray bearing ``stride`` pixels wide (a world-vertical line keeps its
    bearing; an image column does not once the camera pitches, rolls or distorts); a bin's
    contact is its lowest pixel (the nearest ground point), its fill the bin's pixels on the
    ``stride`` grid at most ``depth`` farther than the contact. The contact range is the lower
    envelope over the neighbouring bins, so a bin that only catches a sliver of the mask's side
    edge (its lowest pixel is up the edge) adds nothing.
    """
    crop = labels[ob.y:ob.y + ob.h, ob.x:ob.x + ob.w] == ob.label
    vs, us = np.nonzero(crop)
    vs, us = vs + ob.y, us + ob.x
    az = gm.azimuth[vs, us]
    ray = np.isfinite(az)                             # no ray: outside the lens model's domain
    vs, us, az = vs[ray], us[ray], az[ray]
    if vs.size == 0:
        return None
    b = np.floor(az / (stride * gm.pixel_angle)).astype(np.int64)
    b -= b.min()
    nb = int(b.max()) + 1                             # bearing bins
    rng = gm.range[vs, us]
    lowest = np.full(nb, np.inf, np.float32)
    np.minimum.at(lowest, b, rng)
    # contact range = lower envelope over neighbouring bins: a bin that only catches a sliver of
    # the mask's side edge (boundary noise) has its lowest pixel up the edge, not on the ground
    env = minimum_filter1d(lowest, 2 * _window(stride) + 1, mode="constant", cval=np.inf)
    ok_bin = (lowest <= max_range) & (lowest <= env + depth)
    if not ok_bin.any():
        return None
    up = gm.dirs[vs, us, 2]                           # elevation of each ray (sine)
    highest = np.full(nb, -np.inf, np.float32)
    np.fmax.at(highest, b, up)
    idx = np.arange(vs.size)
    contact_of = np.full(nb, -1, np.int64)            # a pixel index per bin: its contact
    is_low = (rng == lowest[b]) & ok_bin[b]
    contact_of[b[is_low]] = idx[is_low]
    top_of = np.full(nb, -1, np.int64)
    top_of[b[up == highest[b]]] = idx[up == highest[b]]

    grid = (vs % stride == 0) & (us % stride == 0)
    behind = (rng <= max_range) & (rng <= env[b] + depth)  # inf / NaN -> False
    mine = np.flatnonzero(ok_bin[b] & (is_low | (grid & behind)))
    bins = np.flatnonzero(contact_of >= 0)
    points, contact = gm.points[vs[mine], us[mine]], gm.points[vs[contact_of[bins]],
                                                               us[contact_of[bins]]]
    fp = Footprint(ob.label, points, vs[mine], us[mine], contact,
                   bool(ob.y + ob.h == labels.shape[0] and crop[-1].any()))
    center, size, yaw = _bearing_box(points[:, :2].astype(np.float64), gm.origin)
    tops = top_of[bins]
    height = _height(gm, contact.astype(np.float64), vs[tops], us[tops])
    fp.box = Box3D(np.array([center[0], center[1], height / 2]),
                   np.array([size[0], size[1], height]), yaw,
                   bool(ob.y == 0 and crop[0].any()))
    return fp


def footprints(labels: np.ndarray, obstacles: list[Obstacle], gm: GroundMap, depth: float,
               max_range: float, stride: int = 1) -> list[Footprint | None]:
    """:func:`footprint` of each obstacle, in order (work in each one's bounding box)."""
    return [footprint(labels, ob, gm, depth, max_range, stride) for ob in obstacles]


def free_points(free: np.ndarray, gm: GroundMap, max_range: float, stride: int = 1
                ) -> np.ndarray:
    """Ground points [N, 3] (z = 0) of the free pixels; ``free`` is the map already subsampled
    by ``stride`` (``map[::stride, ::stride]``)."""
    vs, us = np.nonzero(free)
    vs, us = vs * stride, us * stride
    ok = gm.range[vs, us] <= max_range
    return gm.points[vs[ok], us[ok]].copy()
