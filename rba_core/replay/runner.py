"""``rba replay``: run the perception pipeline over a bag and write what the node would publish.

Three stages overlap, joined by bounded queues, so the network never waits for I/O:

    reader thread (read + decode)  ->  main thread (backend)  ->  encode pool (obstacles,
    overlays, points, CDR)  ->  writer thread (segmented rosbag2, in frame order)

The output bag (README "Output bag") holds what the live node would publish for every image
topic (``pipeline.messages``: same types, names, stamps and frame ids) and its ``/tf_static``.
Obstacle ids come from one tracker per camera, updated in frame order although frames are encoded
in parallel; the next id is kept in the bag's state, so a resumed replay never reuses an id.
Crash safety and ``resume`` come from :class:`~rba_core.replay.segments.SegmentedBagWriter`.
"""
from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from ..dataconf import ConfigError, check, check_fields, load_yaml, nest
from ..errors import RbaError
from ..files import WriteError, disk_full_reason, write_error
from ..pipeline.config import PipelineConfig
from ..pipeline.frames import infer_frames
from ..pipeline.messages import (CAMERA_OUTPUTS, LABELS_TOPIC, OUTPUT_TOPICS, FrameData,
                                 frame_messages, header, labels_msg)
from ..pipeline.perception import Perception
from ..pipeline.tracking import ObstacleTracker
from ..pipeline.transforms import TransformError
from .bags import (STORAGES, BagError, OUTPUT_NAMESPACE, image_connections, open_reader,
                   output_topic, output_typestore, qos_profile, serialize)
from .segments import SegmentedBagWriter, read_state
from .source import Frame, FrameReader

log = logging.getLogger(__name__)


@dataclass
class _End:
    """Last item for the writer thread: close the bag (the thread that opened it, for sqlite3)."""
    complete: bool


@dataclass
class ReplayConfig:
    input: str
    out: str
    topics: list[str] = field(default_factory=list)   # [] = every image topic
    storage: Literal[STORAGES] = "mcap"
    namespace: str = OUTPUT_NAMESPACE                  # output namespace template ({camera})
    resume: bool = False
    batch: int = 1                                     # frames per backend call
    workers: int = 2                                   # encode threads
    queue_size: int = 8                                # frames in flight per stage
    segment_frames: int = 0                            # close a segment every N frames (0: off)
    segment_seconds: float = 5.0                       # ... or every S seconds of wall time
    limit: int | None = None                           # only the first N frames
    progress: bool = True
    model: str | None = None                           # recorded (and checked on resume)

    def __post_init__(self):
        check_fields(self)
        for name in ("batch", "workers", "queue_size", "limit"):
            value = getattr(self, name)
            check(value is None or value >= 1, name, f"must be at least 1, got {value}")
        check(self.segment_frames >= 0, "segment_frames", "must be >= 0 (0: by time only)")
        check(self.segment_seconds >= 0, "segment_seconds", "must be >= 0")


def pipeline_config_from_yaml(path: str | Path) -> PipelineConfig:
    """A PipelineConfig YAML, or the node's ROS params file (``NODE: ros__parameters: ...``).

    From a params file only PipelineConfig fields are taken (model, cameras etc. are ignored);
    dotted keys (``obstacles.min_area``) are accepted like ROS does.
    """
    data = load_yaml(path)
    nodes = [v["ros__parameters"] for v in data.values()
             if isinstance(v, dict) and isinstance(v.get("ros__parameters"), dict)]
    if nodes:
        known = set(PipelineConfig.__dataclass_fields__)
        data = nest({k: v for k, v in nodes[0].items() if str(k).split(".")[0] in known})
    try:
        return PipelineConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(exc.path, f"{exc.detail} (in {path})") from None


def has_intrinsics(frame: Frame) -> bool:
    """The frame's camera has a valid CameraInfo (the node's check: ``CameraModel``)."""
    return frame.camera is not None


class OutputEncoder:
    """One frame's results -> the node's output messages (topic, timestamp, CDR bytes).

    ``encode`` may run on several threads; each camera's tracker still sees its frames in order:
    ``ticket`` (called in frame order) numbers them, the tracker step waits for its turn.
    """

    def __init__(self, perception: Perception, namespace: str = OUTPUT_NAMESPACE,
                 next_ids: dict[str, int] | None = None):
        self.perception = perception
        self.namespace = namespace
        self.store = output_typestore()
        self.trackers: dict[str, ObstacleTracker] = {}
        for topic, next_id in (next_ids or {}).items():  # a resumed replay goes on counting
            self.tracker(topic).next_id = int(next_id)
        self._tickets: dict[str, int] = {}
        self._turns: dict[str, int] = {}
        self._order = threading.Condition()
        self.missing_transform: dict[str, int] = {}  # reason -> frames (ground.* fallback)

    def tracker(self, topic: str) -> ObstacleTracker:
        return self.trackers.setdefault(topic, ObstacleTracker())

    def ticket(self, frame: Frame) -> int:
        """The frame's place among its camera's frames (call in frame order)."""
        with self._order:
            n = self._tickets.get(frame.topic, 0)
            self._tickets[frame.topic] = n + 1
            return n

    @contextmanager
    def _turn(self, topic: str, ticket: int):
        with self._order:
            self._order.wait_for(lambda: self._turns.get(topic, 0) == ticket)
        try:
            yield
        finally:
            with self._order:
                self._turns[topic] = ticket + 1
                self._order.notify_all()

    def pose(self, frame: Frame):
        """camera -> ground_frame from the bag's /tf_static (None: ground.* fallback)."""
        ground_frame = self.perception.cfg.ground_frame
        if not ground_frame or frame.camera is None:
            return None
        try:
            if frame.transforms is None:
                raise TransformError("no /tf_static in the bag")
            if not frame.frame_id:
                raise TransformError("the image has no frame_id")
            return frame.transforms.lookup(ground_frame, frame.frame_id)
        except TransformError as exc:
            with self._order:
                reason = f"{ground_frame} <- {frame.frame_id or '?'}: {exc}"
                self.missing_transform[reason] = self.missing_transform.get(reason, 0) + 1
            return None

    def topics(self, image_topic: str) -> dict[str, tuple[str, list]]:
        """Output topic -> (msgtype, QoS) for one camera."""
        out = {output_topic(image_topic, name, self.namespace): (msgtype, qos_profile())
               for name, msgtype in OUTPUT_TOPICS.items()}
        out[output_topic(image_topic, LABELS_TOPIC[0], self.namespace)] = (
            LABELS_TOPIC[1], qos_profile(transient_local=True))
        return out

    def labels(self, frame: Frame) -> tuple[str, int, memoryview]:
        """LabelInfo, once per camera before its first outputs (frame_id '' like the node)."""
        msg = labels_msg(header(frame.stamp, ""), list(self.perception.info.class_names),
                         self.perception.threshold_probability)
        return (output_topic(frame.topic, LABELS_TOPIC[0], self.namespace), frame.timestamp,
                serialize(self.store, LABELS_TOPIC[1], msg))

    def encode(self, frame: Frame, outputs, ticket: int | None = None
               ) -> list[tuple[str, int, memoryview]]:
        """Post-process one frame (obstacles, ground, ids, overlays) and serialize every output.

        ``ticket``: from :meth:`ticket`, when frames are encoded on several threads."""
        ticket = self.ticket(frame) if ticket is None else ticket
        data = None
        try:
            data = FrameData(self.perception, header(frame.stamp, frame.frame_id), frame.rgb,
                             self.perception.postprocess(outputs), frame.camera,
                             self.pose(frame), self.tracker(frame.topic))
            if data.camera is not None:
                data.ground  # noqa: B018 - the costly part, in parallel
        finally:
            with self._turn(frame.topic, ticket):  # the tracker: frame after frame
                if data is not None:
                    data.ids  # noqa: B018
                    frame.next_id = data.tracker.next_id
        msgs = frame_messages(data)
        return [(output_topic(frame.topic, name, self.namespace), frame.timestamp,
                 serialize(self.store, OUTPUT_TOPICS[name], msg)) for name, msg in msgs.items()]


def _put(q: queue.Queue, item, alive: threading.Thread) -> None:
    """Blocking put that gives up when the consumer thread has died."""
    while True:
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            if not alive.is_alive():
                return


class _Writer(threading.Thread):
    """Writes frames in order: CameraInfo, original image, labels (once), outputs."""

    def __init__(self, bag: SegmentedBagWriter, encoder: OutputEncoder, q: queue.Queue, bar):
        super().__init__(name="bag-writer", daemon=True)
        self.bag, self.encoder, self.q, self.bar = bag, encoder, q, bar
        self.labels = set(bag.state.setdefault("labels", []))
        self.error: BaseException | None = None
        self.frames = self.outputs = self.missing_camera_info = 0
        self.camera_errors: dict[str, int] = {}  # why a CameraInfo was unusable -> frames
        self.next_ids = bag.state.setdefault("next_ids", {})  # camera -> next tracker id

    def run(self) -> None:
        item = None
        try:
            while not isinstance(item := self.q.get(), _End):
                self._write(*item)
            self.bag.close(complete=item.complete)
        except BaseException as exc:
            self.error = exc
            try:
                self.bag.abort()  # the closed segments stay a valid bag
            finally:
                while not isinstance(item, _End):  # unblock the producer
                    item = self.q.get()

    def _write(self, frame: Frame, future) -> None:
        bag = self.bag
        for topic, _, timestamp, data in frame.extra:
            bag.write(topic, timestamp, data)
        if frame.index < 0:  # trailing CameraInfo only
            return
        bag.write(frame.topic, frame.timestamp, frame.raw)
        if future is not None:
            if frame.topic not in self.labels:
                bag.write(*self.encoder.labels(frame))
                self.labels.add(frame.topic)
                bag.state["labels"] = sorted(self.labels)
            for topic, timestamp, data in future.result():
                bag.write(topic, timestamp, data)
            self.next_ids[frame.topic] = frame.next_id
            self.outputs += 1
            if not has_intrinsics(frame):
                self.missing_camera_info += 1
                if frame.camera_error:
                    self.camera_errors[frame.camera_error] = \
                        self.camera_errors.get(frame.camera_error, 0) + 1
        bag.frame_done()
        self.frames += 1
        if self.bar is not None:
            self.bar.update()


class _Terminate:
    """SIGTERM -> KeyboardInterrupt in the main thread, so a kill closes the bag cleanly."""

    def __enter__(self):
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:
            self.old_int = signal.getsignal(signal.SIGINT)
            self.old_term = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def shield(self) -> None:
        """Ignore further Ctrl-C / SIGTERM while the bag is being closed."""
        if self.active:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def __exit__(self, *exc):
        if self.active:
            signal.signal(signal.SIGTERM, self.old_term)
            signal.signal(signal.SIGINT, self.old_int)
        return False


def _check_resume(bag: SegmentedBagWriter, cfg: ReplayConfig, topics: list[str],
                  perception: Perception) -> None:
    """A resumed replay must continue the same input, topics, namespace and pipeline settings."""
    now = {"input": str(Path(cfg.input).resolve()), "topics": topics,
           "namespace": cfg.namespace, "pipeline": perception.cfg.to_dict(),
           "classes": list(perception.info.class_names), "model": cfg.model,
           "backend": perception.backend.name}
    what = {"input": "input bag", "topics": "--topics", "namespace": "--namespace",
            "pipeline": "pipeline settings (--config/--threshold/--score)", "classes": "model",
            "model": "--model"}  # the backend is recorded, not checked
    for key, value in now.items():
        if key in what and key in bag.state and bag.state[key] != value:
            raise BagError(f"{cfg.out} was written with another {what[key]}; resume with the "
                           f"same one, or replay into a new folder")
    bag.state.update(now)


def run_replay(cfg: ReplayConfig, perception: Perception) -> dict:
    """Replay ``cfg.input`` through ``perception`` into the bag ``cfg.out``; returns a summary."""
    reader = open_reader(cfg.input)
    encoder = OutputEncoder(perception, cfg.namespace)
    try:
        topics = cfg.topics
        if cfg.resume and not topics and Path(cfg.out).is_dir():  # continue the same topics
            topics = (read_state(Path(cfg.out)) or {}).get("topics", [])
        source_topics = list(image_connections(reader, topics))  # validates --topics
        bag = SegmentedBagWriter(cfg.out, cfg.storage, segment_frames=cfg.segment_frames,
                                 segment_seconds=cfg.segment_seconds, resume=cfg.resume)
        _check_resume(bag, cfg, source_topics, perception)
        start = bag.frames_done
        source = FrameReader(reader, source_topics, start=start, limit=cfg.limit,
                             queue_size=cfg.queue_size)
        if bag.state["complete"] and start >= source.total:
            log.info("%s is already complete (%d frames)", cfg.out, start)
            return {"out": cfg.out, "frames": 0, "frames_total": start, "complete": True,
                    "resumed_from": start, "wall_s": 0.0, "fps": 0.0, "decode_errors": 0,
                    "topics": source_topics}
        bag.state["complete"] = False
        for topic, next_id in bag.state.get("next_ids", {}).items():  # resumed: go on counting
            encoder.tracker(topic).next_id = int(next_id)
        for topic, conns in source.images.items():
            bag.add_topic(topic, conns[0].msgtype)
        for conn in source.infos:
            bag.add_topic(conn.topic, conn.msgtype)
        for conn in source.statics:
            bag.add_topic(conn.topic, conn.msgtype, qos_profile(transient_local=True))
        for topic in source_topics:
            for out_topic, (msgtype, qos) in encoder.topics(topic).items():
                bag.add_topic(out_topic, msgtype, qos)
        return _run(cfg, perception, encoder, source, bag, start)
    finally:
        reader.close()


def _write_failed(out: str, error: BaseException) -> RbaError:
    """One line for a failed output write (a full disk: which file, and how to continue)."""
    if isinstance(error, RbaError) and not isinstance(error, WriteError):
        return error
    try:
        done = (read_state(Path(out)) or {}).get("frames_done", 0)  # what really is on the disk
    except (OSError, ValueError, KeyError, TypeError):
        done = 0
    hint = (f"; {out} keeps the first {done} frame(s): free space, then continue with "
            f"--resume")
    if isinstance(error, WriteError):
        return WriteError(f"{error}{hint}")
    if isinstance(error, OSError) or disk_full_reason(error):
        return write_error(error, out, hint)
    return BagError(f"writing {out} failed: {error}")


def _run(cfg, perception, encoder, source, bag, start) -> dict:
    bar = tqdm(total=source.total, initial=start, unit="frame", desc="replay",
               disable=not cfg.progress, dynamic_ncols=True)
    write_q: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
    writer = _Writer(bag, encoder, write_q, bar)
    pool = ThreadPoolExecutor(cfg.workers, thread_name_prefix="encode")
    complete = interrupted = False
    infer_s = 0.0
    t0 = time.perf_counter()
    with _Terminate() as term:
        writer.start()
        try:
            frames = iter(source)
            while batch := [f for _, f in zip(range(cfg.batch), frames)]:
                good = [f for f in batch if f.rgb is not None]
                t = time.perf_counter()
                outputs = infer_frames(perception.backend, [f.rgb for f in good]) if good else []
                infer_s += time.perf_counter() - t
                done = {id(f): o for f, o in zip(good, outputs)}
                for f in batch:
                    if f.error and f.index >= 0:
                        log.warning("frame %d on %s skipped: %s", f.index, f.topic, f.error)
                    fut = pool.submit(encoder.encode, f, done[id(f)], encoder.ticket(f)) \
                        if id(f) in done else None
                    _put(write_q, (f, fut), writer)
                if writer.error is not None:
                    break
            complete = writer.error is None
        except KeyboardInterrupt:
            interrupted = True
            term.shield()
            log.warning("interrupted: closing %s with the frames done so far", cfg.out)
        finally:
            term.shield()
            source.stop()
            _put(write_q, _End(complete), writer)
            writer.join()
            pool.shutdown(wait=True)
            bar.close()
            if writer.error is not None:
                raise _write_failed(cfg.out, writer.error) from writer.error
    wall = time.perf_counter() - t0
    summary = {"out": cfg.out, "frames": writer.frames, "frames_total": bag.frames_done,
               "complete": complete, "interrupted": interrupted, "resumed_from": start,
               "wall_s": wall, "fps": writer.frames / wall if wall > 0 else 0.0,
               "infer_s": infer_s, "decode_errors": source.decode_errors,
               "frames_without_camera_info": writer.missing_camera_info,
               "frames_without_transform": sum(encoder.missing_transform.values()),
               "topics": source.topics, "storage": bag.storage}
    if writer.missing_camera_info:
        log.warning("%d frame(s) had no valid CameraInfo (looked for <camera>/camera_info): no "
                    "%s for them", writer.missing_camera_info, ", ".join(sorted(CAMERA_OUTPUTS)))
    for why, n in writer.camera_errors.items():
        log.warning("%d frame(s): unusable CameraInfo: %s", n, why)
    for why, n in encoder.missing_transform.items():
        log.warning("%d frame(s) without transform %s; ground.* fallback, outputs in the "
                    "camera frame", n, why)
    return summary
