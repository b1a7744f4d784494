"""rba replay's ground outputs on a rendered scene: the bag's distorted CameraInfo and /tf_static,
ids kept in frame order across encode threads and across --resume.

The bag (written here with rosbags) holds a camera with strong radial distortion watching a box
move 5 cm per frame, and one /tf_static message after the third frame. The "model" reads the
scene's colours (test/scene_model.py), so the anomaly map is the mask rendered with
cv2.projectPoints.
"""
from __future__ import annotations

import numpy as np
import pytest

from rba_core.pipeline.config import GroundConfig, ObstacleConfig, PipelineConfig
from rba_core.pipeline.messages import camera_info_msg, header, image_msg
from rba_core.pipeline.perception import Perception
from rba_core.replay.bags import output_typestore, serialize
from rba_core.replay.runner import ReplayConfig, run_replay
from replay_util import read_bag
from scene_model import paint, write_scene_model
from synthetic_scene import Rig, horizon_rows, pinhole, rect_distance, render

pytest.importorskip("onnxruntime")

RIG = Rig(pinhole(), np.array([-0.35, 0.12, 0.0, 0.0, -0.02]))
W, H = RIG.size
N, TF_AFTER = 8, 3                 # frames; /tf_static arrives after the third
DEPTH, LIFT = 0.3, 0.2
OPTICAL = "cam_optical"
NS = "/cam/rba"


def box(i: int):
    dy = -0.05 * i
    return (5.0, 1.0 + dy, 0.0), (5.6, 2.0 + dy, 1.0)


def tf_static() -> dict:
    """base_footprint -> camera_link -> cam_optical of the rig (REP 103 optical axes)."""
    pitch = [0.0, np.sin(RIG.pitch / 2), 0.0, np.cos(RIG.pitch / 2)]

    def ts(parent, child, xyz, quat):
        return {"header": header((0, 0), parent), "child_frame_id": child,
                "transform": {"translation": dict(zip("xyz", map(float, xyz))),
                              "rotation": dict(zip("xyzw", map(float, quat)))}}
    return {"transforms": [ts("base_footprint", "camera_link", (0, 0, RIG.height), pitch),
                           ts("camera_link", OPTICAL, (0, 0, 0), (-0.5, 0.5, -0.5, 0.5))]}


@pytest.fixture(scope="module")
def scene_bag(tmp_path_factory):
    from rosbags.rosbag2 import StoragePlugin, Writer

    tmp = tmp_path_factory.mktemp("scene_bag")
    store = output_typestore()
    path = tmp / "in"
    road = horizon_rows(RIG)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {t: writer.add_connection(t, m, typestore=store) for t, m in (
            ("/cam/image_raw", "sensor_msgs/msg/Image"),
            ("/cam/camera_info", "sensor_msgs/msg/CameraInfo"),
            ("/tf_static", "tf2_msgs/msg/TFMessage"))}
        for i in range(N):
            t = 1_700_000_000 * 10**9 + i * 100_000_000
            hdr = header((t // 10**9, t % 10**9), OPTICAL)
            info = camera_info_msg(hdr, RIG.k.ravel().tolist(), W, H, RIG.d, "plumb_bob")
            writer.write(conns["/cam/camera_info"], t,
                         serialize(store, "sensor_msgs/msg/CameraInfo", info))
            rgb = paint(render(RIG, [box(i)]), road)
            writer.write(conns["/cam/image_raw"], t,
                         serialize(store, "sensor_msgs/msg/Image", image_msg(hdr, rgb, "rgb8")))
            if i == TF_AFTER - 1:
                writer.write(conns["/tf_static"], t + 50_000_000,
                             serialize(store, "tf2_msgs/msg/TFMessage", tf_static()))
    return path


@pytest.fixture(scope="module")
def perception(tmp_path_factory):
    from rba_core.runtime import load_backend

    model = write_scene_model(tmp_path_factory.mktemp("model") / "scene.onnx", H, W)
    cfg = PipelineConfig(threshold=0.5, ground_frame="base_footprint",
                         ground=GroundConfig(camera_height=RIG.height, pitch=RIG.pitch,
                                             point_height=LIFT, stride=2),
                         obstacles=ObstacleConfig(min_area=10, footprint_depth=DEPTH))
    return Perception(load_backend(str(model), "onnxruntime", "rba"), cfg)


def cloud(msg) -> np.ndarray:
    return np.frombuffer(bytes(msg.data), np.float32).reshape(
        msg.width, msg.point_step // 4)[:, :3].astype(np.float64)


def test_replay_uses_the_bags_distortion_and_tf_static(scene_bag, tmp_path, perception):
    out = tmp_path / "out"
    summary = run_replay(ReplayConfig(str(scene_bag), str(out), workers=2, progress=False),
                         perception)
    assert summary["complete"] and summary["frames"] == N
    assert summary["frames_without_transform"] == TF_AFTER
    got = read_bag(out)
    assert len(got["/tf_static"]) == 1  # copied, so the output bag shows in rviz as it is
    for i, (_, msg) in enumerate(got[f"{NS}/obstacle_points"]):
        pts = cloud(msg)
        if i < TF_AFTER:  # no transform yet: ground.*, in the camera's frame
            assert msg.header.frame_id == OPTICAL
            pts = RIG.to_world(pts)
        else:
            assert msg.header.frame_id == "base_footprint"
        assert len(pts) > 20
        np.testing.assert_allclose(pts[:, 2], LIFT, atol=2e-3)
        assert rect_distance(pts[:, :2], *box(i)).max() <= DEPTH + 0.1, i
    frames_3d = [m.header.frame_id for _, m in got[f"{NS}/obstacles_3d"]]
    assert frames_3d == [OPTICAL] * TF_AFTER + ["base_footprint"] * (N - TF_AFTER)
    # one tracker per camera, in frame order although two threads encode: one id throughout
    ids = [[d.id for d in m.detections] for _, m in got[f"{NS}/obstacles"]]
    assert ids == [ids[0]] * N and len(ids[0]) == 1
    assert [[d.id for d in m.detections] for _, m in got[f"{NS}/obstacles_3d"]] == ids


def test_resumed_replay_never_reuses_an_id(scene_bag, tmp_path, perception):
    out = tmp_path / "out"
    run_replay(ReplayConfig(str(scene_bag), str(out), limit=4, segment_frames=1,
                            progress=False), perception)
    summary = run_replay(ReplayConfig(str(scene_bag), str(out), resume=True, segment_frames=1,
                                      progress=False), perception)
    assert summary["resumed_from"] == 4 and summary["frames"] == N - 4
    ids = [[d.id for d in m.detections] for _, m in read_bag(out)[f"{NS}/obstacles"]]
    first, second = ids[:4], ids[4:]
    assert first == [first[0]] * 4 and second == [second[0]] * 4
    # the tracks start afresh after --resume, the id count goes on: a new id, not a reused one
    assert int(second[0][0]) > int(first[0][0])


def test_each_cameras_tracker_sees_its_frames_in_order_across_threads():
    """Frame 0 takes longer to post-process than frame 1 (and both run at once: no lock
    serialises them); the tracker still gets frame 0, then frame 1."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from rba_core.pipeline.camera import CameraModel
    from rba_core.pipeline.obstacles import Obstacle, ObstacleResult
    from rba_core.replay.runner import OutputEncoder
    from rba_core.replay.source import Frame

    class Slow:  # the Perception surface the encoder uses
        info = SimpleNamespace(class_names=["road"])
        cfg = PipelineConfig()
        threshold_probability = 0.0

        def postprocess(self, result):
            return result

        def detection_scores(self, result):
            return [0.5]

        def ground(self, result, camera, pose):
            if result.obstacles.obstacles[0].x == 0:
                overlapped.append(second_started.wait(timeout=10))
                time.sleep(0.3)  # frame 1 is done with its ground by now
            else:
                second_started.set()
            return SimpleNamespace(footprints=[None], obstacle_points=np.zeros((0, 3)),
                                   obstacle_probability=np.zeros(0), free_points=np.zeros((0, 3)))

        def semantic_color(self, rgb, result):
            return rgb

        anomaly_color = semantic_color

    class Spy:
        next_id, seen = 1, []

        def update(self, boxes, centers, cfg):
            self.seen.append(boxes[0][0])
            return [1]

    def result(x):
        ob = Obstacle(x, 0, 2, 2, 4, 1.0, 1)
        return SimpleNamespace(class_ids=np.zeros((4, 6), np.uint8),
                               anomaly=np.zeros((4, 6), np.float32),
                               obstacles=ObstacleResult([ob], np.zeros((4, 6), bool),
                                                        np.zeros((4, 6), np.int32)))

    second_started, overlapped = threading.Event(), []
    enc = OutputEncoder(Slow())
    spy = enc.trackers["/front/image_raw"] = Spy()
    cam = CameraModel.from_fields([5.0, 0, 3.0, 0, 5.0, 2.0, 0, 0, 1.0])
    frames = [Frame(i, "/front/image_raw", "sensor_msgs/msg/Image", i, b"", (i, 0), "cam",
                    rgb=np.zeros((4, 6, 3), np.uint8), camera=cam) for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(enc.encode, f, result(i), enc.ticket(f))
                   for i, f in enumerate(frames)]
        for fut in futures:
            fut.result(timeout=10)
    assert overlapped == [True] and spy.seen == [0, 1]
