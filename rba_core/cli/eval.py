"""``rba eval``: anomaly (AP / AUROC / FPR95, SMIYC) or closed-set (mIoU) evaluation of a model."""
from __future__ import annotations

import argparse
import sys

from ..data.datasets import DATASETS
from ..evaluation.report import markdown_table
from ..evaluation.runner import ALL_SCORES, PROTOCOLS, EvalConfig, run_eval
from ..imageio import parse_wxh
from .common import add_model_args, config_from_args

DESCRIPTION = """\
Evaluate a model on a dataset. The network runs once per image; every requested score (and,
with the torch backend, every inference mode) is computed from the same outputs and reported
side by side. Writes results.json, results.md (one row per score), roc_/pr_<mode>.png curves and
panels/ (image | anomaly map | ground truth of the best and worst images) into --out.

protocols (anomaly datasets):
  paper  pooled pixels (void dropped), exact AP / AUROC / FPR at the first TPR > 95%
  smiyc  SegmentMeIfYouCan: 768 quantile bins per frame, step-sum AP, FPR at TPR >= 95%,
         best-F1 threshold, then component sIoU gt / PPV / mean F1 (anomaly or obstacle track)
closed-set datasets (cityscapes, camvid) report mIoU and per-class IoU.

dataset layouts (--root):
  road_anomaly    images/<i>.jpg + labels_masks/<i>.png (0 normal, 2 anomaly),
                  or frames/<n>.jpg + frames/<n>.labels/labels_semantic.png
  fs_static, fs_lost_found
                  images/<i>.<ext> + labels_masks/<i>.png, or original/ + labels/ (0, 1, 255 void)
  smiyc_anomaly, smiyc_obstacle
                  images/<fid>.jpg|webp + labels_masks/<fid>_labels_semantic.png
  cityscapes      leftImg8bit/<split>/<city>/*_leftImg8bit.png +
                  gtFine/<split>/<city>/*_gtFine_labelTrainIds.png (or _labelIds.png)
  camvid          <split>/*.png + <split>annot/*.png (SegNet 11 classes, 11 void)
  folder          images/ + labels_masks/|labels/|masks/ (same stems, .png), with --label-map

example:
  rba eval --model preset:tiny --dataset road_anomaly --root ../shared/data/anomaly/RoadAnomaly \\
           --inference exact,fast --out out/eval_ra
"""


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model: anomaly metrics per score, or mIoU",
                       description=DESCRIPTION, conflict_handler="resolve",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, scores_default=",".join(ALL_SCORES))
    p.add_argument("--inference", default=None,
                   help="inference mode(s), comma-separated: exact, fast or exact,fast (torch "
                        "backend: both from one network pass, post-processing timed per mode); "
                        "default: exact, or the mode an exported engine was built with")
    p.add_argument("--dataset", required=True, choices=list(DATASETS), help="dataset reader")
    p.add_argument("--root", required=True, help="dataset folder (layouts above)")
    p.add_argument("--split", default=None, help="cityscapes / camvid split (default: val)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="anomaly protocol (default: smiyc for smiyc_* datasets, else paper)")
    p.add_argument("--resize", default=None, metavar="WxH",
                   help="resize images to WIDTHxHEIGHT for the network (maps are resized back "
                        "to the label's size for the metrics); default: native size")
    p.add_argument("--label-map", default=None, metavar="RAW:OUT,...",
                   help="folder dataset: raw mask value -> label (anomaly: 0 normal, 1 anomaly, "
                        "255 void); unlisted values are void. Example: 0:0,2:1")
    p.add_argument("--task", choices=("anomaly", "closed"), default=None,
                   help="folder dataset: anomaly (default) or closed-set labels")
    p.add_argument("--smiyc-float16", action="store_true",
                   help="smiyc protocol: cast score maps to float16 before binning and "
                        "thresholding, as the SegmentMeIfYouCan benchmark stores them (needed "
                        "for leaderboard-equal numbers; default: the maps' own precision)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--panels", type=int, default=2,
                   help="best and worst images drawn as qualitative panels (default: 2 each)")
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(EvalConfig, args, resize=parse_wxh(args.resize, "--resize"),
                           modes=([m.strip() for m in args.inference.split(",") if m.strip()]
                                  if args.inference is not None else None))
    report = run_eval(cfg, sys.argv[1:] if sys.argv[1:2] == ["eval"] else None)
    print(markdown_table(report))
    print(f"wrote {', '.join(report['files'])} to {args.out}")
    return 0
