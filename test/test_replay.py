"""rba replay: every frame of every input format gets every output topic of the node, right."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from conftest import REPO
from rba_core.cli import main
from rba_core.pipeline.calibration import ScoreCalibration
from rba_core.pipeline.config import PipelineConfig
from rba_core.pipeline.messages import OUTPUT_TOPICS
from rba_core.pipeline.perception import Perception
from rba_core.replay.bags import BagError
from rba_core.replay.runner import ReplayConfig, pipeline_config_from_yaml, run_replay
from rba_core.replay.segments import read_metadata, read_state
from replay_util import (NS, SIZE, assert_complete_outputs, image_array, make_bag, read_bag,
                         source_frames, stamp_of, tiny_backend)

N = 4


# score -> probability: 0.9 at the threshold -8, linear up to 1 at 0 (hand-made calibration)
CALIBRATION = ScoreCalibration("rba", [-10.0, -8.0, 0.0], [0.0, 0.9, 1.0])


@pytest.fixture(scope="module")
def perception():
    return Perception(tiny_backend(), PipelineConfig(threshold=-8.0), {"rba": CALIBRATION})


@pytest.mark.parametrize("name, bag_kw, storage", [
    ("in.mcap", {}, "mcap"),                                       # rosbag2 mcap, raw rgb8
    ("in_sqlite", {"compressed": True}, "sqlite3"),                # rosbag2 sqlite3, jpeg
    ("in.bag", {"encoding": "bgr8"}, "mcap"),                      # ROS 1, bgr8
])
def test_replay_writes_every_output_for_every_frame(data_dir, tmp_path, perception, name,
                                                    bag_kw, storage):
    make_bag(data_dir, tmp_path / name, N, **bag_kw)
    out = tmp_path / "out"
    summary = run_replay(ReplayConfig(str(tmp_path / name), str(out), storage=storage,
                                      progress=False), perception)
    assert summary["complete"] and summary["frames"] == N and summary["decode_errors"] == 0
    assert read_metadata(out)["storage_identifier"] == storage
    got, src = read_bag(out), read_bag(tmp_path / name)
    image_topic = next(t for t in src if "image_raw" in t)
    stamps = assert_complete_outputs(got, image_topic)
    assert stamps == [stamp_of(m) for _, m in src[image_topic]]
    # the original image and CameraInfo messages are copied (ROS 1 ones converted to ROS 2)
    for (t0, a), (t1, b) in zip(got[image_topic], src[image_topic]):
        assert t0 == t1 and bytes(a.data) == bytes(b.data) and a.header.frame_id == "camera"
    assert [stamp_of(m) for _, m in got["/camera/camera_info"]] == stamps
    for _, cloud in got[f"{NS}/obstacle_points"]:  # x, y, z, intensity
        assert cloud.point_step == 16 and cloud.width * 16 == len(cloud.data)
    for _, cloud in got[f"{NS}/free_points"]:  # x, y, z
        assert cloud.point_step == 12 and cloud.width * 12 == len(cloud.data)
    for _, dets in got[f"{NS}/obstacles"]:
        for d in dets.detections:
            assert 0 <= d.bbox.center.position.x <= SIZE[1]
            assert 0 <= d.bbox.center.position.y <= SIZE[0]
            assert d.results[0].hypothesis.class_id == "anomaly"


def test_outputs_equal_the_backend_on_the_same_frames(data_dir, tmp_path, perception):
    make_bag(data_dir, tmp_path / "in.mcap", N)
    out = tmp_path / "out"
    run_replay(ReplayConfig(str(tmp_path / "in.mcap"), str(out), progress=False), perception)
    got = read_bag(out)
    backend = tiny_backend()
    for i, rgb in enumerate(source_frames(data_dir, N)):
        ref = backend.infer(np.ascontiguousarray(rgb.transpose(2, 0, 1))[None]).frame(0)
        anomaly = image_array(got[f"{NS}/anomaly"][i][1])
        semantic = image_array(got[f"{NS}/semantic"][i][1])
        np.testing.assert_array_equal(anomaly, ref.scores["rba"])
        np.testing.assert_array_equal(semantic, ref.class_ids)
        # obstacles: connected regions of anomaly > threshold (min_area 150 here: boxes only
        # for components at least that large)
        flagged = ref.scores["rba"] > -8.0
        dets = got[f"{NS}/obstacles"][i][1].detections
        if not flagged.any():
            assert dets == []
        assert sum(d.bbox.size_x * d.bbox.size_y for d in dets) >= 150 * len(dets)
        # 0..1 scores: every detection is flagged, so p(peak) > p(threshold) = 0.9
        assert all(0.9 < d.results[0].hypothesis.score <= 1.0 for d in dets)
        assert len({d.id for d in dets}) == len(dets)
        assert image_array(got[f"{NS}/semantic_color"][i][1]).shape == SIZE + (3,)
    labels = got[f"{NS}/labels"][0][1]
    assert [c.class_name for c in labels.class_map] == backend.info.class_names
    assert labels.threshold == pytest.approx(0.9)  # p(threshold), on the detections' scale


def test_output_types_carry_the_real_vision_msgs_hashes(data_dir, tmp_path, perception):
    make_bag(data_dir, tmp_path / "in.mcap", 1)
    run_replay(ReplayConfig(str(tmp_path / "in.mcap"), str(tmp_path / "out"), progress=False),
               perception)
    expected = json.loads((REPO / "rba_core/ros_msgs/vision_msgs/EXPECTED_TYPE_HASHES.json")
                          .read_text())
    topics = {t["topic_metadata"]["name"]: t["topic_metadata"]
              for t in read_metadata(tmp_path / "out")["topics_with_message_count"]}
    for name, msgtype in OUTPUT_TOPICS.items():
        meta = topics[f"{NS}/{name}"]
        assert meta["type"] == msgtype
        if msgtype.startswith("vision_msgs"):
            assert meta["type_description_hash"] == expected[msgtype]
    assert topics[f"{NS}/labels"]["type_description_hash"] == \
        expected["vision_msgs/msg/LabelInfo"]
    assert topics[f"{NS}/labels"]["offered_qos_profiles"][0]["durability"] == "transient_local"


def test_params_file_config_and_cli(data_dir, tmp_path, capsys):
    make_bag(data_dir, tmp_path / "in.mcap", 2)
    params = tmp_path / "perception.yaml"
    params.write_text(yaml.safe_dump({"rba_perception": {"ros__parameters": {
        "model": "preset:tiny", "cameras": ["camera"], "threshold": -7.25,
        "obstacles.min_area": 20, "ground": {"camera_height": 2.0}}}}))
    cfg = pipeline_config_from_yaml(params)
    assert (cfg.threshold, cfg.obstacles.min_area, cfg.ground.camera_height) == (-7.25, 20, 2.0)
    # the node's own params file (/**/rba_perception) feeds replay's pipeline as it is
    node = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())
    node_params = next(iter(node.values()))["ros__parameters"]
    assert pipeline_config_from_yaml(REPO / "config" / "perception.yaml").threshold == \
        node_params["threshold"]
    out = tmp_path / "out"
    args = ["replay", str(tmp_path / "in.mcap"), "--out", str(out), "--model", "preset:tiny",
            "--backend", "torch", "--config", str(params)]
    assert main(args) == 0
    got = read_bag(out)
    # preset:tiny has no calibration file: 0..1 outputs are the 0/1 step, p(threshold) = 0
    assert got[f"{NS}/labels"][0][1].threshold == 0.0
    assert len(got[f"{NS}/anomaly"]) == 2
    assert read_state(out)["pipeline"]["obstacles"]["min_area"] == 20
    # existing output: refused without --resume; a finished replay resumes to a no-op
    assert main(args) == 2 and "--resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert len(read_bag(out)[f"{NS}/anomaly"]) == 2
    # resuming with other pipeline settings would mix two configurations in one bag
    assert main(args + ["--resume", "--threshold", "1"]) == 2
    assert "pipeline settings" in capsys.readouterr().err
    with pytest.raises(BagError, match="no image topic"):
        run_replay(ReplayConfig(str(tmp_path / "in.mcap"), str(tmp_path / "o2"),
                                topics=["/x/image_raw"], progress=False),
                   Perception(tiny_backend()))
