#!/usr/bin/env python3
"""Soak: the node and ``rba replay`` for minutes on the embedded default model; memory and
latency sampled every ``--sample`` seconds, growth after warm-up reported.

1. node: the perception node (subprocess, ``model_path: ""`` = the embedded default model, the
   node's default backend) gets the CamVid val frames in a loop, raw rgb8 or jpeg
   (``--transport``), with CameraInfo, at its sustainable rate: the next frame as soon as the
   previous one's anomaly output arrived (on a shared CPU a fixed rate is either too slow or
   drops frames; ``--period-factor F`` publishes every F x the sequential frame time instead).
   Every sample: the node's RSS, threads and open files (/proc), the latencies publish -> anomaly
   received in that window (p50 / p99) and the node's counters from /diagnostics.
2. replay: ``rba replay`` (subprocess, default model) over a long bag, the CamVid val clip looped
   ``--loops`` times (jpeg, 15 Hz stamps, CameraInfo); every sample: its RSS and the frames done
   (from its progress bar), i.e. seconds per frame in that window. Stopped with Ctrl-C after
   ``--minutes`` (or when the bag is done).

Reported: RSS growth after warm-up (the first sample ``--warmup`` s after the first frame vs
the median of the last three; goal < 5 %), the RSS slope over the post-warm-up samples (MB /
min), and the latency drift: p99 of the first third of the post-warm-up frames vs the last third
(node), or the seconds per frame over the first and the last third of the post-warm-up samples
(replay). The load average is printed before and after: CPU load changes latencies, not memory.

    python bench/bench_soak.py --minutes 10                 # both parts, 10 minutes each
    python bench/bench_soak.py --minutes 2 --part node --transport compressed
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # before anything starts rclpy

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_node import Link  # noqa: E402

DATA = Path(os.environ.get("RBA_DATA_DIR", REPO.parent / "shared" / "data"))
CAMVID_VAL = DATA / "camvid" / "val"
K = [400.0, 400.0, 240.0, 180.0]  # fx fy cx cy for the 480x360 CamVid frames


def proc_status(pid: int) -> dict:
    """RSS (MB), threads and open files of a running process."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "VmRSS":
            out["rss_mb"] = int(value.split()[0]) / 1024
        elif key == "Threads":
            out["threads"] = int(value)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def growth(samples: list[dict], warmup: float, key: str = "rss_mb") -> dict:
    """RSS after warm-up vs at the end: percent, and the slope of a line fit (MB / min)."""
    post = [s for s in samples if s["t"] >= warmup]
    if len(post) < 4:
        return {"growth_pct": float("nan"), "slope_mb_min": float("nan"), "warm": float("nan"),
                "end": float("nan")}
    warm, end = post[0][key], float(np.median([s[key] for s in post[-3:]]))
    t = np.array([s["t"] for s in post]) / 60
    slope = float(np.polyfit(t, [s[key] for s in post], 1)[0])
    return {"growth_pct": 100 * (end - warm) / warm, "slope_mb_min": slope, "warm": warm,
            "end": end}


def drift(values: list[float], q: float) -> tuple[float, float]:
    """(q-quantile of the first third, of the last third)."""
    third = max(len(values) // 3, 1)
    if len(values) < 6:
        return float("nan"), float("nan")
    return float(np.quantile(values[:third], q)), float(np.quantile(values[-third:], q))


# -- node ------------------------------------------------------------------------------------------
class Camera(Link):
    """Publishes the CamVid frames in a loop on /cam/...; latency of each anomaly output
    (``one``: a frame and its latency, from bench_node's Link)."""

    def __init__(self, client, transport: str):
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
        from vision_msgs.msg import Detection2DArray

        from rba_ros.harness import camera_info

        paths = sorted(CAMVID_VAL.glob("*.png"))
        if not paths:
            sys.exit(f"no CamVid frames in {CAMVID_VAL} (set RBA_DATA_DIR)")
        self.frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
        self.jpegs = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes()
                      for f in self.frames] if transport == "compressed" else None
        self.client, self.i, self.lock = client, 0, threading.Lock()
        self.sent: dict[tuple, float] = {}
        self.latency: list[tuple[float, float]] = []  # (receipt, seconds)
        topic = "/cam/image_raw" + ("/compressed" if self.jpegs else "")
        self.pub = client.publisher(CompressedImage if self.jpegs else Image, topic,
                                    reliable=False, depth=1)
        self.info_pub = client.publisher(CameraInfo, "/cam/camera_info")
        self.boxes = [  # outputs a robot would subscribe to (emptied as they come)
            client.collect(Image, "/cam/rba/anomaly", on_msg=self._on_anomaly, depth=5),
            client.collect(Detection2DArray, "/cam/rba/obstacles", depth=5),
            client.collect(PointCloud2, "/cam/rba/obstacle_points", depth=5)]
        self.diag = client.collect(DiagnosticArray, "/diagnostics")
        h, w = self.frames[0].shape[:2]
        self.info = camera_info("cam_optical", w, h, K[0])

    def _on_anomaly(self, msg) -> None:
        now = time.monotonic()
        with self.lock:
            t = self.sent.pop((msg.header.stamp.sec, msg.header.stamp.nanosec), None)
            if t is not None:
                self.latency.append((now, now - t))

    def publish(self) -> None:
        from sensor_msgs.msg import CompressedImage

        from rba_ros.harness import make_image, now_stamp

        stamp = now_stamp(self.client.node)
        k = self.i % len(self.frames)
        self.i += 1
        if self.jpegs:
            msg = CompressedImage(format="jpeg", data=self.jpegs[k])
            msg.header.frame_id = "cam_optical"
            msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
        else:
            msg = make_image(self.frames[k], "rgb8", "cam_optical", stamp)
        self.info.header.stamp = msg.header.stamp
        self.info_pub.publish(self.info)
        with self.lock:
            now = time.monotonic()
            self.sent = {s: t for s, t in self.sent.items() if now - t < 60}  # dropped ones
            self.sent[stamp] = now
        with self.client.lock:  # keep this process small: only the latencies are needed
            for box in self.boxes:
                box.clear()
            del self.diag[:-5]
        self.pub.publish(msg)

    def counters(self) -> dict:
        from rba_ros.harness import diagnostics_values

        for _, msg in reversed(list(self.diag)):
            if (v := diagnostics_values(msg, "cam")) is not None:
                return {k: int(v[k]) for k in ("frames_received", "frames_processed",
                                                "dropped_frames", "conversion_errors",
                                                "processing_errors")}
        return {}


def soak_node(args, workdir: Path) -> dict:
    from rba_ros.harness import NodeProcess, RosClient, next_domain

    domain = next_domain()
    params = {"model_path": "", "cameras": ["cam"], "image_transport": args.transport,
              "max_age": 0.0, "diagnostics_period": 1.0, "threads": args.threads}
    samples = []
    with NodeProcess(workdir, domain, params) as node:
        client = RosClient(domain, "rba_soak")
        try:
            cam = Camera(client, args.transport)
            client.wait_for_subscriber(cam.pub.topic_name, node, timeout=600)
            for _ in range(3):  # the first runs are slow
                cam.one(node)
            t_frame = float(np.median([cam.one(node) for _ in range(8)]))
            period = t_frame * args.period_factor
            print(f"node: sequential frame time {1e3 * t_frame:.0f} ms -> " + (
                f"one frame every {1e3 * period:.0f} ms" if period > 0 else
                "the next frame when the last one's outputs arrived") +
                f" for {args.minutes} min", flush=True)
            cam.latency.clear()
            start = time.monotonic()
            next_sample, n0 = start, 0
            while (now := time.monotonic()) - start < args.minutes * 60:
                assert node.alive(), node.log()[-3000:]
                if period > 0:
                    cam.publish()
                else:
                    cam.one(node)
                if now >= next_sample:
                    lat = [x for _, x in cam.latency[n0:]]
                    n0 = len(cam.latency)
                    s = {"t": now - start, **proc_status(node.proc.pid), "frames": len(lat),
                         "p50_ms": 1e3 * float(np.median(lat)) if lat else float("nan"),
                         "p99_ms": 1e3 * float(np.quantile(lat, 0.99)) if lat else float("nan"),
                         **cam.counters()}
                    samples.append(s)
                    print("  " + "  ".join(f"{k} {v:.1f}" if isinstance(v, float) else
                                           f"{k} {v}" for k, v in s.items()), flush=True)
                    next_sample += args.sample
                if period > 0:
                    time.sleep(max(period - (time.monotonic() - now), 0.0))
            time.sleep(3 * t_frame + 1.5)
            post = [x for t, x in cam.latency if t - start >= args.warmup]
        finally:
            client.close()
        code = node.stop()
    p99 = drift(post, 0.99)
    return {"frame_ms": 1e3 * t_frame, "samples": samples, "rss": growth(samples, args.warmup),
            "threads": (samples[0]["threads"], samples[-1]["threads"]),
            "fds": (samples[0]["fds"], samples[-1]["fds"]), "outputs": len(cam.latency),
            "p99_first_ms": 1e3 * p99[0], "p99_last_ms": 1e3 * p99[1],
            "p50": [1e3 * v for v in drift(post, 0.5)], "exit": code, **cam.counters()}


# -- replay ----------------------------------------------------------------------------------------
def long_bag(workdir: Path, loops: int) -> Path:
    from rba_core.replay.from_images import ImagesToBag, bag_from_images

    folder = workdir / "looped"
    folder.mkdir(exist_ok=True)
    paths = sorted(CAMVID_VAL.glob("*.png"))
    if not paths:
        sys.exit(f"no CamVid frames in {CAMVID_VAL} (set RBA_DATA_DIR)")
    for i in range(loops):
        for p in paths:
            link = folder / f"{i:03d}_{p.name}"
            if not link.exists():
                link.symlink_to(p)
    out = workdir / f"camvid_x{loops}.mcap"
    if not out.exists():
        with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
            bag_from_images(ImagesToBag(str(folder), str(out), compressed=True, camera_info=K))
    return out


def soak_replay(args, workdir: Path) -> dict:
    bag = long_bag(workdir, args.loops)
    out = workdir / "replay_out"
    cmd = [sys.executable, "-m", "rba_core.cli", "replay", str(bag), "--out", str(out)]
    log = open(workdir / "replay.log", "w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    samples, start = [], time.monotonic()
    next_sample, done_before, total = start, 0, None
    try:
        while proc.poll() is None and time.monotonic() - start < args.minutes * 60:
            now = time.monotonic()
            if now >= next_sample:
                log.seek(0)
                bars = re.findall(r"(\d+)/(\d+) \[", log.read())
                done = int(bars[-1][0]) if bars else 0
                total = int(bars[-1][1]) if bars else None
                s = {"t": now - start, **proc_status(proc.pid), "frames": done - done_before}
                s["s_per_frame"] = args.sample / s["frames"] if s["frames"] else float("nan")
                done_before = done
                samples.append(s)
                print("  " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in s.items()) + f"  done {done}/{total}",
                      flush=True)
                next_sample += args.sample
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # replay closes its segment and stops cleanly
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.seek(0)
        tail = log.read()[-2000:]
        log.close()
    started = next((s["t"] for s in samples if s["frames"]), 0.0)  # model loaded, first frame
    post = [s for s in samples if s["t"] >= started + args.warmup]
    third = len(post) // 3
    # seconds per frame over the first and the last third of the samples after warm-up
    first, last = ((args.sample * len(part) / max(sum(s["frames"] for s in part), 1))
                   if third >= 2 else float("nan") for part in (post[:third], post[-third:]))
    return {"samples": samples, "rss": growth(samples, started + args.warmup),
            "frames": done_before,
            "total": total, "s_per_frame_first": first, "s_per_frame_last": last,
            "exit": proc.returncode, "log_tail": tail}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of each part")
    p.add_argument("--part", choices=("both", "node", "replay"), default="both")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=60.0,
                   help="seconds before the RSS reference sample")
    p.add_argument("--transport", choices=("raw", "compressed"), default="raw",
                   help="node input: sensor_msgs/Image rgb8 or CompressedImage jpeg")
    p.add_argument("--period-factor", type=float, default=0.0,
                   help="publish every F x the sequential frame time (0: the next frame when "
                        "the last one's outputs arrived)")
    p.add_argument("--threads", type=int, default=0, help="node inference threads (0: default)")
    p.add_argument("--loops", type=int, default=20, help="replay bag: CamVid val clip x N")
    p.add_argument("--workdir", default=None, help="bag, outputs, logs (default: temp)")
    args = p.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rba_soak_"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"uptime: {os.getloadavg()} (1/5/15 min load), {os.cpu_count()} CPUs; work in "
          f"{workdir}", flush=True)
    results = {}
    if args.part in ("both", "node"):
        results["node"] = soak_node(args, workdir)
    if args.part in ("both", "replay"):
        print("replay:", flush=True)
        results["replay"] = soak_replay(args, workdir)
    print(f"\nuptime: {os.getloadavg()}")
    print(f"\n| part | minutes | RSS after warm-up -> end MB | growth | slope MB/min | latency "
          "drift | threads | open files |\n|---|---|---|---|---|---|---|---|")
    ok = True
    if (r := results.get("node")) is not None:
        g = r["rss"]
        ok &= g["growth_pct"] < 5
        print(f"| node ({args.transport}, frame {r['frame_ms']:.0f} ms, {r['outputs']} outputs, "
              f"{r.get('dropped_frames', '?')} dropped) | {args.minutes:g} | {g['warm']:.0f} -> "
              f"{g['end']:.0f} | {g['growth_pct']:+.1f} % | {g['slope_mb_min']:+.2f} | p99 "
              f"{r['p99_first_ms']:.0f} -> {r['p99_last_ms']:.0f} ms (p50 {r['p50'][0]:.0f} -> "
              f"{r['p50'][1]:.0f}) | {r['threads'][0]} -> {r['threads'][1]} | {r['fds'][0]} -> "
              f"{r['fds'][1]} |")
    if (r := results.get("replay")) is not None:
        g = r["rss"]
        ok &= g["growth_pct"] < 5
        s = r["samples"]
        print(f"| replay ({r['frames']}/{r['total']} frames, exit {r['exit']}) | "
              f"{args.minutes:g} | {g['warm']:.0f} -> {g['end']:.0f} | {g['growth_pct']:+.1f} % | "
              f"{g['slope_mb_min']:+.2f} | s/frame {r['s_per_frame_first']:.3f} -> "
              f"{r['s_per_frame_last']:.3f} | {s[0]['threads'] if s else '?'} -> "
              f"{s[-1]['threads'] if s else '?'} | {s[0]['fds'] if s else '?'} -> "
              f"{s[-1]['fds'] if s else '?'} |")
        if r["exit"] not in (0, 130):
            print(r["log_tail"])
    print(f"\ngoal (RSS growth after warm-up < 5 %): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
