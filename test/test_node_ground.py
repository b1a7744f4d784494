"""The node's ground outputs on a rendered scene: footprints, free ground, 3D boxes, ids, TF.

A node subprocess runs a colour-reading "model" (test/scene_model.py, ONNX Runtime), so its
anomaly map is exactly the mask test/synthetic_scene.py renders with cv2.projectPoints for a
camera with lens distortion at a known pose. The camera pose reaches the node first through the
``ground.*`` fallback only, then through a /tf_static message only (the ``ground.*`` values made
wrong). Everything is checked against the scene: the boxes' true ground rectangles, the road
pixels, the pose.
"""
import time

import numpy as np
import pytest

from rba_ros.harness import (NodeProcess, RosClient, camera_info, diagnostics_values,
                             have_vision_msgs, make_image, next_domain, now_stamp,
                             transform_stamped)
from synthetic_scene import Rig, horizon_rows, pinhole, rect_distance, render

pytest.importorskip("rclpy")
pytest.importorskip("onnxruntime")
if not have_vision_msgs():
    pytest.skip("vision_msgs not built into this venv (bash scripts/build_ros_msgs.sh VENV)",
                allow_module_level=True)
try:
    from tf2_msgs.msg import TFMessage  # noqa: E402
except ImportError:
    pytest.skip("tf2_msgs not built into this venv (bash scripts/build_ros_msgs.sh VENV)",
                allow_module_level=True)

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo  # noqa: E402

from rba_core.pipeline.calibration import ScoreCalibration, save_calibrations  # noqa: E402
from rba_ros.ground_tf import STATIC_QOS  # noqa: E402
from scene_model import paint, write_scene_model  # noqa: E402

pytestmark = pytest.mark.ros

RIG = Rig(pinhole(), np.array([-0.35, 0.12, 0.0, 0.0, -0.02]))  # strong radial distortion
W, H = RIG.size
DEPTH, LIFT, STRIDE = 0.3, 0.2, 2
BOX = ((5.0, 1.0, 0.0), (5.6, 2.0, 1.0))     # 1 m tall, left of the camera
NEAR = ((4.0, -2.2, 0.0), (4.6, -1.2, 1.2))   # a second one, right, nearer and bigger
OPTICAL = "cam_optical"
# score -> probability of the scene model's score (R - G) / 255: p(0.5) = 0.95, p(1) = 1
CALIBRATION = ScoreCalibration("rba", [-1.0, 0.0, 0.5, 1.0], [0.0, 0.9, 0.95, 1.0])
BOX_SCORE = (240 - 20) / 255                       # the box's red (scene_model.COLORS)
BOX_P = 0.95 + 0.05 * (BOX_SCORE - 0.5) / 0.5      # its probability, between the knots
PARAMS = {"model_path": "", "backend": "onnxruntime", "scores": ["rba"], "threads": 1,
          "cameras": ["cam"], "max_age": 0.0, "diagnostics_period": 0.5, "threshold": 0.5,
          "ground_frame": "base_footprint",
          "obstacles.min_area": 10, "obstacles.footprint_depth": DEPTH,
          "ground.camera_height": RIG.height, "ground.pitch": RIG.pitch,
          "ground.point_height": LIFT, "ground.stride": STRIDE, "ground.max_range": 30.0}
OUTPUTS = {"obstacles": Detection2DArray, "obstacles_3d": Detection3DArray,
           "obstacle_points": PointCloud2, "free_points": PointCloud2}
ROAD = horizon_rows(RIG)  # every ground pixel is road


def tf_static_message() -> TFMessage:
    """base_footprint -> base_link -> camera_link -> cam_optical of the rig, as a URDF would."""
    pitch = (0.0, np.sin(RIG.pitch / 2), 0.0, np.cos(RIG.pitch / 2))  # about y: x tilts down
    optical = (-0.5, 0.5, -0.5, 0.5)  # REP 103: camera_link (x fwd) -> optical (z fwd, y down)
    return TFMessage(transforms=[
        transform_stamped("base_footprint", "base_link", (0, 0, 0.3), (0, 0, 0, 1)),
        transform_stamped("base_link", "camera_link", (0, 0, RIG.height - 0.3), pitch),
        transform_stamped("camera_link", OPTICAL, (0, 0, 0), optical)])


class Scene:
    """The node, a client, the camera publishers and a collector per output."""

    def __init__(self, node: NodeProcess, client: RosClient):
        self.node, self.client = node, client
        self.out = {n: client.collect(t, f"/cam/rba/{n}") for n, t in OUTPUTS.items()}
        self.labels = client.collect(LabelInfo, "/cam/rba/labels", transient_local=True)
        self.diag = client.collect(DiagnosticArray, "/diagnostics")
        self.img = client.publisher(Image, "/cam/image_raw")
        self.info = client.publisher(CameraInfo, "/cam/camera_info")
        self.tf = client.node.create_publisher(TFMessage, "/tf_static", STATIC_QOS)

    def frame(self, boxes, names=tuple(OUTPUTS)) -> dict:
        """Publish the rendered ``boxes`` (with its CameraInfo) and wait for every output of
        that frame; sent again under a new stamp while none arrives (a message published
        before discovery completes is lost)."""
        rgb = paint(render(RIG, boxes), ROAD)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stamp = now_stamp(self.client.node)
            self.info.publish(camera_info(OPTICAL, W, H, 0.0, stamp, k=RIG.k.ravel(), d=RIG.d))
            self.img.publish(make_image(rgb, "rgb8", OPTICAL, stamp))

            def got():
                with self.client.lock:
                    found = {n: [m for _, m in self.out[n] if (m.header.stamp.sec,
                                                                m.header.stamp.nanosec) == stamp]
                             for n in names}
                return {n: m[0] for n, m in found.items()} if all(found.values()) else None
            try:
                return self.client.wait_until(got, 10, f"the outputs of frame {stamp}", self.node)
            except AssertionError:
                assert self.node.alive(), self.node.log()[-3000:]
        raise AssertionError(f"no outputs for 60 s\n{self.node.log()[-3000:]}")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scene")
    model = write_scene_model(tmp / "scene.onnx", H, W)
    save_calibrations(tmp / "scene.calibration.yaml", {"rba": CALIBRATION}, {"method": "test"})
    domain = next_domain()
    with NodeProcess(tmp, domain, {**PARAMS, "model_path": str(model)}) as node:
        client = RosClient(domain)
        try:
            s = Scene(node, client)
            client.wait_for_subscriber("/cam/image_raw", node, timeout=120)
            client.wait_for_subscriber("/cam/camera_info", node, timeout=30)
            yield s
        finally:
            client.close()
        assert node.alive(), node.log()[-3000:]
        assert node.stop() == 0, node.log()[-3000:]
        assert "Traceback" not in node.log(), node.log()[-3000:]


def cloud(msg) -> np.ndarray:
    """[N, fields] float64 of an unorganised float32 PointCloud2."""
    return np.frombuffer(bytes(msg.data), np.float32).reshape(
        msg.width, msg.point_step // 4).astype(np.float64)


def check_on_the_box(world: np.ndarray, box=BOX) -> None:
    """Obstacle points (world, lifted) on the box's true ground rectangle + the fill depth."""
    assert len(world) > 20
    np.testing.assert_allclose(world[:, 2], LIFT, atol=2e-3)
    assert rect_distance(world[:, :2], *box).max() <= DEPTH + 0.1
    assert np.hypot(world[:, 0], world[:, 1]).max() <= np.hypot(box[1][0], box[1][1]) + 0.1


def test_without_a_transform_the_fallback_and_a_warning(scene):
    """ground_frame set, no /tf_static yet: ground.* places the points, in the camera frame."""
    out = scene.frame([BOX])
    msg = out["obstacle_points"]
    assert msg.header.frame_id == OPTICAL
    check_on_the_box(RIG.to_world(cloud(msg)[:, :3]))  # through the scene's own camera pose
    assert out["obstacles_3d"].header.frame_id == OPTICAL

    def warned():
        for _, m in reversed(scene.diag):
            st = [s for s in m.status if s.name.endswith("camera cam")]
            if st and st[0].level == DiagnosticStatus.WARN and "without transform" in \
                    st[0].message:
                return st[0]
        return None
    status = scene.client.wait_until(warned, 20, "a WARN about the missing transform")
    assert "base_footprint <- cam_optical" in status.message and "ground.*" in status.message


def test_camera_pose_from_tf_static_only(scene):
    """One /tf_static message gives the pose; ground.* is made wrong: the cloud is in
    base_footprint and on the rendered box."""
    scene.client.set_params("rba_perception", {"ground.camera_height": 3.0,
                                               "ground.pitch": -0.2})
    scene.tf.publish(tf_static_message())
    deadline = time.monotonic() + 30
    while True:  # the transient-local message reaches the node's subscription in a moment
        out = scene.frame([BOX])
        if out["obstacle_points"].header.frame_id == "base_footprint" or \
                time.monotonic() > deadline:
            break
    pts = cloud(out["obstacle_points"])
    assert out["obstacle_points"].header.frame_id == "base_footprint"
    assert [f.name for f in out["obstacle_points"].fields] == ["x", "y", "z", "intensity"]
    check_on_the_box(pts[:, :3])  # directly in the world: base_footprint is the scene's ground
    # intensity = p(score) of each point
    np.testing.assert_allclose(pts[:, 3], BOX_P, atol=1e-6)
    # the 3D box stands on the footprint, as tall as the camera sees it (test_footprints)
    (det,) = out["obstacles_3d"].detections
    assert out["obstacles_3d"].header.frame_id == "base_footprint"
    c, size = det.bbox.center.position, det.bbox.size
    assert rect_distance(np.array([[c.x, c.y]]), *BOX)[0] <= DEPTH
    assert c.z == pytest.approx(size.z / 2) and 0.7 <= size.z <= 1.1
    assert det.results[0].hypothesis.score == pytest.approx(BOX_P, abs=1e-6)
    (det2d,) = out["obstacles"].detections
    assert det2d.id == det.id
    assert det2d.results[0].hypothesis.score == pytest.approx(BOX_P, abs=1e-6)


def test_free_points_lie_on_road_pixels_and_clear_a_vanished_false_alarm(scene):
    out = scene.frame([BOX])
    free = cloud(out["free_points"])
    assert out["free_points"].header.frame_id == "base_footprint"
    assert [f.name for f in out["free_points"].fields] == ["x", "y", "z"]
    np.testing.assert_allclose(free[:, 2], LIFT, atol=2e-3)
    # every free point, dropped to the ground and imaged by the scene's camera, is a road pixel
    # outside the box: the pixel it came from (the round trip is exact to well below a pixel)
    ground = free.copy()
    ground[:, 2] = 0.0
    uv = np.round(RIG.project(ground)).astype(int)
    assert ((uv >= 0) & (uv < [W, H])).all()
    mask = render(RIG, [BOX])
    assert ROAD[uv[:, 1], uv[:, 0]].all() and not mask[uv[:, 1], uv[:, 0]].any()
    assert (np.hypot(free[:, 0], free[:, 1]) <= 30.0 + 1e-3).all()
    # the ground the box stood on: hidden behind it now, free once it has gone (a false alarm
    # that disappears leaves free points where its marks were: Nav2 clears them)
    assert not (rect_distance(free[:, :2], *BOX) == 0).any()
    free = cloud(scene.frame([])["free_points"])
    assert (rect_distance(free[:, :2], BOX[0], BOX[1]) == 0).sum() > 10


def test_ids_are_stable_across_frames(scene):
    """A box moving 5 cm per frame keeps its id for 12 frames; a bigger, nearer box appearing
    half-way (first by area, so a per-frame index would renumber both) gets a new id."""
    seen = []
    for i in range(12):
        dy = -0.05 * i
        moving = ((BOX[0][0], BOX[0][1] + dy, 0.0), (BOX[1][0], BOX[1][1] + dy, 1.0))
        out = scene.frame([moving] + ([NEAR] if i >= 6 else []))
        by_side = {"left" if d.bbox.center.position.y > 0 else "right": d.id
                   for d in out["obstacles_3d"].detections}
        ids2d = sorted(d.id for d in out["obstacles"].detections)
        assert sorted(by_side.values()) == ids2d and len(ids2d) == (2 if i >= 6 else 1)
        seen.append(by_side)
    assert len({s["left"] for s in seen}) == 1
    assert len({s["right"] for s in seen[6:]}) == 1 and seen[6]["right"] != seen[0]["left"]


def test_label_info_threshold_is_the_calibrated_probability(scene):
    labels = scene.client.wait_until(lambda: scene.labels, 20, "labels")
    assert labels[-1][1].threshold == pytest.approx(0.95)  # p(0.5), hand-made calibration
    n = len(scene.labels)
    ((ok, _),) = scene.client.set_params("rba_perception", {"threshold": 0.0})
    assert ok
    scene.client.wait_until(lambda: len(scene.labels) > n, 20, "labels republished")
    assert scene.labels[-1][1].threshold == pytest.approx(0.9)
    assert all(0.0 <= m.threshold <= 1.0 for _, m in scene.labels)
    ((ok, _),) = scene.client.set_params("rba_perception", {"threshold": 0.5})
    model = next(s for _, m in reversed(scene.diag) for s in m.status
                 if s.name.endswith(": model"))
    values = {kv.key: kv.value for kv in model.values}
    assert values["score_calibration"].endswith("scene.calibration.yaml")
    cam = next(v for _, m in reversed(scene.diag) if (v := diagnostics_values(m, "cam")))
    assert cam["ground_frame"] in ("base_footprint (/tf_static)", "base_footprint (tf2_ros)")
