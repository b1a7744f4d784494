"""Camera frames out of a bag, in bag order, decoded on a background thread.

Each selected Image / CompressedImage message becomes one :class:`Frame` numbered in bag order
(``index``): the numbering is what ``--resume`` counts. CameraInfo and ``/tf_static`` messages
ride along with the next frame (so they land in the same output segment): a frame gets the
camera model of its camera's latest valid CameraInfo (K, D, distortion model, binning, ROI) and a
snapshot of the static TF tree so far. A frame that cannot be decoded keeps its ``error``
instead of pixels (the node logs and skips such frames; replay copies the original message and
writes no outputs for it).
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field

import numpy as np

from ..pipeline.camera import CameraModel, CameraModelError
from ..pipeline.image_msgs import ImageDecodeError, decode_image
from ..pipeline.transforms import TransformError, TransformTree
from .bags import (CAMERA_INFO_TYPE, TF_MESSAGE_TYPE, TF_STATIC_TOPIC, camera_info_topic,
                   image_connections, output_typestore, ros2_converter)

log = logging.getLogger(__name__)
END = None  # sentinel on the queue


@dataclass
class Frame:
    index: int                     # position among the selected image messages, bag order
    topic: str
    msgtype: str
    timestamp: int                 # bag (log) time, ns
    raw: bytes                     # the original message as ROS 2 CDR (copied to the output)
    stamp: tuple[int, int]         # header stamp (sec, nanosec)
    frame_id: str
    rgb: np.ndarray | None = None  # RGB uint8 [H, W, 3]
    error: str | None = None
    camera: CameraModel | None = None  # from the latest valid CameraInfo of its camera
    camera_error: str | None = None    # why the latest CameraInfo is not usable
    transforms: TransformTree | None = None  # /tf_static so far (shared, read-only)
    extra: list[tuple[str, str, int, bytes]] = field(default_factory=list)
    # CameraInfo and /tf_static messages read since the previous frame: (topic, msgtype,
    # timestamp, CDR)
    next_id: int = 0                   # the camera's next tracker id after this frame (replay)


def camera_model(msg) -> tuple[CameraModel | None, str | None]:
    """(model, None) of a CameraInfo message, or (None, why it is not usable)."""
    try:
        return CameraModel.from_msg(msg), None
    except CameraModelError as exc:
        return None, str(exc)


class FrameReader:
    """Iterate frames of ``topics`` (all image topics when empty) from an open AnyReader.

    ``start``: skip the first ``start`` frames (already done; not decoded, CameraInfo still
    tracked). ``limit``: stop after frame index ``limit - 1``. ``decode=False`` skips pixels.
    """

    def __init__(self, reader, topics: list[str] | None = None, start: int = 0,
                 limit: int | None = None, queue_size: int = 8, decode: bool = True,
                 copy_camera_info: bool = True):
        self.reader = reader
        self.images = image_connections(reader, topics)
        self.topics = list(self.images)
        self.start, self.limit, self.decode = start, limit, decode
        self.copy_camera_info = copy_camera_info
        info_topics = {camera_info_topic(t) for t in self.topics}
        self.infos = [c for c in reader.connections
                      if c.topic in info_topics and c.msgtype == CAMERA_INFO_TYPE]
        self.statics = [c for c in reader.connections
                        if c.topic == TF_STATIC_TOPIC and c.msgtype == TF_MESSAGE_TYPE]
        self.total = sum(c.msgcount for conns in self.images.values() for c in conns)
        if limit is not None:
            self.total = min(self.total, limit)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.decode_errors = 0

    # -- producer --------------------------------------------------------------------------------
    def _frames(self):
        conns = [c for cs in self.images.values() for c in cs] + self.infos + self.statics
        cameras: dict[str, tuple[CameraModel | None, str | None]] = {}
        self._tree = TransformTree()
        converters: dict[str, object] = {}
        pending: list = []
        held: list = []  # frames waiting for the CameraInfo of their own bag time
        store = output_typestore()
        index, last_ts = -1, None
        for conn, timestamp, raw in self.reader.messages(connections=conns):
            if self._stop.is_set():
                return
            if held and timestamp != held[0][0].timestamp:
                yield from self._emit(held, cameras)
            if conn.msgtype not in converters:
                converters[conn.msgtype] = ros2_converter(self.reader, conn.msgtype)
            if conn.msgtype in (CAMERA_INFO_TYPE, TF_MESSAGE_TYPE):
                cdr = converters[conn.msgtype](raw)
                msg = store.deserialize_cdr(cdr, conn.msgtype)
                if conn.msgtype == CAMERA_INFO_TYPE:
                    cameras[conn.topic] = camera_model(msg)
                else:
                    self._add_transforms(msg)
                if not self.copy_camera_info:
                    continue
                item = (conn.topic, conn.msgtype, timestamp, cdr)
                if index >= 0 and timestamp == last_ts:  # same bag time as the last image
                    if held:  # it travels with that frame (skipped frames: already written)
                        held[-1][0].extra.append(item)
                    elif index >= self.start:
                        pending.append(item)
                else:
                    pending.append(item)
                continue
            last_ts = timestamp
            index += 1
            if self.limit is not None and index >= self.limit:
                break
            if index < self.start:
                pending = []
                continue
            cdr = converters[conn.msgtype](raw)
            msg = store.deserialize_cdr(cdr, conn.msgtype)  # ROS 2 fields, whatever the bag
            stamp = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
            held.append((Frame(index, conn.topic, conn.msgtype, timestamp, cdr, stamp,
                               str(msg.header.frame_id), extra=pending), msg))
            pending = []
        yield from self._emit(held, cameras)
        if pending and (self.limit is None or index < self.limit):  # CameraInfo after the end
            yield Frame(-1, "", "", 0, b"", (0, 0), "", error="trailer", extra=pending)

    def _add_transforms(self, msg) -> None:
        """A /tf_static message into a new tree (frames already emitted keep their snapshot)."""
        tree = self._tree.copy()
        try:
            tree.add_message(msg)
        except TransformError as exc:
            log.warning("%s: transform skipped: %s", TF_STATIC_TOPIC, exc)
            return
        self._tree = tree

    def _emit(self, held: list, cameras: dict):
        """Give held frames the latest CameraInfo and static TF (same bag time included) and
        decode them."""
        for frame, msg in held:
            frame.camera, frame.camera_error = cameras.get(camera_info_topic(frame.topic),
                                                           (None, None))
            frame.transforms = self._tree
            if self.decode:
                try:
                    frame.rgb = decode_image(msg)
                except ImageDecodeError as exc:
                    frame.error = str(exc)
                    self.decode_errors += 1
            yield frame
        held.clear()

    def _run(self) -> None:
        try:
            for frame in self._frames():
                while not self._stop.is_set():
                    try:
                        self._queue.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        pass
        except BaseException as exc:  # handed to the consumer
            self.error = exc
        finally:
            self._put_end()

    def _put_end(self) -> None:
        while True:
            try:
                self._queue.put(END, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        pass

    # -- consumer --------------------------------------------------------------------------------
    def __iter__(self):
        self._thread = threading.Thread(target=self._run, name="bag-reader", daemon=True)
        self._thread.start()
        try:
            while True:
                frame = self._queue.get()
                if frame is END:
                    break
                yield frame
            if self.error is not None:
                raise self.error
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
