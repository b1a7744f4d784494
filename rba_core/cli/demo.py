"""``rba demo``: the perception node on demo frames (needs ROS 2), else a rosbag replay of them."""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

DEMO_FRAMES = Path(__file__).resolve().parent.parent / "weights" / "demo"


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the node (or, without ROS, a replay) on the demo frames",
                       description="With rclpy and vision_msgs installed: start the perception "
                                   "node and feed it the packaged demo frames (python -m "
                                   "rba_ros.demo). Without ROS: build a bag of the frames and "
                                   "replay it through the same pipeline (rba replay).")
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument("--model", default="", help="model file; default: the embedded model")
    p.add_argument("--frames", default=str(DEMO_FRAMES),
                   help="folder of .jpg/.png frames (default: the packaged demo frames)")
    p.set_defaults(func=run)


def _have_ros() -> bool:
    """rclpy and vision_msgs installed (looked up, not imported: rba_core never imports rclpy)."""
    return all(importlib.util.find_spec(name) is not None for name in ("rclpy", "vision_msgs"))


def run(args: argparse.Namespace) -> int:
    if _have_ros():
        cmd = [sys.executable, "-m", "rba_ros.demo", "--out", args.out, "--frames", args.frames]
        if args.model:
            cmd += ["--model", args.model]
        return subprocess.call(cmd)
    print("rba demo: ROS 2 (rclpy + vision_msgs) not importable: replaying the demo frames "
          "through the same pipeline instead of the live node")
    import shutil

    from . import main

    out = Path(args.out)
    bag = out / "demo_input.mcap"
    for old in (bag, out / "replay"):
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    rc = main(["bag-from-images", args.frames, "--rate", "7.5", "--topic", "/demo/image_raw",
               "--storage", "mcap", "-o", str(bag)])
    if rc:
        return rc
    cmd = ["replay", str(bag), "--out", str(out / "replay")]
    if args.model:
        cmd += ["--model", args.model]
    return main(cmd)
