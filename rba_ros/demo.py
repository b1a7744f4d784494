"""``make demo``: the perception node on the embedded model, fed real frames like a camera.

Starts ``python -m rba_ros.perception_node`` as a subprocess, publishes each demo frame (with a
CameraInfo) on ``/demo/image_raw`` and waits for the node's outputs. Leaves in ``--out``:

- ``overlays/<frame>_semantic.png`` and ``<frame>_anomaly.png``: what rviz would show,
- ``demo.mcap``: a rosbag2 with the input images and every output topic (rviz / Foxglove),
- ``summary.md``: per frame the main classes, the obstacles found and the latency.

This process sets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` for itself and the node (demos stay
on this machine); the node does not set it on its own.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import numpy as np  # noqa: E402

DEMO_FRAMES = Path(__file__).resolve().parent.parent / "rba_core" / "weights" / "demo"
CAMERA = "demo"
WAIT_FOR = ("semantic", "semantic_color", "anomaly_color", "obstacles")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m rba_ros.demo",
        description="Run the perception node on demo frames; write overlays, a bag and a summary.")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--frames", default=str(DEMO_FRAMES),
                   help="folder of .jpg/.png frames (default: the packaged demo frames)")
    p.add_argument("--model", default="", help="model file; default: the embedded model")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "torch",
                                                         "tensorrt"))
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds to wait for the node (model load) and for each frame's outputs")
    return p.parse_args(argv)


def list_frames(folder: Path) -> list[Path]:
    frames = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not frames:
        raise SystemExit(f"demo: no .jpg/.png frames in {folder}")
    return frames


class BagRecorder:
    """Serialized rclpy messages -> one mcap rosbag2 (rclpy's CDR == rosbags')."""

    def __init__(self, path: Path):
        import shutil

        from rosbags.rosbag2 import StoragePlugin, Writer

        from rba_core.replay.bags import output_typestore

        self.final = path
        self.tmp = path.with_suffix("")  # rosbags writes a folder holding <name>.mcap
        for old in (self.final, self.tmp):
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
        self.store = output_typestore()
        self.writer = Writer(self.tmp, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.conns: dict[str, object] = {}

    def write(self, topic: str, msg, stamp_ns: int) -> None:
        from rclpy.serialization import serialize_message

        if topic not in self.conns:
            msgtype = type(msg).__module__.split(".")[0] + "/msg/" + type(msg).__name__
            self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)
        self.writer.write(self.conns[topic], stamp_ns, serialize_message(msg))

    def close(self) -> Path:
        import shutil

        self.writer.close()
        inner = self.tmp / f"{self.tmp.name}.mcap"
        shutil.move(inner, self.final)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.final


def run(args) -> int:
    from sensor_msgs.msg import CameraInfo, Image
    from vision_msgs.msg import LabelInfo

    from rba_core.errors import RbaError
    from rba_core.imageio import read_image, write_image
    from rba_core.pipeline.image_msgs import image_array
    from rba_core.pipeline.messages import LABELS_TOPIC, OUTPUT_TOPICS, output_topic

    from .conversions import message_type
    from .harness import NodeProcess, RosClient, camera_info, make_image, next_domain

    out = Path(args.out)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    frames = list_frames(Path(args.frames))
    params = {"cameras": [CAMERA], "model_path": args.model, "backend": args.backend,
              "max_age": 0.0}
    domain = next_domain()
    repo_config = Path(__file__).resolve().parent.parent / "config" / "perception.yaml"
    base = [repo_config] if repo_config.is_file() else []
    print(f"demo: starting the node (ROS_DOMAIN_ID={domain}, LOCALHOST discovery), "
          f"{len(frames)} frames from {args.frames}", flush=True)
    with NodeProcess(out, domain, params, base_params=base) as node:
        client = RosClient(domain, "rba_demo")
        try:
            got: dict[str, dict] = {name: {} for name in OUTPUT_TOPICS}
            for name, t in OUTPUT_TOPICS.items():
                client.collect(message_type(t), output_topic(f"/{CAMERA}", name),
                               on_msg=lambda m, n=name: got[n].__setitem__(
                                   (m.header.stamp.sec, m.header.stamp.nanosec), m))
            labels = client.collect(LabelInfo, output_topic(f"/{CAMERA}", LABELS_TOPIC[0]),
                                    transient_local=True)
            pub_img = client.publisher(Image, f"/{CAMERA}/image_raw")
            pub_info = client.publisher(CameraInfo, f"/{CAMERA}/camera_info")
            client.wait_for_subscriber(f"/{CAMERA}/image_raw", node, args.timeout)
            client.wait_until(lambda: labels, args.timeout, "the node's labels", node)
            names = [c.class_name for c in labels[-1][1].class_map]
            bag = BagRecorder(out / "demo.mcap")
            rows = []
            for i, path in enumerate(frames):
                try:
                    rgb = read_image(path)
                except RbaError as exc:
                    raise SystemExit(f"demo: {exc}") from None
                h, w = rgb.shape[:2]
                now = client.node.get_clock().now().to_msg()
                stamp = (now.sec, now.nanosec)
                info = camera_info("demo_camera", w, h, f=0.9 * w, stamp=stamp)
                img = make_image(rgb, "rgb8", "demo_camera", stamp)
                t0 = time.monotonic()
                pub_info.publish(info)
                pub_img.publish(img)
                client.wait_until(lambda: all(stamp in got[n] for n in WAIT_FOR), args.timeout,
                                  f"the outputs of {path.name}", node)
                latency = time.monotonic() - t0
                ns = stamp[0] * 1_000_000_000 + stamp[1]
                bag.write(f"/{CAMERA}/camera_info", info, ns)
                bag.write(f"/{CAMERA}/image_raw", img, ns)
                for name in OUTPUT_TOPICS:
                    if stamp in got[name]:
                        bag.write(output_topic(f"/{CAMERA}", name), got[name][stamp], ns)
                for name, suffix in (("semantic_color", "semantic"), ("anomaly_color", "anomaly")):
                    write_image(out / "overlays" / f"{path.stem}_{suffix}.png",
                                image_array(got[name][stamp]))
                ids = image_array(got["semantic"][stamp])
                counts = np.bincount(ids.ravel(), minlength=len(names))
                top = [f"{names[k]} {100 * counts[k] / ids.size:.0f}%"
                       for k in np.argsort(-counts)[:3] if counts[k]]
                dets = got["obstacles"][stamp].detections
                best = max((d.results[0].hypothesis.score for d in dets), default=None)
                rows.append((path.name, latency, ", ".join(top), len(dets), best))
                print(f"  {path.name}: {latency:.2f} s, {', '.join(top)}; {len(dets)} "
                      f"obstacle(s)", flush=True)
            bag_path = bag.close()
        finally:
            client.close()
    write_summary(out / "summary.md", rows)
    print(f"demo: overlays in {out / 'overlays'}, bag {bag_path}, summary {out / 'summary.md'}")
    return 0


def write_summary(path: Path, rows) -> None:
    lines = ["# Demo: the perception node on the embedded model", "",
             "| frame | latency (s) | main classes | obstacles | best obstacle score (0..1) |",
             "|---|---|---|---|---|"]
    for name, latency, top, n, best in rows:
        lines.append(f"| {name} | {latency:.2f} | {top} | {n} | "
                     f"{'' if best is None else f'{best:.3f}'} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except AssertionError as exc:  # harness timeouts carry the node's log
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
