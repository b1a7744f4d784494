"""Obstacle footprints, free ground and 3D boxes on scenes rendered with cv2.projectPoints.

The scene (test/synthetic_scene.py) builds its camera from axis vectors and renders upright boxes
with OpenCV; the pipeline only sees the anomaly mask and CameraInfo-like values (or a static TF
chain), and its points are compared with the boxes' true ground rectangles.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rba_core.pipeline.camera import CameraModel
from rba_core.pipeline.config import GroundConfig, ObstacleConfig, PipelineConfig
from rba_core.pipeline.perception import Perception
from rba_core.pipeline.transforms import TransformTree
from synthetic_scene import (Rig, SceneBackend, horizon_rows, outputs, pinhole, rect_distance,
                             render)

DEPTH = 0.3
LIFT = 0.2
BOX = ((5.0, 1.0, 0.0), (5.6, 2.0, 1.0))  # left of the camera: front and right faces visible

RIGS = {
    "pinhole": Rig(pinhole()),
    "plumb_bob": Rig(pinhole(), np.array([-0.35, 0.12, 0.0, 0.0, -0.02])),
    "rational_polynomial": Rig(pinhole(), np.array([-0.35, 0.12, 1e-3, -1e-3, -0.02, 0.0, 0.0,
                                                    0.0]), "rational_polynomial"),
    "equidistant": Rig(pinhole(250.0), np.array([0.05, -0.02, 0.01, -0.002]), "equidistant"),
}


def pipeline(rig: Rig, stride: int = 2, **obstacles) -> Perception:
    cfg = PipelineConfig(threshold=0.0,
                         ground=GroundConfig(camera_height=rig.height, pitch=rig.pitch,
                                             point_height=LIFT, stride=stride),
                         obstacles=ObstacleConfig(min_area=10, footprint_depth=DEPTH,
                                                  **obstacles))
    return Perception(SceneBackend(), cfg)


def camera(rig: Rig) -> CameraModel:
    return CameraModel.from_fields(**rig.camera_info())


def world(rig: Rig, g, pts: np.ndarray) -> np.ndarray:
    """Output-frame points -> world (camera-frame fallback: through the rig's own pose)."""
    return rig.to_world(pts.astype(np.float64)) if g.in_camera_frame else pts.astype(np.float64)


def boundary_distance(xy: np.ndarray, lo, hi) -> np.ndarray:
    """Distance of ground points to the rectangle's outline (inside or out)."""
    x, y = xy[:, 0], xy[:, 1]
    inside = (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1])
    d_in = np.minimum.reduce([x - lo[0], hi[0] - x, y - lo[1], hi[1] - y])
    return np.where(inside, d_in, rect_distance(xy, lo, hi))


def check_footprint(rig: Rig, g, box=BOX) -> None:
    lo, hi = box
    pts = world(rig, g, g.obstacle_points)
    assert len(pts) > 20
    np.testing.assert_allclose(pts[:, 2], LIFT, atol=1e-4)  # lifted ground points
    # every point on the true footprint within 0.1 m + the fill depth, none beyond
    assert rect_distance(pts[:, :2], lo, hi).max() <= DEPTH + 0.1
    # the contact points trace the visible bottom edges (front x = 5, right side y = 1) ...
    (fp,) = g.footprints
    contact = world(rig, g, g.to_output.apply(fp.contact))
    assert boundary_distance(contact[:, :2], lo, hi).max() <= 0.1
    # ... along the whole front edge
    assert contact[:, 1].min() <= lo[1] + 0.1 and contact[:, 1].max() >= hi[1] - 0.1
    assert not fp.cut_bottom


@pytest.mark.parametrize("name", list(RIGS))
def test_footprint_of_an_upright_box(name):
    rig = RIGS[name]
    p = pipeline(rig)
    result = p.postprocess(outputs(render(rig, [BOX])))
    g = p.ground(result, camera(rig))
    assert g.in_camera_frame
    check_footprint(rig, g)


@pytest.mark.parametrize("name", ["plumb_bob", "equidistant"])
def test_ignoring_the_distortion_misses_the_edges(name):
    """The same mask through a camera model without D: the check above must fail."""
    rig = RIGS[name]
    p = pipeline(rig)
    g = p.ground(p.postprocess(outputs(render(rig, [BOX]))), CameraModel.from_fields(rig.k))
    with pytest.raises(AssertionError):
        check_footprint(rig, g)


@pytest.mark.parametrize("name", ["pinhole", "plumb_bob"])
def test_a_2m_pole_at_8m_stays_near_8m(name):
    rig = RIGS[name]
    pole = ((7.95, -0.55, 0.0), (8.05, -0.45, 2.0))  # 2 m tall, taller than the camera
    p = pipeline(rig)
    g = p.ground(p.postprocess(outputs(render(rig, [pole]))), camera(rig))
    pts = world(rig, g, g.obstacle_points)
    assert len(pts) >= 2 and pts[:, 0].min() >= 7.95 - 0.1
    assert np.hypot(pts[:, 0], pts[:, 1]).max() <= 8.5
    # (every pixel projected, as before footprints, reaches far behind the pole)
    old = every_pixel_on_the_ground(rig, render(rig, [pole]))
    assert np.hypot(old[:, 0], old[:, 1]).max() > 20


def every_pixel_on_the_ground(rig: Rig, mask: np.ndarray) -> np.ndarray:
    """World ground points [N, 3] of every mask pixel below the horizon (the rig's own optics)."""
    vs, us = np.nonzero(mask)
    pix = np.stack([us, vs], -1).astype(np.float64).reshape(-1, 1, 2)
    n = cv2.undistortPoints(pix, rig.k, rig.d, criteria=(
        cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)).reshape(-1, 2)
    rays = np.concatenate([n, np.ones((len(n), 1))], 1) @ rig.R_wc.T
    down = rays[:, 2] < -1e-9
    return rig.C + rays[down] * (-rig.C[2] / rays[down, 2])[:, None]


def tf_chain(rig: Rig, tree: TransformTree) -> None:
    """base_footprint -> base_link -> camera_link -> camera_optical, as a URDF would give it."""
    optical = [-0.5, 0.5, -0.5, 0.5]  # REP 103: camera_link (x fwd) -> optical (z fwd, y down)
    pitch = [0.0, np.sin(rig.pitch / 2), 0.0, np.cos(rig.pitch / 2)]  # about y: x tilts down
    msg = {"transforms": [
        {"header": {"frame_id": "base_footprint"}, "child_frame_id": "base_link",
         "transform": {"translation": {"x": 0.0, "y": 0.0, "z": 0.3},
                       "rotation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}},
        {"header": {"frame_id": "base_link"}, "child_frame_id": "camera_link",
         "transform": {"translation": {"x": 0.0, "y": 0.0, "z": rig.height - 0.3},
                       "rotation": dict(zip("xyzw", pitch))}},
        {"header": {"frame_id": "/camera_link"}, "child_frame_id": "camera_optical",
         "transform": {"translation": {"x": 0.0, "y": 0.0, "z": 0.0},
                       "rotation": dict(zip("xyzw", optical))}},
    ]}
    assert tree.add_message(msg) == 3


@pytest.mark.parametrize("name", ["pinhole", "plumb_bob"])
def test_camera_pose_from_a_static_transform_chain(name):
    rig = RIGS[name]
    tree = TransformTree()
    tf_chain(rig, tree)
    pose = tree.lookup("base_footprint", "camera_optical")
    # the ground.* parameters are deliberately wrong: TF alone must place the points
    p = pipeline(Rig(rig.k, rig.d, rig.model, height=3.0, pitch=-0.2))
    g = p.ground(p.postprocess(outputs(render(rig, [BOX]))), camera(rig), pose)
    assert not g.in_camera_frame  # points come out in base_footprint
    check_footprint(rig, g)


def test_3d_box_in_the_ground_frame_and_the_camera_frame():
    rig = RIGS["pinhole"]
    lo, hi = (6.0, -0.5, 0.0), (6.6, 0.5, 1.0)
    p = pipeline(rig)
    result = p.postprocess(outputs(render(rig, [(lo, hi)])))
    tree = TransformTree()
    tf_chain(rig, tree)
    g = p.ground(result, camera(rig), tree.lookup("base_footprint", "camera_optical"))
    box = g.footprints[0].box
    # height: the top edge's ray meets the vertical plane through the contact line; the camera
    # (1.5 m) sees the top face, so its far edge (6.6 m) bounds it: 1.5 - 0.5 * 6 / 6.6
    assert box.size[2] == pytest.approx(1.5 - 0.5 * 6.0 / 6.6, abs=0.03)
    assert box.size[1] == pytest.approx(1.0, abs=0.1)           # across: the front edge
    assert DEPTH - 0.1 <= box.size[0] <= DEPTH + 0.1            # along: the fill depth
    assert box.center[0] == pytest.approx(6.0 + DEPTH / 2, abs=0.1)
    assert box.center[1] == pytest.approx(0.0, abs=0.05) and abs(box.yaw) < 0.02
    assert not box.cut_top
    # the same box published in the camera's frame (ground.* fallback) maps back onto it
    g_cam = p.ground(result, camera(rig))
    center, quat, size = g_cam.box_pose(g_cam.footprints[0].box)
    np.testing.assert_allclose(rig.to_world(center[None])[0], box.center, atol=0.02)
    x_axis = rig.R_wc @ Rotation.from_quat(quat).apply([1.0, 0.0, 0.0])
    np.testing.assert_allclose(x_axis, [1.0, 0.0, 0.0], atol=0.02)
    np.testing.assert_allclose(size, box.size, atol=0.02)


def test_bottom_cut_and_above_horizon_components():
    rig = RIGS["pinhole"]
    near = ((2.0, -0.6, 0.0), (2.5, 0.6, 2.5))   # its foot is below the image's bottom edge
    p = pipeline(rig)
    mask = render(rig, [near])
    mask[:60, 380:420] = True                     # a blob in the sky (above the horizon)
    assert mask[-1].any() and not horizon_rows(rig)[:60, 380:420].any()
    result = p.postprocess(outputs(mask))
    g = p.ground(result, camera(rig))
    by_label = {o.label: f for o, f in zip(result.obstacles.obstacles, g.footprints)}
    sky = result.obstacles.labels[30, 400]
    assert by_label[sky] is None                  # no ground contact: 2D detection only
    fp = by_label[result.obstacles.labels[-1, 240]]
    assert fp.cut_bottom
    # its contact is the bottom row's ground line, nearer than the object's true foot (2 m)
    contact = world(rig, g, g.to_output.apply(fp.contact))
    bottom_row = rig.size[1] - 1 - rig.k[1, 2]  # pixels below the principal point
    bottom_range = rig.height / np.tan(rig.pitch + np.arctan(bottom_row / rig.k[1, 1]))
    assert contact[:, 0].max() == pytest.approx(bottom_range, abs=0.05)
    assert contact[:, 0].max() > 2.0
    pts = world(rig, g, g.obstacle_points)
    assert pts[:, 0].max() <= bottom_range + DEPTH + 0.05


def patch_mask(rig: Rig, lo, hi) -> np.ndarray:
    """Mask of a flat ground rectangle (a false alarm on the road)."""
    import cv2

    xs = np.linspace(lo[0], hi[0], 40)
    ys = np.linspace(lo[1], hi[1], 40)
    outline = np.concatenate([[[x, lo[1], 0] for x in xs], [[hi[0], y, 0] for y in ys],
                              [[x, hi[1], 0] for x in xs[::-1]], [[lo[0], y, 0] for y in ys[::-1]]])
    mask = np.zeros(rig.size[::-1], np.uint8)
    cv2.fillPoly(mask, [np.round(rig.project(outline) * 16).astype(np.int32)[:, None]], 1,
                 shift=4)
    return mask.astype(bool)


def test_free_points_lie_under_drivable_non_anomalous_pixels():
    rig = RIGS["plumb_bob"]
    w, h = rig.size
    road = np.zeros((h, w), bool)
    road[:, : w // 2 + 40] = True                 # the road: left part of the image only
    alarm = (7.0, -0.4), (7.8, 0.4)
    mask = patch_mask(rig, *alarm) | render(rig, [BOX])
    p = pipeline(rig)
    g = p.ground(p.postprocess(outputs(mask, road)), camera(rig))
    free = world(rig, g, g.free_points)
    assert len(free) > 100 and np.allclose(free[:, 2], LIFT, atol=1e-4)
    free[:, 2] = 0.0
    px = np.round(rig.project(free)).astype(int)  # back to the pixels, with OpenCV
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    assert inside.all()
    assert road[px[:, 1], px[:, 0]].all() and not mask[px[:, 1], px[:, 0]].any()
    assert (np.hypot(free[:, 0], free[:, 1]) <= p.cfg.ground.max_range + 1e-3).all()
    core = (alarm[0][0] + 0.1, alarm[0][1] + 0.1), (alarm[1][0] - 0.1, alarm[1][1] - 0.1)
    assert not (rect_distance(free[:, :2], *core) == 0).any()
    # the false alarm disappears: the next frame has free points where it was (Nav2 clears it)
    g2 = p.ground(p.postprocess(outputs(render(rig, [BOX]), road)), camera(rig))
    free2 = world(rig, g2, g2.free_points)
    assert (rect_distance(free2[:, :2], *core) == 0).sum() >= 10


def test_point_intensity_is_the_calibrated_probability_of_its_pixel():
    from rba_core.pipeline.calibration import ScoreCalibration

    rig = RIGS["plumb_bob"]
    mask = render(rig, [BOX])
    out = outputs(mask)
    rows = np.arange(mask.shape[0], dtype=np.float32)[:, None]
    out.scores["rba"] = np.where(mask, rows / 100.0, -1.0).astype(np.float32)  # varies by row
    cal = ScoreCalibration("rba", [-1.0, 0.0, 4.0], [0.0, 0.5, 1.0])
    p = pipeline(rig)
    p.calibrations = {"rba": cal}
    g = p.ground(p.postprocess(out), camera(rig))
    pts = world(rig, g, g.obstacle_points)
    pts[:, 2] = 0.0
    px = np.round(rig.project(pts)).astype(int)   # each point's own pixel, found by OpenCV
    expected = 0.5 + 0.5 * px[:, 1] / 100.0 / 4.0  # by hand: linear between knots 0 and 4
    np.testing.assert_allclose(g.obstacle_probability, expected, atol=1e-6)
    assert g.obstacle_probability.min() >= 0 and g.obstacle_probability.max() <= 1


def test_pixels_without_a_ray_are_skipped():
    """Strong barrel distortion: the image corners lie outside the lens model (no ray)."""
    rig = RIGS["pinhole"]
    cam = CameraModel.from_fields(rig.k, [-0.9, 0.0, 0.0, 0.0, 0.0], "plumb_bob", *rig.size)
    mask = np.zeros(rig.size[::-1], bool)
    mask[300:, :60] = True                         # bottom-left corner
    p = pipeline(rig)
    g = p.ground(p.postprocess(outputs(mask)), cam)
    assert np.isfinite(g.obstacle_points).all() and np.isfinite(g.free_points).all()
