"""``rba replay``, ``rba calibrate``, ``rba bag-from-images``: rosbags in and out, no ROS needed."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..pipeline.config import PipelineConfig
from ..pipeline.perception import Perception
from ..replay.bags import OUTPUT_NAMESPACE, STORAGES
from ..runtime import load_backend, status_text
from ..imageio import parse_wxh
from .common import add_model_args, config_from_args

log = logging.getLogger(__name__)

REPLAY_DESCRIPTION = f"""\
Run the perception pipeline over a bag and write what the node would have published.

Reads rosbag2 (folder, .mcap or .db3) and ROS 1 .bag files with rosbags (no ROS install):
sensor_msgs/Image in every common encoding (rgb8, bgr8, rgba8, bgra8, mono8/16, yuv422/yuyv,
bayer_*; row padding honoured) and CompressedImage (jpeg, png). The output is a rosbag2 folder
with the original image and CameraInfo messages plus, per image topic /CAM/image_raw, the
node's topics under {OUTPUT_NAMESPACE.format(camera='/CAM')}/ (semantic, semantic_color, anomaly, anomaly_color,
obstacles, obstacle_points, labels): same types, stamps, frame ids and QoS as the node.

Crash safety: the output is a split bag (OUT/OUT_0.mcap, OUT_1.mcap, ...); a segment is listed in
OUT/metadata.yaml only once it is closed, so after Ctrl-C (closed cleanly) or a kill (SIGKILL:
the open segment, at most --segment-seconds of work, is dropped) OUT is a valid bag of the frames
done so far, and --resume continues after the last one, none missing or duplicated.

Ground truth (optional): --gt DIR (masks named by frame index order or by stamp) or --gt-topic
(a mask topic in the input bag, matched by header stamp) gives the metrics of `rba eval` (paper
protocol AP / AUROC / FPR95, or mIoU with --gt-task closed) per topic and pooled, written to
OUT/eval/results.json and results.md.

example:
  rba bag-from-images ../shared/data/camvid/val --rate 15 -o camvid.mcap \\
      --camera-info 400 400 240 180
  rba replay camvid.mcap --out out/replay --model preset:tiny --backend torch
"""


def add_pipeline_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p, scores_default=None)
    p.add_argument("--input-size", default=None, metavar="WxH",
                   help="network input size for ONNX Runtime / TensorRT (export of a "
                        ".safetensors model): frames are resized to it and back; default: each "
                        "frame size gets its own graph, exported when first seen")
    p.add_argument("--config", default=None,
                   help="pipeline YAML (PipelineConfig fields) or the node's params file "
                        "(rba_perception: ros__parameters: ...)")
    p.add_argument("--threshold", type=float, default=None, help="override the threshold")
    p.add_argument("--score", default=None, help="override the anomaly score (e.g. rba)")
    p.add_argument("--topics", nargs="+", default=None, metavar="TOPIC",
                   help="image topics (default: every Image / CompressedImage topic)")
    p.add_argument("--limit", type=int, default=None, help="only the first N frames")


def add_parser(sub) -> None:
    p = sub.add_parser("replay", help="run the node's pipeline over a rosbag, write an output bag",
                       description=REPLAY_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="input bag: rosbag2 folder, .mcap, .db3 or ROS 1 .bag")
    p.add_argument("--out", "-o", required=True, help="output rosbag2 folder")
    add_pipeline_args(p)
    p.add_argument("--storage", choices=STORAGES, default="mcap", help="output storage")
    p.add_argument("--namespace", default=OUTPUT_NAMESPACE,
                   help="output namespace template; {camera} = the image topic's namespace")
    p.add_argument("--resume", action="store_true", help="continue an interrupted replay")
    p.add_argument("--batch", type=int, default=1, help="frames per backend call")
    p.add_argument("--workers", type=int, default=2, help="threads encoding outputs")
    p.add_argument("--segment-seconds", type=float, default=5.0,
                   help="close an output segment every S seconds (bounds what a kill loses)")
    p.add_argument("--segment-frames", type=int, default=0,
                   help="... or every N frames (0: by time only)")
    g = p.add_argument_group("ground truth")
    g.add_argument("--gt", default=None, help="folder of masks (PNG): by index or by stamp")
    g.add_argument("--gt-topic", nargs="+", default=None, metavar="TOPIC",
                   help="mask topic(s) in the input bag (relative: in each camera namespace)")
    g.add_argument("--gt-key", choices=("auto", "index", "stamp"), default="auto",
                   help="how --gt files map to frames: index (sorted names = frame order per "
                        "topic) or stamp (name = nanoseconds or SEC_NANOSEC); auto: stamp if "
                        "every name is one")
    g.add_argument("--gt-task", choices=("anomaly", "closed"), default="anomaly",
                   help="anomaly: 0 normal, 1 anomaly, 255 void; closed: class ids")
    g.add_argument("--label-map", default=None, metavar="RAW:OUT,...",
                   help="raw mask value -> label (unlisted values become void 255)")
    g.add_argument("--ignore-index", type=int, default=255, help="closed-set void label")
    g.add_argument("--eval-out", default=None, help="report folder (default: OUT/eval)")
    p.set_defaults(func=run_replay)

    c = sub.add_parser("calibrate", help="anomaly threshold for a target false-alarm rate",
                       description="On a bag of normal driving (no anomalies), find the "
                       "threshold at which at most --target-fpr of the (region) pixels are "
                       "flagged (score > threshold), exactly, from pooled score counts. Writes a "
                       "YAML snippet for the node's params file, a JSON summary, a PNG of "
                       "the curve (flagged share vs threshold) and the score -> probability "
                       "calibration (0..1 detection scores; copy it next to the model as "
                       "<model stem>.calibration.yaml).")
    c.add_argument("input", help="input bag")
    c.add_argument("--target-fpr", type=float, required=True,
                   help="largest share of pixels flagged on normal driving (e.g. 0.01)")
    c.add_argument("--region", default="all",
                   help="comma-separated predicted classes whose pixels count (e.g. road), "
                        "or 'all'")
    c.add_argument("--node-name", default="/**/rba_perception",
                   help="node key of the snippet (as in config/perception.yaml)")
    c.add_argument("-o", "--out", required=True, help="YAML snippet to write (.yaml)")
    c.add_argument("--calibration", default=None, metavar="PATH",
                   help="score -> probability file to write (default: OUT's stem + "
                        ".calibration.yaml)")
    add_pipeline_args(c)
    c.set_defaults(func=run_calibrate)

    b = sub.add_parser("bag-from-images", help="turn a folder of frames into a camera bag",
                       description="Frames sorted by name, stamped at --rate. Output by name: "
                       "X.mcap / X.db3 a single rosbag2 storage file, X.bag a ROS 1 bag, "
                       "anything else a rosbag2 folder (--storage).")
    b.add_argument("folder", help="folder of images")
    b.add_argument("-o", "--out", required=True, help="output bag")
    b.add_argument("--rate", type=float, default=15.0, help="frames per second (stamps)")
    b.add_argument("--topic", default=None,
                   help="image topic (default /camera/image_raw, + /compressed)")
    b.add_argument("--compressed", action="store_true", help="CompressedImage instead of Image")
    b.add_argument("--format", choices=("jpeg", "png"), default="jpeg", help="compression")
    b.add_argument("--quality", type=int, default=90, help="jpeg quality")
    b.add_argument("--encoding", choices=("rgb8", "bgr8", "rgba8", "bgra8", "mono8"),
                   default="rgb8", help="raw image encoding")
    b.add_argument("--frame-id", default="camera", help="header frame_id")
    b.add_argument("--camera-info", nargs="+", type=float, default=None, metavar="K",
                   help="intrinsics fx fy cx cy (or the 9 values of K): adds CameraInfo")
    b.add_argument("--start", type=float, default=None, help="first stamp, seconds since epoch")
    b.add_argument("--limit", type=int, default=None, help="only the first N frames")
    b.add_argument("--resize", default=None, metavar="WxH", help="resize frames first")
    b.add_argument("--storage", choices=STORAGES, default="sqlite3",
                   help="storage of a rosbag2 folder output")
    b.set_defaults(func=run_bag_from_images)


# -- shared set-up ------------------------------------------------------------------------------
def load_perception(args: argparse.Namespace, extra_scores: list[str] = ()) -> Perception:
    from ..pipeline.calibration import model_calibrations
    from ..replay.runner import pipeline_config_from_yaml

    cfg = pipeline_config_from_yaml(args.config) if args.config else PipelineConfig()
    if args.threshold is not None:
        cfg.threshold = args.threshold
    if args.score is not None:
        cfg.score = args.score
    scores = args.scores or ",".join(dict.fromkeys([cfg.score, *extra_scores]))
    backend = load_backend(args.model, args.backend, scores, args.inference, args.device,
                           input_size=parse_wxh(args.input_size, "--input-size"),
                           batch_size=getattr(args, "batch", 1))
    return Perception(backend, cfg, model_calibrations(args.model))


def run_replay(args: argparse.Namespace) -> int:
    from ..replay.groundtruth import GroundTruth, evaluate_replay
    from ..replay.runner import ReplayConfig, run_replay as replay

    gt = None
    if args.gt or args.gt_topic:
        gt = GroundTruth(folder=args.gt, topics=args.gt_topic or [], key=args.gt_key,
                         task=args.gt_task, label_map=args.label_map,
                         ignore_index=args.ignore_index, bag=args.input)
        gt.check()  # fail before the long run, not after
    topics = args.topics or []
    if gt is not None and gt.topics and not topics:  # every image topic except the masks
        from ..replay.bags import image_connections, open_reader

        reader = open_reader(args.input)
        try:
            topics = gt.camera_topics(list(image_connections(reader, None)))
        finally:
            reader.close()
    cfg = config_from_args(ReplayConfig, args, topics=topics)
    perception = load_perception(args)
    summary = replay(cfg, perception)
    print(f"{'wrote' if summary['frames'] else 'nothing new in'} {args.out}: "
          f"{summary['frames']} frame(s) this run, {summary['frames_total']} in the bag, "
          f"{summary['fps']:.2f} frames/s ({status_text(perception.backend)})"
          + ("" if summary["complete"] else " (incomplete: continue with --resume)"))
    if summary.get("interrupted"):
        return 130
    if gt is not None and summary["complete"]:
        eval_out = Path(args.eval_out or Path(args.out) / "eval")
        report = evaluate_replay(args.out, gt, summary["topics"], args.namespace, eval_out)
        print((eval_out / "results.md").read_text())
        print(f"wrote {', '.join(report['files'])} to {eval_out}")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from ..replay.calibrate import CalibrationConfig, calibrate

    perception = load_perception(args)
    cfg = config_from_args(CalibrationConfig, args, topics=args.topics or [],
                           model=args.model or "")
    result = calibrate(cfg, perception)
    print(json.dumps({k: result[k] for k in ("threshold", "threshold_probability", "score",
                                             "target_fpr", "achieved_fpr", "pixels", "frames")},
                     indent=1))
    print(f"wrote {', '.join(result['files'])}")
    return 0


def run_bag_from_images(args: argparse.Namespace) -> int:
    from ..replay.from_images import START_SEC, ImagesToBag, bag_from_images

    cfg = config_from_args(ImagesToBag, args, resize=parse_wxh(args.resize, "--resize"),
                           start=START_SEC if args.start is None else args.start)
    summary = bag_from_images(cfg)
    print(f"wrote {summary['frames']} frame(s) on {summary['topic']}"
          + (f" (+ {summary['camera_info']})" if summary["camera_info"] else "")
          + f" to {summary['out']}")
    return 0
