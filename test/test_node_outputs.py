"""The node for real: a perception_node subprocess, publishers/subscribers in this process.

One node with two cameras (cam0: Image, cam1: CompressedImage), the tiny preset with random
weights on torch. Images in -> every output with the source header and sane contents; two cameras
at once; live parameter changes; obstacle_points (the footprint) on the ground plane in the camera
frame; /diagnostics. The ground outputs on rendered scenes and TF: test_node_ground.py.
"""
import json
import math
import time

import cv2
import numpy as np
import pytest

from conftest import REPO
from rba_ros.harness import (NodeProcess, RosClient, camera_info, diagnostics_values,
                             have_vision_msgs, image_array, make_image, next_domain, now_stamp)

pytest.importorskip("rclpy")
if not have_vision_msgs():
    pytest.skip("vision_msgs not built into this venv (bash scripts/build_ros_msgs.sh VENV)",
                allow_module_level=True)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo  # noqa: E402

pytestmark = pytest.mark.ros

TINY_CLASSES = ['sky', 'building', 'pole', 'road', 'pavement', 'tree', 'sign symbol', 'fence',
                'car', 'pedestrian', 'bicyclist']
H0, W0, H1, W1 = 48, 64, 40, 56
F = 40.0             # focal length of both synthetic cameras
GROUND = {"camera_height": 1.2, "pitch": 0.35, "roll": 0.0, "point_height": 0.25,
          "max_range": 50.0, "stride": 2}
PARAMS = {"model_path": "preset:tiny", "backend": "torch", "threads": 1,
          "cameras": ["cam0", "cam1:compressed"], "max_age": 0.0, "diagnostics_period": 0.5,
          "threshold": -1e9, "obstacles.min_area": 1, "scores": ["rba", "energy"],
          **{f"ground.{k}": v for k, v in GROUND.items()}}
OUTPUTS = {"semantic": Image, "semantic_color": Image, "anomaly": Image, "anomaly_color": Image,
           "obstacles": Detection2DArray, "obstacle_points": PointCloud2,
           "free_points": PointCloud2, "obstacles_3d": Detection3DArray}


class Rig:
    """The node, a client, publishers for both cameras, collectors for every output."""

    def __init__(self, node: NodeProcess, client: RosClient):
        self.node, self.client = node, client
        self.out = {cam: {name: client.collect(t, f"/{cam}/rba/{name}")
                          for name, t in OUTPUTS.items()} for cam in ("cam0", "cam1")}
        self.labels = client.collect(LabelInfo, "/cam0/rba/labels", transient_local=True)
        self.diag = client.collect(DiagnosticArray, "/diagnostics")
        self.img0 = client.publisher(Image, "/cam0/image_raw")
        self.img1 = client.publisher(CompressedImage, "/cam1/image_raw/compressed")
        self.info0 = client.publisher(CameraInfo, "/cam0/camera_info")
        self.info1 = client.publisher(CameraInfo, "/cam1/camera_info")
        rng = np.random.default_rng(0)
        self.frame0 = rng.integers(0, 255, (H0, W0, 3), dtype=np.uint8)
        self.frame1 = cv2.GaussianBlur(rng.integers(0, 255, (H1, W1, 3), dtype=np.uint8), (5, 5), 0)
        self.sent: dict[tuple, str] = {}  # (sec, nanosec) -> camera

    def send(self, cams=("cam0",)) -> tuple[int, int]:
        stamp = now_stamp(self.client.node)
        if "cam0" in cams:
            self.info0.publish(camera_info("cam0_optical", W0, H0, F, stamp))
            self.img0.publish(make_image(self.frame0, "rgb8", "cam0_optical", stamp))
            self.sent[stamp] = "cam0"
        if "cam1" in cams:
            self.info1.publish(camera_info("cam1_optical", W1, H1, F, stamp))
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(self.frame1, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, 98])
            msg = CompressedImage(format="jpeg", data=jpg.tobytes())
            msg.header.frame_id = "cam1_optical"
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
            self.img1.publish(msg)
            self.sent[(stamp[0], stamp[1] + 1)] = "cam1"  # marker: cam1 shares the stamp
        return stamp

    def drive(self, until, what: str, cams=("cam0",), timeout: float = 60.0, period: float = 0.3):
        """Publish frames every ``period`` s until ``until()`` is truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(cams)
            end = time.monotonic() + period
            while time.monotonic() < end:
                value = until()
                if isinstance(value, np.ndarray) or value:
                    return value
                time.sleep(0.02)
            assert self.node.alive(), f"node died:\n{self.node.log()[-3000:]}"
        raise AssertionError(f"timed out waiting for {what}\nnode log:\n{self.node.log()[-3000:]}")

    def after(self, cam: str, name: str, stamp) -> list:
        """Messages on an output whose source frame was sent at or after ``stamp``."""
        with self.client.lock:
            box = list(self.out[cam][name])
        return [m for _, m in box if (m.header.stamp.sec, m.header.stamp.nanosec) >= tuple(stamp)]

    def set(self, **values) -> None:
        res = self.client.set_params("rba_perception", values)
        assert all(ok for ok, _ in res), res


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    domain = next_domain()
    with NodeProcess(tmp_path_factory.mktemp("node"), domain, PARAMS) as node:
        client = RosClient(domain)
        try:
            r = Rig(node, client)
            client.wait_for_subscriber("/cam0/image_raw", node, timeout=120)
            client.wait_for_subscriber("/cam1/image_raw/compressed", node, timeout=30)
            yield r
        finally:
            client.close()
        assert node.alive(), node.log()[-3000:]
        assert node.stop() == 0, node.log()[-3000:]  # Ctrl-C: clean exit
        assert "Traceback" not in node.log() and "ERROR" not in node.log(), node.log()[-3000:]


def stamp_of(msg) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def test_every_output_arrives_with_the_source_header(rig):
    start = rig.send()
    rig.drive(lambda: all(rig.after("cam0", n, start) for n in OUTPUTS), "every cam0 output")
    for name in OUTPUTS:
        for msg in rig.after("cam0", name, start):
            assert msg.header.frame_id == "cam0_optical", name
            assert rig.sent.get(stamp_of(msg)) == "cam0", f"{name}: stamp of no sent frame"
    sem = image_array(rig.after("cam0", "semantic", start)[0])
    assert sem.shape == (H0, W0) and sem.max() < len(TINY_CLASSES)
    anomaly_msg = rig.after("cam0", "anomaly", start)[0]
    anomaly = image_array(anomaly_msg)
    assert anomaly_msg.encoding == "32FC1" and anomaly.shape == (H0, W0)
    assert np.isfinite(anomaly).all() and anomaly.max() <= 1e-6  # RbA = -sum tanh(L), L >= 0
    for name in ("semantic_color", "anomaly_color"):
        msg = rig.after("cam0", name, start)[0]
        assert msg.encoding == "rgb8" and image_array(msg).shape == (H0, W0, 3)
    dets = rig.after("cam0", "obstacles", start)[0]
    assert len(dets.detections) == 1  # threshold -1e9: the whole frame is one component
    for det in dets.detections:
        b = det.bbox
        assert 0 <= b.center.position.x - b.size_x / 2 and b.center.position.x + b.size_x / 2 <= W0
        assert 0 <= b.center.position.y - b.size_y / 2 and b.center.position.y + b.size_y / 2 <= H0
        assert det.results[0].hypothesis.class_id == "anomaly"
        assert det.header.frame_id == "cam0_optical"
        assert 0.0 <= det.results[0].hypothesis.score <= 1.0 and det.id
    labels = rig.client.wait_until(lambda: rig.labels, 10, "labels")
    assert [c.class_name for c in labels[0][1].class_map] == TINY_CLASSES
    assert [c.class_id for c in labels[0][1].class_map] == list(range(len(TINY_CLASSES)))


def test_output_types_have_the_real_vision_msgs_hashes(rig):
    expected = json.loads((REPO / "rba_core/ros_msgs/vision_msgs/EXPECTED_TYPE_HASHES.json")
                          .read_text())
    for topic, msgtype in [("/cam0/rba/obstacles", "vision_msgs/msg/Detection2DArray"),
                           ("/cam0/rba/obstacles_3d", "vision_msgs/msg/Detection3DArray"),
                           ("/cam0/rba/labels", "vision_msgs/msg/LabelInfo")]:
        infos = rig.client.wait_until(
            lambda: rig.client.node.get_publishers_info_by_topic(topic), 30, topic)
        if not hasattr(infos[0], "topic_type_hash"):
            pytest.skip("type hashes are Jazzy and later (Humble's rclpy has none)")
        assert str(infos[0].topic_type_hash) == expected[msgtype]


def test_two_cameras_at_once(rig):
    start = rig.send(("cam0", "cam1"))
    rig.drive(lambda: rig.after("cam0", "anomaly", start) and rig.after("cam1", "anomaly", start),
              "anomaly from both cameras", cams=("cam0", "cam1"))
    for cam, shape in (("cam0", (H0, W0)), ("cam1", (H1, W1))):
        msg = rig.after(cam, "anomaly", start)[0]
        assert msg.header.frame_id == f"{cam}_optical"
        assert image_array(msg).shape == shape
        # cam1 shares cam0's stamps; its frame_id tells them apart
        assert rig.sent.get(stamp_of(msg)) == "cam0"
    sem1 = image_array(rig.after("cam1", "semantic", start)[0])
    assert sem1.shape == (H1, W1) and sem1.max() < len(TINY_CLASSES)

    def both_counted():
        for _, msg in reversed(rig.diag):
            v0, v1 = diagnostics_values(msg, "cam0"), diagnostics_values(msg, "cam1")
            if v0 and v1 and int(v1["frames_processed"]) > 0:
                return v0, v1
        return None
    v0, v1 = rig.client.wait_until(both_counted, 20, "diagnostics for both cameras")
    assert int(v0["frames_processed"]) > 0
    assert int(v1["conversion_errors"]) == 0


def test_live_parameters_take_effect(rig):
    def detections_after(t):
        msgs = rig.after("cam0", "obstacles", t)
        return msgs[-1] if msgs else None

    rig.set(use_sim_time=False)  # rclpy's own parameters are not ours to reject
    rig.set(threshold=1e9)
    t = rig.send()
    assert len(rig.drive(lambda: detections_after(t), "obstacles").detections) == 0
    rig.set(threshold=-1e9)
    t = rig.send()
    assert len(rig.drive(lambda: detections_after(t), "obstacles").detections) == 1

    # region filter: drivable classes absent from the frame -> nothing "within" the drivable area
    sem = image_array(rig.drive(lambda: rig.after("cam0", "semantic", t), "semantic")[-1])
    present = {TINY_CLASSES[i] for i in np.unique(sem)}
    absent = [c for c in TINY_CLASSES if c not in present]
    if absent:
        rig.set(**{"obstacles.region": "within", "obstacles.drivable_classes": absent})
        t = rig.send()
        assert len(rig.drive(lambda: detections_after(t), "obstacles").detections) == 0
    rig.set(**{"obstacles.region": "within", "obstacles.drivable_classes": TINY_CLASSES})
    t = rig.send()
    assert len(rig.drive(lambda: detections_after(t), "obstacles").detections) == 1
    rig.set(**{"obstacles.region": "all", "obstacles.drivable_classes": ["road"]})

    # score: energy = -logsumexp(L) <= -log(K) since L >= 0; back to rba gives the same map
    def anomaly_after(t):
        msgs = rig.after("cam0", "anomaly", t)
        return image_array(msgs[-1]) if msgs else None
    t = rig.send()
    rba = rig.drive(lambda: anomaly_after(t), "rba anomaly")
    rig.set(score="energy")
    t = rig.send()
    energy = rig.drive(lambda: anomaly_after(t), "energy anomaly")
    assert energy.max() <= -math.log(len(TINY_CLASSES)) + 1e-4
    assert np.abs(energy - rba).max() > 1e-3
    rig.set(score="rba")
    t = rig.send()
    assert np.allclose(rig.drive(lambda: anomaly_after(t), "rba again"), rba, atol=1e-5)

    # overlay alpha 0: the overlay is the camera image itself
    rig.set(overlay_alpha=0.0)
    t = rig.send()
    msgs = rig.drive(lambda: rig.after("cam0", "semantic_color", t), "semantic_color")
    assert np.array_equal(image_array(msgs[-1]), rig.frame0)
    rig.set(overlay_alpha=0.5)


@pytest.mark.parametrize("values, words", [
    ({"overlay_alpha": 2.0}, ""),                              # outside the descriptor's range
    ({"score": "msp"}, "not computed"),                        # the model does not compute it
    ({"obstacles.drivable_classes": ["lane"]}, "unknown class 'lane'"),
    ({"obstacles.region": "road"}, "obstacles.region"),
    ({"model_path": "other.safetensors"}, "model_path is read at configure"),  # while active
    ({"ground.camera_height": 0.0}, ""),
])
def test_invalid_parameter_changes_are_rejected(rig, values, words):
    ((ok, reason),) = rig.client.set_params("rba_perception", values)
    assert not ok
    assert words.lower() in reason.lower()


def test_obstacle_points_are_the_footprint_of_a_bottom_cut_component(rig):
    """The whole frame is one anomalous component, cut by the image's bottom edge: its footprint
    is the bottom row's ground line (the nearest ground the camera sees) filled
    ``obstacles.footprint_depth`` behind it, on the lifted plane, in the camera frame (no
    ground_frame). Checked with the pinhole model and the camera pitch by hand."""
    start = rig.send()
    msg = rig.drive(lambda: rig.after("cam0", "obstacle_points", start), "obstacle_points")[-1]
    assert msg.header.frame_id == "cam0_optical" and msg.height == 1 and msg.point_step == 16
    assert [f.name for f in msg.fields] == ["x", "y", "z", "intensity"]
    data = np.frombuffer(msg.data, np.float32).reshape(-1, 4).astype(np.float64)
    pts = data[:, :3]
    assert len(pts) > 0
    # intensity = p(anomaly): preset:tiny has no calibration, so the 0/1 step; all flagged
    np.testing.assert_array_equal(data[:, 3], 1.0)
    # in the level frame (camera pitched down by `pitch`), y_down = height - point_height
    p, h, depth = GROUND["pitch"], GROUND["camera_height"], 0.3  # footprint_depth default
    y_level = math.cos(p) * pts[:, 1] + math.sin(p) * pts[:, 2]
    assert np.allclose(y_level, h - GROUND["point_height"], atol=1e-3)
    ground = pts.copy()  # dropped back onto the ground
    ground[:, 1] += GROUND["point_height"] * math.cos(p)
    ground[:, 2] += GROUND["point_height"] * math.sin(p)
    u = F * ground[:, 0] / ground[:, 2] + W0 / 2
    v = F * ground[:, 1] / ground[:, 2] + H0 / 2
    assert (u > -1).all() and (u < W0 + 1).all() and (v < H0).all()
    dist = np.hypot(ground[:, 0], -math.sin(p) * ground[:, 1] + math.cos(p) * ground[:, 2])
    # the bottom row's ground point in each point's column: the contact line
    dx, dy = (u - W0 / 2) / F, (H0 - 1 - H0 / 2) / F
    down, fwd = math.cos(p) * dy + math.sin(p), -math.sin(p) * dy + math.cos(p)
    contact = h / down * np.hypot(dx, fwd)
    assert (dist >= contact - 0.05).all() and (dist <= contact + depth + 0.05).all()
    assert (dist <= contact + 0.05).sum() >= W0 // GROUND["stride"] - 2  # the whole line


def test_diagnostics_report_rates_latencies_and_counters(rig):
    rig.drive(lambda: any(diagnostics_values(m, "cam0") and
                          float(diagnostics_values(m, "cam0")["input_rate_hz"]) > 0
                          for _, m in rig.diag[-3:]), "diagnostics with input")
    values = next(diagnostics_values(m, "cam0") for _, m in reversed(rig.diag)
                  if diagnostics_values(m, "cam0"))
    for key in ("input_rate_hz", "output_rate_hz", "inference_latency_ms",
                "end_to_end_latency_ms", "node_latency_ms", "frames_received", "frames_processed",
                "dropped_frames", "dropped_replaced", "dropped_stale", "conversion_errors"):
        assert key in values, key
    assert int(values["frames_processed"]) > 0
    model = [s for s in rig.diag[-1][1].status if s.name.endswith("model")][0]
    assert {kv.key: kv.value for kv in model.values}["backend"] == "torch"
