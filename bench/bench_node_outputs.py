#!/usr/bin/env python3
"""The node's per-frame work after inference, this tree against another (e.g. main), side by side.

What ``PerceptionNode._publish`` does for a frame a robot subscribes to: ``Perception.postprocess``
(obstacles), ``frame_messages`` for ``anomaly``, ``obstacles``, ``obstacle_points`` and, where the
tree has them, ``free_points`` and ``obstacles_3d``, then ``to_msg`` (the rclpy messages). Input:
a 360x480 scene rendered with cv2.projectPoints (test/synthetic_scene.py: plumb_bob distortion,
road below the horizon, a box at 6 m and one at 9 m), CameraInfo-like values of the same camera.

Each tree runs in its own process (same interpreter), alternating ``--rounds`` times; each process
times ``--frames`` frames after a warm-up (the camera rays are computed once per camera, like the
node does when CameraInfo arrives). Reported per tree: the median wall and thread-CPU ms per frame
(CPU time is robust to other jobs on a shared machine), and the added work as a share of the frame
time of ``--model`` (``Perception.process`` of that model on the scene frame, timed in the same
processes; default: bench_node's tiny ONNX export at 360x480 if present).

    python bench/bench_node_outputs.py --other /path/to/main/checkout
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def one(args) -> None:
    """Time one tree (its rba_core on sys.path first); print a JSON line."""
    sys.path[:0] = [args.tree, str(HERE / "test")]
    import numpy as np

    from rba_core.pipeline import messages as M
    from rba_core.pipeline.config import GroundConfig, ObstacleConfig, PipelineConfig
    from rba_core.pipeline.perception import Perception
    from rba_ros.conversions import message_type, to_msg
    from synthetic_scene import Rig, SceneBackend, horizon_rows, outputs, pinhole, render

    rig = Rig(pinhole(), np.array([-0.35, 0.12, 0.0, 0.0, -0.02]))
    w, h = rig.size
    boxes = [((6.0, -0.5, 0.0), (6.6, 0.5, 1.0)), ((9.0, 2.0, 0.0), (9.5, 2.5, 0.8))]
    out = outputs(render(rig, boxes), horizon_rows(rig))
    cfg = PipelineConfig(threshold=0.0, ground=GroundConfig(camera_height=rig.height,
                                                            pitch=rig.pitch),
                         obstacles=ObstacleConfig(min_area=10))
    p = Perception(SceneBackend(), cfg)
    fields = {f.name for f in dataclasses.fields(M.FrameData)}
    hdr = M.header((1, 2), "cam_optical")
    rgb = np.zeros((h, w, 3), np.uint8)
    wanted = {"anomaly", "obstacles", "obstacle_points", "free_points", "obstacles_3d"} & \
        set(M.OUTPUT_TOPICS)
    if "camera" in fields:  # CameraModel, tracker (this branch)
        from rba_core.pipeline.camera import CameraModel
        from rba_core.pipeline.tracking import ObstacleTracker

        camera, tracker = CameraModel.from_fields(**rig.camera_info()), ObstacleTracker()
        p.warm(camera)  # what the node does when CameraInfo arrives

        def frame(result):
            return M.FrameData(p, hdr, rgb, result, camera, None, tracker)
    else:  # K and the CameraInfo size (before)
        def frame(result):
            return M.FrameData(p, hdr, rgb, result, rig.k.ravel().tolist(), rig.size)

    model = None
    if args.model:
        from rba_core.runtime import load_backend

        model = Perception(load_backend(args.model, "onnxruntime" if args.model.endswith(
            ".onnx") else "torch", "rba", threads=2))
        model.process([rgb])
    work, cpu, frame_ms = [], [], []
    for i in range(args.frames + 2):
        t0, c0 = time.perf_counter(), time.thread_time()
        msgs = M.frame_messages(frame(p.postprocess(out)), wanted)
        for name, data in msgs.items():
            to_msg(message_type(M.OUTPUT_TOPICS[name]), data)
        t1, c1 = time.perf_counter(), time.thread_time()
        if i >= 2:  # warm-up
            work.append((t1 - t0) * 1e3)
            cpu.append((c1 - c0) * 1e3)
            if model is not None:
                t2 = time.perf_counter()
                model.process([rgb])
                frame_ms.append((time.perf_counter() - t2) * 1e3)
    print(json.dumps({"outputs": sorted(msgs), "wall_ms": statistics.median(work),
                      "cpu_ms": statistics.median(cpu),
                      "frame_ms": statistics.median(frame_ms) if frame_ms else None}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--other", required=False, help="the other checkout (e.g. main)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=20)
    default_model = Path(os.environ.get("TMPDIR", "/tmp")) / "rba_bench_tiny-360x480.onnx"
    ap.add_argument("--model", default=str(default_model) if default_model.is_file() else "",
                    help="model whose Perception.process time is the frame time")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tree", default=str(HERE), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args)
        return 0
    trees = {"this": str(HERE)}
    if args.other:
        trees["other"] = str(Path(args.other).resolve())
    runs = {name: [] for name in trees}
    for r in range(args.rounds):
        for name, tree in trees.items():
            cmd = [sys.executable, __file__, "--one", "--tree", tree, "--frames",
                   str(args.frames), "--model", args.model]
            env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "2"}
            res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
            if res.returncode:
                print(res.stderr[-3000:], file=sys.stderr)
                return 1
            runs[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {name}: {runs[name][-1]}", flush=True)
    report = {"load (1, 5, 15 min)": [round(x, 1) for x in os.getloadavg()]}
    for name, rs in runs.items():
        report[name] = {"outputs": rs[0]["outputs"],
                        **{k: round(statistics.median(r[k] for r in rs), 2)
                           for k in ("wall_ms", "cpu_ms")}}
    frames = [r["frame_ms"] for rs in runs.values() for r in rs if r["frame_ms"]]
    if frames:
        report["frame_ms (model, median)"] = round(statistics.median(frames), 1)
    if "other" in runs:
        for k in ("wall_ms", "cpu_ms"):
            added = report["this"][k] - report["other"][k]
            report[f"added {k}"] = round(added, 2)
            if frames:
                report[f"added {k} / frame"] = f"{added / statistics.median(frames):.2%}"
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
