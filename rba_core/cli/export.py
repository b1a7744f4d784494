"""``rba export``: a model -> one static ONNX graph (uint8 images in, class/anomaly maps out)."""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from ..errors import RbaError
from ..model import MODES
from ..runtime import ExportSpec, export_onnx, load_torch_model, resolve_model_path
from ..runtime.loader import PRESET_PREFIX
from ..files import file_sha256
from ..runtime.onnx_export import DEFAULT_OPSET, OPSETS
from ..runtime.quantize import DEFAULT_FRAMES, quantize_int8
from ..runtime.trt_check import check_model, format_problems
from ..scoring import SCORES

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="export a model to ONNX (for ONNX Runtime and TensorRT)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export MODEL to one ONNX graph with a static input shape: uint8 RGB images "
                    "[N,3,H,W] in; class_ids [N,H,W] (int32), confidence [N,H,W] (L_k of the "
                    "winning class) and scores [N,S,H,W] (the anomaly scores, in --scores order) "
                    "out, all at input resolution. Normalisation, padding and semantic inference "
                    "are inside the graph; the classes, colours, scores, inference mode and the "
                    "model config are in its metadata.",
        epilog="Frames of another size are resized to HxW by the pipeline (rba_core.pipeline."
               "frames). After writing, the graph is run in ONNX Runtime against PyTorch "
               "(--no-verify skips this) and checked statically against TensorRT's ONNX op "
               "list and restrictions; a graph that fails the check is still written (it runs in "
               "ONNX Runtime) but the command exits with status 2.\n\n"
               "--fp16 leaves the ONNX numbers in fp32 (ONNX Runtime on CPU stays exact); it "
               "records fp16 as the preferred TensorRT precision: the TensorRT backend then "
               "builds an fp16 engine with normalisation, pixel decoder, semantic inference and "
               "scores pinned to fp32.\n\n"
               "--int8 writes a QDQ graph (ONNX Runtime static quantization): Conv/MatMul/Gemm "
               "weights int8 per output channel, their inputs int8 per tensor, symmetric, "
               "calibrated (min/max) on --calibration-frames frames of --calibration (a folder "
               "of images, or a rosbag: its image messages), spread over the whole source; "
               "without --calibration, the packaged demo frames (CamVid, Road Anomaly). The "
               "parts measured to lose accuracy in int8 stay fp32 (bench/int8_sensitivity.py). "
               "ONNX Runtime runs it with its int8 CPU kernels; TensorRT builds an explicit-int8 "
               "engine from it. Calibrate on your own camera's frames for best accuracy.")
    p.add_argument("model", help="our .safetensors model, or preset:NAME (random weights)")
    p.add_argument("--height", type=int, required=True, help="input height H (pixels)")
    p.add_argument("--width", type=int, required=True, help="input width W (pixels)")
    p.add_argument("--batch", type=int, default=1,
                   help="fixed batch size N (e.g. one per camera; default 1)")
    p.add_argument("--fp16", action="store_true",
                   help="prefer an fp16 TensorRT engine (the ONNX stays fp32; see below)")
    p.add_argument("--int8", action="store_true",
                   help="write an int8 QDQ graph calibrated on real frames (see below)")
    p.add_argument("--calibration", metavar="DIR_OR_BAG", default=None,
                   help="int8 calibration frames: a folder of images or a rosbag (default: the "
                        "packaged demo frames)")
    p.add_argument("--calibration-frames", type=int, default=DEFAULT_FRAMES, metavar="N",
                   help=f"how many calibration frames (default {DEFAULT_FRAMES})")
    p.add_argument("--scores", default="rba",
                   help=f"comma-separated anomaly scores to output ({', '.join(SCORES)})")
    p.add_argument("--inference", choices=MODES, default="exact",
                   help="semantic inference baked into the graph: exact (reference) or fast "
                        "(einsum at 1/4 resolution, then upsample)")
    p.add_argument("--opset", type=int, choices=OPSETS, default=DEFAULT_OPSET,
                   help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the ONNX Runtime vs PyTorch comparison after export")
    p.add_argument("--skip-trt-check", action="store_true",
                   help="do not fail when the graph is not TensorRT-compatible")
    p.add_argument("-o", "--output", required=True, help="output .onnx file")
    p.set_defaults(func=run)


def calibration_frames(source: str | None, n: int) -> list:
    """RGB frames for int8 calibration: ``n`` spread over a folder of images or a rosbag's image
    messages, or the packaged demo frames when ``source`` is None."""
    from ..imageio import IMAGE_EXTS, list_images, read_image
    from ..runtime.quantize import demo_frames, read_frames, spread

    if source is None:
        return read_frames(demo_frames(), n)
    path = Path(source)
    if path.is_dir() and not (path / "metadata.yaml").is_file() and any(
            f.suffix.lower() in IMAGE_EXTS for f in path.iterdir()):
        return [read_image(p) for p in spread(list_images([source]), n)]
    if not path.exists():
        raise RbaError(f"--calibration: no such folder or bag: {source}")
    from ..replay.bags import open_reader
    from ..replay.source import FrameReader

    reader = open_reader(path)  # one-line BagError when it is neither images nor a bag
    try:
        frames = FrameReader(reader)
        step = max(1, frames.total // n)
        picked = []
        for frame in frames:
            if frame.rgb is not None and frame.index % step == 0:
                picked.append(frame.rgb)
                if len(picked) == n:
                    break
    finally:
        reader.close()
    if not picked:
        raise RbaError(f"--calibration: no decodable image message in {source}")
    return picked


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.suffix.lower() != ".onnx":
        raise RbaError(f"output must be an .onnx file, got {out}")
    spec = ExportSpec(args.height, args.width, args.batch, args.scores, args.inference,
                      args.fp16, args.opset)
    if args.calibration and not args.int8:
        raise RbaError("--calibration is for --int8 graphs")
    if args.calibration_frames < 1:
        raise RbaError(f"--calibration-frames must be >= 1, got {args.calibration_frames}")
    source = resolve_model_path(args.model)
    frames = calibration_frames(args.calibration, args.calibration_frames) if args.int8 else []
    model = load_torch_model(source)
    sha = "" if source.startswith(PRESET_PREFIX) else file_sha256(source)
    with tempfile.TemporaryDirectory(prefix="rba_export_") as tmp:
        fp32 = Path(tmp) / out.name if args.int8 else out
        proto = export_onnx(model, fp32, spec, source=Path(source).name, source_sha256=sha,
                            verify=not args.no_verify)
        if args.int8:
            proto = quantize_int8(fp32, out, frames, source=args.calibration or
                                  "the packaged demo frames")
    size_mb = out.stat().st_size / 1e6
    precision = "int8" if args.int8 else ("fp16" if spec.fp16 else "fp32")
    print(f"wrote {out} ({size_mb:.1f} MB): images uint8 [{spec.batch},3,{spec.height},"
          f"{spec.width}] -> class_ids, confidence, scores [{','.join(spec.scores)}] "
          f"({spec.mode} inference, opset {spec.opset}, TensorRT precision {precision})")
    problems = check_model(proto)
    if not problems:
        print("TensorRT check: every op is supported and within its restrictions")
        return 0
    message = (f"TensorRT check: {len(problems)} problem(s); the graph runs in ONNX Runtime "
               f"but TensorRT's parser would reject it:\n{format_problems(problems)}")
    if args.skip_trt_check:
        log.warning("%s", message)
        return 0
    raise RbaError(message)
