"""CameraModel (distortion, binning, ROI) and the static TransformTree, against hand maths."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rba_core.pipeline.camera import CameraModel, CameraModelError, pixel_rays
from rba_core.pipeline.transforms import Pose, TransformError, TransformTree

K = [500.0, 0.0, 320.0, 0.0, 480.0, 240.0, 0.0, 0.0, 1.0]


def test_pinhole_rays_by_hand():
    cam = CameraModel.from_fields(K, [0.0] * 5, "plumb_bob", 640, 480)
    assert not cam.distorted
    rays = cam.rays(np.array([320.0, 820.0]), np.array([240.0, 0.0]))
    np.testing.assert_allclose(rays, [[0, 0, 1], [1.0, -0.5, 1]])


def test_binning_and_roi_map_to_sensor_pixels():
    """A 2x2-binned image of the ROI 400x300+100+60: pixel (u, v) is sensor pixel
    (2u + 100, 2v + 60), whose ray is K^-1 of that (image_geometry's convention)."""
    cam = CameraModel.from_fields(K, (), "", 640, 480, 2, 2,
                                  {"x_offset": 100, "y_offset": 60, "width": 400, "height": 300})
    assert cam.image_size == (200, 150)
    u, v = np.array([0.0, 110.0]), np.array([0.0, 90.0])
    rays = cam.rays(u, v)
    su, sv = 2 * u + 100, 2 * v + 60
    np.testing.assert_allclose(rays[:, 0], (su - 320) / 500)
    np.testing.assert_allclose(rays[:, 1], (sv - 240) / 480)
    # a map at half the image's resolution: its pixel centres scale to image pixels first
    grid = pixel_rays(cam, (75, 100))
    np.testing.assert_allclose(grid[0, 0], cam.rays(np.array([0.5]), np.array([0.5]))[0])


@pytest.mark.parametrize("model, d", [
    ("plumb_bob", [-0.3, 0.1, 1e-3, -2e-3, -0.02]),
    ("rational_polynomial", [-0.3, 0.1, 1e-3, -2e-3, -0.02, 0.01, 0.0, 0.0]),
    ("equidistant", [0.05, -0.02, 0.01, -0.002]),
])
def test_distorted_rays_image_back_to_their_pixels(model, d):
    """Rays of known 3D directions, projected by OpenCV, come back as those directions."""
    cam = CameraModel.from_fields(K, d, model, 640, 480)
    rng = np.random.default_rng(0)
    dirs = np.c_[rng.uniform(-0.5, 0.5, (50, 2)), np.ones(50)]
    zero = np.zeros(3)
    if model == "equidistant":
        px, _ = cv2.fisheye.projectPoints(dirs[:, None], zero, zero, cam.K, np.array(d))
    else:
        px, _ = cv2.projectPoints(dirs, zero, zero, cam.K, np.array(d))
    px = px.reshape(-1, 2)
    np.testing.assert_allclose(cam.rays(px[:, 0], px[:, 1]), dirs, atol=1e-6)


def test_rays_outside_the_distortion_domain_are_dropped():
    """Strong barrel distortion folds over far from the centre: such pixels get no ray."""
    cam = CameraModel.from_fields(K, [-0.9, 0.0, 0.0, 0.0, 0.0], "plumb_bob", 640, 480)
    rays = cam.rays(np.array([320.0, 5000.0]), np.array([240.0, 240.0]))
    assert np.isfinite(rays[0]).all() and np.isnan(rays[1]).all()


@pytest.mark.parametrize("kw, field", [
    ({"k": [0.0] * 9}, "camera_info.k"),
    ({"d": [0.1, 0.2, 0.3]}, "camera_info.d"),
    ({"d": [0.1] * 5, "distortion_model": "kannala"}, "camera_info.distortion_model"),
    ({"d": [0.1] * 5, "distortion_model": "equidistant"}, "camera_info.d"),
    ({"roi": (600, 0, 100, 100)}, "camera_info.roi"),
])
def test_bad_camera_info_names_the_field(kw, field):
    args = {"k": K, "width": 640, "height": 480, **kw}
    with pytest.raises(CameraModelError, match=f"^{field}"):
        CameraModel.from_fields(**args)


def test_from_msg_reads_a_camera_info_like_object():
    class Roi:
        x_offset, y_offset, width, height = 10, 20, 300, 200

    class Info:
        k, d, distortion_model = K, [0.0] * 5, "plumb_bob"
        width, height, binning_x, binning_y, roi = 640, 480, 0, 0, Roi()

    cam = CameraModel.from_msg(Info())
    assert cam.roi == (10, 20, 300, 200) and cam.binning_x == 1 and cam.image_size == (300, 200)


def transform(parent, child, xyz, quat):
    return {"header": {"frame_id": parent}, "child_frame_id": child,
            "transform": {"translation": dict(zip("xyz", xyz)),
                          "rotation": dict(zip("xyzw", quat))}}


def matrix(xyz, quat) -> np.ndarray:
    """4x4 homogeneous child -> parent, by hand from the quaternion formula."""
    x, y, z, w = quat
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, xyz
    return m


def test_chain_lookup_equals_the_matrix_product():
    a = ((1.0, 2.0, 0.5), tuple(Rotation.from_euler("z", 0.7).as_quat()))
    b = ((0.2, 0.0, 1.1), tuple(Rotation.from_euler("y", 0.3).as_quat()))
    c = ((0.0, -0.4, 0.0), (-0.5, 0.5, -0.5, 0.5))
    side = ((0.0, 0.5, 0.2), tuple(Rotation.from_euler("x", -0.2).as_quat()))
    tree = TransformTree()
    tree.add_message({"transforms": [transform("odom", "base", *a), transform("base", "cam", *b),
                                     transform("/cam", "cam_optical", *c),
                                     transform("base", "lidar", *side)]})
    pose = tree.lookup("odom", "cam_optical")
    expect = matrix(*a) @ matrix(*b) @ matrix(*c)
    p = np.array([0.3, -1.0, 4.0])
    np.testing.assert_allclose(pose.apply(p), (expect @ np.r_[p, 1])[:3], atol=1e-12)
    # across branches: cam_optical -> lidar through their common parent
    cross = np.linalg.inv(matrix(*side)) @ matrix(*b) @ matrix(*c)
    np.testing.assert_allclose(tree.lookup("lidar", "cam_optical").apply(p),
                               (cross @ np.r_[p, 1])[:3], atol=1e-12)
    back = tree.lookup("cam_optical", "odom")
    np.testing.assert_allclose(back.apply(pose.apply(p)), p, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("base", "base").apply(p), p)


def test_lookup_errors_are_one_line():
    tree = TransformTree()
    tree.set("map", "odom", Pose())
    tree.set("robot2", "camera", Pose())
    with pytest.raises(TransformError, match="'base' is not in the transform tree"):
        tree.lookup("base", "odom")
    with pytest.raises(TransformError, match="not connected"):
        tree.lookup("map", "camera")
    with pytest.raises(TransformError, match="quaternion"):
        tree.add_message({"transforms": [transform("a", "b", (0, 0, 0), (0, 0, 0, 0))]})
