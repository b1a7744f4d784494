#!/usr/bin/env python3
"""Obstacle geometry: accuracy before/after footprints, and the per-frame cost of the new work.

On scenes rendered with cv2.projectPoints (test/synthetic_scene.py: camera 1.5 m high, pitched
0.1 rad down, 480x360, f = 400 px; a 1 m box at 6 m, a 2 m pole at 8 m):

1. accuracy: the farthest obstacle point behind the true footprint (and the pole's farthest
   point), before (every obstacle pixel on the stride grid projected onto the ground, what the
   node published before footprints) and after (``Perception.ground``: footprints filled to
   ``footprint_depth``; goal <= depth + 0.1 m);
2. cost at 360x480 with plumb_bob distortion, road in the lower half: per frame, interleaved in
   one loop, median of ``--rounds``:
   - ground: ``Perception.ground`` (footprints, free points, probabilities, boxes) + detection
     scores + tracker update + 3D box poses;
   - frame: the model's ``Perception.process`` on a real 360x480 CamVid frame (``--model``);
   ground as a share of the frame time and of a nominal 100 ms (the node's added latency against
   main is measured end to end by bench/bench_node.py).
   The one-off cost of a new CameraInfo / pose (rays through cv2.undistortPoints, ground map) is
   printed separately: it is paid once per camera, not per frame.

    python bench/bench_obstacles.py                 # default model, torch, 30 rounds
    python bench/bench_obstacles.py --model none    # geometry only (no frame time)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("RBA_DATA_DIR", REPO.parent / "shared" / "data"))


def accuracy(depth: float) -> dict:
    import numpy as np

    from rba_core.pipeline.camera import CameraModel
    from rba_core.pipeline.config import GroundConfig, ObstacleConfig, PipelineConfig
    from rba_core.pipeline.geometry import ground_map, level_pose
    from rba_core.pipeline.perception import Perception
    from synthetic_scene import Rig, SceneBackend, outputs, pinhole, rect_distance, render

    out = {}
    rigs = {"pinhole": Rig(pinhole()),
            "plumb_bob": Rig(pinhole(), np.array([-0.35, 0.12, 0.0, 0.0, -0.02]))}
    box, pole = ((6.0, -0.5, 0.0), (6.6, 0.5, 1.0)), ((7.95, -0.55, 0.0), (8.05, -0.45, 2.0))
    for name, rig in rigs.items():
        cfg = PipelineConfig(threshold=0.0, ground=GroundConfig(
            camera_height=rig.height, pitch=rig.pitch, point_height=0.0),
            obstacles=ObstacleConfig(min_area=10, footprint_depth=depth))
        p = Perception(SceneBackend(), cfg)
        cam = CameraModel.from_fields(**rig.camera_info())
        for what, obj in (("box", box), ("pole", pole)):
            result = p.postprocess(outputs(render(rig, [obj])))
            gm = ground_map(cam, result.class_ids.shape, level_pose(cfg.ground))
            s = cfg.ground.stride  # every obstacle pixel on the stride grid, as before
            grid = np.zeros_like(result.obstacles.mask)
            grid[::s, ::s] = True
            flat = gm.points[result.obstacles.mask & grid & (gm.range <= cfg.ground.max_range)]
            before = flat.astype(float)  # level frame = world frame of the rig (x fwd, z up)
            g = p.ground(result, cam)
            after = rig.to_world(g.obstacle_points.astype(float))
            for when, pts in (("before", before), ("after", after)):
                out[f"{name} {what} {when}: farthest behind footprint (m)"] = round(float(
                    rect_distance(pts[:, :2], *obj).max()), 3)
                if what == "pole":
                    out[f"{name} pole {when}: farthest range (m)"] = round(float(
                        np.hypot(pts[:, 0], pts[:, 1]).max()), 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--model", default="default",
                    help="model for the frame time (default, a file, preset:NAME) or 'none'")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depth", type=float, default=0.3, help="obstacles.footprint_depth")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "test"))  # the rendered scene (synthetic_scene.py)
    import cv2
    import numpy as np

    from rba_core.pipeline.camera import CameraModel, pixel_rays
    from rba_core.pipeline.config import GroundConfig, ObstacleConfig, PipelineConfig
    from rba_core.pipeline.geometry import ground_map, level_pose
    from rba_core.pipeline.perception import Perception
    from rba_core.pipeline.tracking import ObstacleTracker
    from synthetic_scene import Rig, SceneBackend, outputs, pinhole, render

    report = {"accuracy": accuracy(args.depth)}

    rig = Rig(pinhole(), np.array([-0.35, 0.12, 0.0, 0.0, -0.02]))
    w, h = rig.size
    road = np.zeros((h, w), bool)
    road[h // 2:] = True
    mask = render(rig, [((6.0, -0.5, 0.0), (6.6, 0.5, 1.0)), ((9.0, 2.0, 0.0), (9.5, 2.5, 0.8))])
    cfg = PipelineConfig(threshold=0.0, ground=GroundConfig(camera_height=rig.height,
                                                            pitch=rig.pitch),
                         obstacles=ObstacleConfig(min_area=10, footprint_depth=args.depth))
    geo = Perception(SceneBackend(), cfg)
    result = geo.postprocess(outputs(mask, road))
    cam = CameraModel.from_fields(**rig.camera_info())
    pixel_rays.cache_clear()  # (the accuracy scenes used the same camera)
    ground_map.cache_clear()
    t0 = time.perf_counter()
    pixel_rays(cam, (h, w))
    ground_map(cam, (h, w), level_pose(cfg.ground))
    once_ms = (time.perf_counter() - t0) * 1e3
    tracker = ObstacleTracker()

    def after():
        g = geo.ground(result, cam)
        g.free_points  # noqa: B018 - computed on first use
        geo.detection_scores(result)
        centers = [None if f is None else f.center for f in g.footprints]
        tracker.update([(o.x, o.y, o.w, o.h) for o in result.obstacles.obstacles], centers,
                       cfg.obstacles)
        for f in g.footprints:
            if f is not None:
                g.box_pose(f.box)
        return g

    model = frame = None
    if args.model != "none":
        import torch

        from rba_core.runtime import load_backend

        torch.set_num_threads(args.threads)
        frame_path = sorted((DATA / "camvid" / "val").glob("*.png"))[0]
        frame = cv2.cvtColor(cv2.imread(str(frame_path)), cv2.COLOR_BGR2RGB)
        frame = cv2.resize(frame, (w, h))
        model = Perception(load_backend(None if args.model == "default" else args.model,
                                        args.backend, "rba", threads=args.threads))
        model.process([frame])  # warm-up

    times = {"ground_ms": [], "ground_cpu_ms": [], "frame_ms": []}
    g = after()
    for _ in range(args.rounds):
        t1, c1 = time.perf_counter(), time.thread_time()
        after()
        t2, c2 = time.perf_counter(), time.thread_time()
        times["ground_ms"].append((t2 - t1) * 1e3)
        times["ground_cpu_ms"].append((c2 - c1) * 1e3)  # this thread's CPU: robust to load
        if model is not None:
            t3 = time.perf_counter()
            model.process([frame])
            times["frame_ms"].append((time.perf_counter() - t3) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    added, added_cpu = med["ground_ms"], med["ground_cpu_ms"]
    cost = {"rounds": args.rounds, "one-off per CameraInfo/pose (ms)": round(once_ms, 1),
            "obstacle points": int(len(g.obstacle_points)), "free points": int(len(g.free_points)),
            **{f"{k} (median)": round(v, 2) for k, v in med.items()},
            "ground cpu / 100 ms": f"{added_cpu / 100:.1%}",
            "load (1, 5, 15 min)": [round(x, 1) for x in os.getloadavg()]}
    if "frame_ms" in med:
        cost["ground wall / frame wall"] = f"{added / med['frame_ms']:.1%}"
    report["cost at 360x480"] = cost
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
