#!/usr/bin/env python3
"""The node's end-to-end latency vs the raw backend, and latency under 2x overload.

For each size the random-weight ``tiny`` model (seed 0) is exported to ONNX at that size once.
1. raw: ``OnnxRuntimeBackend.infer`` on one frame (median of ``--repeats``), measured in a fresh
   process while no node runs (before and after the node; the mean of both is reported), and the
   whole ``Perception.process`` (backend + obstacles) for reference.
2. sequential: the node (subprocess, same .onnx, same threads) gets one frame at a time;
   latency = publish -> ``anomaly`` received here (with ``obstacles``, ``obstacles_3d``,
   ``obstacle_points`` and ``free_points`` subscribed too, so the node does the work a robot asks
   of it; a node without some of them simply has no publisher there). Its median is one frame's
   time T.
   The node also reports its own ``Perception.process`` time for the same frames (/diagnostics):
   on a CPU shared with other work, that in-node time is the fair baseline (the raw runs happen
   minutes apart, under other load).
3. overload: frames at 2 / T per second for ``--overload-seconds``; latency p50 / p99 of the
   frames that come out, and the drops the node reports in /diagnostics.

Goals (issue 5): overhead (T - in-node) / in-node <= 15 % (vs raw printed too); p99 at 2x
overload <= 2.5 T.
Everything runs on this machine's loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a private
ROS_DOMAIN_ID, the Fast DDS shared-memory profile).

    python bench/bench_node.py                          # 360x480 and 720x1280, ONNX Runtime
    python bench/bench_node.py --sizes 360x480 --backend torch --overload-seconds 10
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # before anything starts rclpy

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rba_core.model import ModelConfig, build_model  # noqa: E402
from rba_core.pipeline.perception import Perception  # noqa: E402
from rba_core.runtime.onnx_export import ExportSpec, export_onnx  # noqa: E402
from rba_ros.harness import (NodeProcess, RosClient, camera_info, diagnostics_values,  # noqa: E402
                             make_image, next_domain, now_stamp)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]


def model_for(size, backend: str, workdir: Path) -> str:
    """The model the node and the raw timing share: an .onnx at ``size`` or preset:tiny."""
    if backend == "torch":
        return "preset:tiny"  # same architecture; random weights differ, timing does not
    path = workdir / f"tiny-{size[0]}x{size[1]}.onnx"
    if not path.is_file():
        torch.manual_seed(0)
        print(f"exporting tiny at {size[0]}x{size[1]} ...", flush=True)
        export_onnx(build_model(ModelConfig.preset("tiny")), path, ExportSpec(*size),
                    source="preset:tiny")
    return str(path)


def raw_times(model: str, backend: str, size, threads: int, repeats: int):
    """Median ms of backend.infer and of Perception.process on the bench frame, measured in a
    fresh process like the node's (torch and the export in this one slow ONNX Runtime down)."""
    cmd = [sys.executable, __file__, "--raw", model, "--backend", backend, "--sizes",
           f"{size[0]}x{size[1]}", "--threads", str(threads), "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def raw_main(model: str, backend: str, size, threads: int, repeats: int) -> None:
    from rba_core.runtime import load_backend

    torch.set_num_threads(threads)
    be = load_backend(model, backend, ["rba"], device="cpu", threads=threads)
    perception = Perception(be)
    frame = bench_frame(size)
    batch = np.ascontiguousarray(frame.transpose(2, 0, 1)[None])
    infer, process = [], []
    for fn, times in ((lambda: be.infer(batch), infer), (lambda: perception.process([frame]),
                                                          process)):
        for i in range(repeats + 2):
            t0 = time.perf_counter()
            fn()
            if i >= 2:  # warm-up
                times.append(time.perf_counter() - t0)
    print(json.dumps([1e3 * float(np.median(infer)), 1e3 * float(np.median(process))]))


def bench_frame(size) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)


class Link:
    """Publisher of one camera + latency of the anomaly output, keyed by the frame's stamp."""

    def __init__(self, client: RosClient, frame: np.ndarray):
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from vision_msgs.msg import Detection2DArray, Detection3DArray

        self.client, self.frame = client, frame
        self.sent: dict[tuple, float] = {}
        self.latency: list[tuple[float, float]] = []  # (receipt, seconds)
        self.pub = client.publisher(Image, "/cam/image_raw", reliable=False, depth=1)
        self.info = client.publisher(CameraInfo, "/cam/camera_info")
        client.collect(Image, "/cam/rba/anomaly", on_msg=self._on_anomaly)
        client.collect(Detection2DArray, "/cam/rba/obstacles")
        client.collect(PointCloud2, "/cam/rba/obstacle_points")
        client.collect(PointCloud2, "/cam/rba/free_points")
        client.collect(Detection3DArray, "/cam/rba/obstacles_3d")
        self.diag = client.collect(DiagnosticArray, "/diagnostics")
        h, w = frame.shape[:2]
        self.camera = camera_info("cam_optical", w, h, 0.8 * w)

    def _on_anomaly(self, msg) -> None:
        now = time.monotonic()
        t = self.sent.get((msg.header.stamp.sec, msg.header.stamp.nanosec))
        if t is not None:
            self.latency.append((now, now - t))

    def publish(self) -> None:
        stamp = now_stamp(self.client.node)
        msg = make_image(self.frame, "rgb8", "cam_optical", stamp)
        self.info.publish(self.camera)
        self.sent[stamp] = time.monotonic()
        self.pub.publish(msg)

    def one(self, node: NodeProcess, timeout: float = 300.0) -> float:
        """Latency of one frame (re-sent if a best-effort sample is lost on the way)."""
        n = len(self.latency)
        deadline = time.monotonic() + timeout
        while len(self.latency) == n:
            assert time.monotonic() < deadline and node.alive(), node.log()[-3000:]
            self.publish()
            wait = time.monotonic() + 30.0
            while len(self.latency) == n and time.monotonic() < wait and node.alive():
                time.sleep(0.002)
        return self.latency[-1][1]

    def inference_ms(self, t0: float, t1: float) -> float:
        """Mean of the node's own inference latency (Perception.process) reported in [t0, t1]."""
        values = [float(v["inference_latency_ms"]) for t, msg in list(self.diag) if t0 <= t <= t1
                  if (v := diagnostics_values(msg, "cam")) is not None]
        values = [v for v in values if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def dropped(self) -> int:
        for _, msg in reversed(list(self.diag)):
            if (v := diagnostics_values(msg, "cam")) is not None:
                return int(v["dropped_frames"])
        return -1


def node_times(model: str, backend: str, frame, threads: int, frames: int, overload_s: float,
               workdir: Path) -> dict:
    domain = next_domain()
    params = {"model_path": model, "backend": backend, "threads": threads, "cameras": ["cam"],
              "scores": ["rba"], "max_age": 0.0, "device": "cpu", "diagnostics_period": 0.5}
    with NodeProcess(workdir, domain, params) as node:
        client = RosClient(domain, "rba_bench")
        try:
            link = Link(client, frame)
            client.wait_for_subscriber("/cam/image_raw", node, timeout=300)
            for _ in range(2):  # warm-up (first ONNX Runtime / torch runs are slow)
                link.one(node)
            t_seq = time.monotonic()
            seq = [link.one(node) for _ in range(frames)]
            t = float(np.median(seq))
            time.sleep(1.5)  # the last diagnostics period
            node_inference = link.inference_ms(t_seq, time.monotonic())
            # overload: twice the sustainable rate
            start, published, n0 = time.monotonic(), 0, len(link.latency)
            duration = max(overload_s, 15 * t)
            while time.monotonic() - start < duration:
                link.publish()
                published += 1
                time.sleep(max(t / 2 - 0.001, 0.0))
            time.sleep(3 * t + 1.5)
            over = np.array([x for _, x in link.latency[n0:]])
            return {"seq_ms": 1e3 * t, "node_inference_ms": node_inference, "seq_p90_ms": 1e3 * float(np.percentile(seq, 90)),
                    "over_p50_ms": 1e3 * float(np.median(over)),
                    "over_p99_ms": 1e3 * float(np.percentile(over, 99)),
                    "over_max_ms": 1e3 * float(over.max()),
                    "published": published, "processed": len(over),
                    "dropped": link.dropped(), "rate_hz": published / duration}
        finally:
            client.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="360x480,720x1280", help="HxW,HxW,...")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    p.add_argument("--threads", type=int, default=2, help="inference threads (node and raw)")
    p.add_argument("--frames", type=int, default=12, help="sequential frames through the node")
    p.add_argument("--repeats", type=int, default=8, help="raw backend calls (after 2 warm-up)")
    p.add_argument("--overload-seconds", type=float, default=20.0)
    p.add_argument("--workdir", default=None, help="exports and node logs (default: temp)")
    p.add_argument("--raw", metavar="MODEL", help=argparse.SUPPRESS)  # internal: raw timing
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.raw:
        raw_main(args.raw, args.backend, parse_sizes(args.sizes)[0], args.threads, args.repeats)
        return 0
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rba_bench_node_"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"backend {args.backend}, {args.threads} threads, {os.cpu_count()} CPUs; "
          f"work in {workdir}", flush=True)
    rows = []
    for size in parse_sizes(args.sizes):
        frame = bench_frame(size)
        model = model_for(size, args.backend, workdir)
        raw1, proc1 = raw_times(model, args.backend, size, args.threads, args.repeats)
        print(f"{size[0]}x{size[1]}: raw {raw1:.0f} ms, pipeline {proc1:.0f} ms; node ...",
              flush=True)
        res = node_times(model, args.backend, frame, args.threads, args.frames,
                         args.overload_seconds, workdir)
        raw2, proc2 = raw_times(model, args.backend, size, args.threads, args.repeats)
        raw, proc = (raw1 + raw2) / 2, (proc1 + proc2) / 2
        rows.append((size, raw, proc, res))
        print(f"  raw before/after {raw1:.0f}/{raw2:.0f} ms; node {res}", flush=True)

    print("\nraw = backend.infer in a fresh process (no node running); in-node = the node's own "
          "Perception.process time (backend + obstacles) on the same frames, from /diagnostics")
    print("\n| size | raw infer ms | pipeline ms | in-node ms | node e2e ms (p50 / p90) | "
          "overhead vs in-node | vs raw | 2x overload p50 / p99 ms | p99 / frame | "
          "frames in / out / dropped |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for size, raw, proc, r in rows:
        overhead = (r["seq_ms"] - r["node_inference_ms"]) / r["node_inference_ms"]
        overhead_raw = (r["seq_ms"] - raw) / raw
        p99_ratio = r["over_p99_ms"] / r["seq_ms"]
        ok &= overhead <= 0.15 and p99_ratio <= 2.5
        print(f"| {size[0]}x{size[1]} | {raw:.0f} | {proc:.0f} | {r['node_inference_ms']:.0f} | "
              f"{r['seq_ms']:.0f} / {r['seq_p90_ms']:.0f} | {100 * overhead:+.1f} % | "
              f"{100 * overhead_raw:+.1f} % | {r['over_p50_ms']:.0f} / {r['over_p99_ms']:.0f} | "
              f"{p99_ratio:.2f} | {r['published']} / {r['processed']} / {r['dropped']} |")
    print(f"\ngoals (overhead <= 15 %, p99 <= 2.5 x frame time): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
