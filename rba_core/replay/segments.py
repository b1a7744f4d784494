"""A rosbag2 writer that survives being killed: the bag is split into closed segments.

A bag file still open is unreadable, so the output folder is a normal *split* rosbag2 bag
(``NAME_0.mcap``, ``NAME_1.mcap``, ...): each segment is written under ``.partial/``, closed,
moved next to the others, and only then listed in ``metadata.yaml`` (replaced atomically), whose
``custom_data['rba_replay']`` (JSON) counts the input frames of the closed segments: where
``--resume`` restarts. A kill, or a write error (one ``WriteError`` line), loses at most the open
segment (README "Nothing lost on interruption").
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import yaml

from ..files import atomic_path, fsync, writing
from .bags import BagError, output_typestore, storage_plugin, storage_suffix

log = logging.getLogger(__name__)

STATE_KEY = "rba_replay"
PARTIAL = ".partial"


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_metadata(path: Path) -> dict | None:
    meta = Path(path) / "metadata.yaml"
    if not meta.is_file():
        return None
    return yaml.load(meta.read_text(), Loader=_LOADER)["rosbag2_bagfile_information"]


def _segment_info(writer) -> dict:
    """A closed rosbags ``Writer``'s metadata (what it put in its metadata.yaml), from memory."""
    from rosbags.rosbag2.metadata import dump_qos_v9

    count = sum(writer.counts.values())
    start = writer.min_timestamp if count else 0
    duration = max(0, writer.max_timestamp - writer.min_timestamp) if count else 0
    return {
        "version": writer.version, "storage_identifier": writer.storage_plugin.name.lower(),
        "compression_format": "", "compression_mode": "", "ros_distro": "rosbags",
        "message_count": count,
        "files": [{"path": "", "starting_time": {"nanoseconds_since_epoch": start},
                   "duration": {"nanoseconds": duration}, "message_count": count}],
        "topics_with_message_count": [
            {"topic_metadata": {"name": c.topic, "type": c.msgtype,
                                "serialization_format": c.ext.serialization_format,
                                "offered_qos_profiles": dump_qos_v9(c.ext.offered_qos_profiles),
                                "type_description_hash": c.digest},
             "message_count": writer.counts[c.id]}
            for c in writer.connections]}


def read_state(path: Path) -> dict | None:
    """The replay state stored in a bag's metadata (None when absent)."""
    info = read_metadata(path)
    if info is None:
        return None
    raw = (info.get("custom_data") or {}).get(STATE_KEY)
    return json.loads(raw) if raw else None


class SegmentedBagWriter:
    """Write messages; ``frame_done()`` after each frame; segments close every N frames / S s."""

    def __init__(self, path: str | Path, storage: str = "mcap", *, segment_frames: int = 0,
                 segment_seconds: float = 5.0, state: dict | None = None, resume: bool = False):
        self.path = Path(path)
        self.storage = storage
        self.plugin = storage_plugin(storage)
        self.segment_frames, self.segment_seconds = segment_frames, segment_seconds
        self.store = output_typestore()
        self.topics: dict[str, tuple[str, list]] = {}  # topic -> (msgtype, qos)
        self.info: dict | None = None  # merged metadata of the closed segments
        self.state = dict(state or {})
        self.state.setdefault("frames_done", 0)
        self.state.setdefault("complete", False)
        self._writer = None
        self._conns: dict[str, object] = {}
        self._frames_in_segment = 0
        self._messages_in_segment = 0
        self._opened_at = 0.0
        self._prepare(resume)

    # -- set-up --------------------------------------------------------------------------------
    def _prepare(self, resume: bool) -> None:
        """Create the folder, or (resume) clean what a killed run left and reload its state."""
        if not self.path.exists():
            self.path.mkdir(parents=True)
            return
        if not self.path.is_dir():
            raise BagError(f"--out {self.path} exists and is not a folder")
        info = read_metadata(self.path)
        if info is None and not {p.name for p in self.path.iterdir()} <= {PARTIAL}:
            raise BagError(f"--out {self.path} exists and is not a replay output; choose a new "
                           f"folder")
        if not resume:
            raise BagError(f"--out {self.path} exists: pass --resume to continue that replay, "
                           f"or choose a new folder")
        shutil.rmtree(self.path / PARTIAL, ignore_errors=True)
        if info is None:  # killed before the first segment closed: nothing to keep
            return
        self.storage = info.get("storage_identifier", self.storage)  # continue in its storage
        self.plugin = storage_plugin(self.storage)
        listed = {Path(p).name for p in info["relative_file_paths"]}
        for stray in self.path.glob(f"{self.path.name}_*{storage_suffix(self.storage)}"):
            if stray.name not in listed:  # moved but not yet listed when the run was killed
                stray.unlink()
        self.info = info
        self.state.update(json.loads((info.get("custom_data") or {}).get(STATE_KEY, "{}")))

    @property
    def frames_done(self) -> int:
        """Input frames held by the closed segments plus the open one."""
        return int(self.state["frames_done"]) + self._frames_in_segment

    def add_topic(self, topic: str, msgtype: str, qos: list | None = None) -> None:
        """Declare a topic (it is registered in every segment, in declaration order)."""
        if topic in self.topics:
            if self.topics[topic][0] != msgtype:
                raise BagError(f"topic {topic} written as {self.topics[topic][0]} and {msgtype}")
            return
        self.topics[topic] = (msgtype, list(qos or []))
        if self._writer is not None:
            self._connect(topic)

    # -- writing -------------------------------------------------------------------------------
    def _segment_name(self) -> str:
        n = len(self.info["relative_file_paths"]) if self.info else 0
        return f"{self.path.name}_{n}"

    def _segment_file(self, folder: Path) -> Path:
        """The storage file rosbags writes for a segment folder."""
        return folder / f"{folder.name}{storage_suffix(self.storage)}"

    def _connect(self, topic: str) -> None:
        msgtype, qos = self.topics[topic]
        self._conns[topic] = self._writer.add_connection(
            topic, msgtype, typestore=self.store, offered_qos_profiles=qos)

    def _open(self) -> None:
        from rosbags.rosbag2 import Writer

        folder = self.path / PARTIAL / self._segment_name()
        with writing(self._segment_file(folder)):
            (self.path / PARTIAL).mkdir(exist_ok=True)
            self._writer = Writer(folder, version=9, storage_plugin=self.plugin)
            self._writer.open()
        self._conns = {}
        for topic in self.topics:
            self._connect(topic)
        self._frames_in_segment = 0
        self._messages_in_segment = 0
        self._opened_at = time.monotonic()

    def write(self, topic: str, timestamp: int, data) -> None:
        if self._writer is None:
            self._open()
        with writing(self._segment_file(self._writer.path)):
            self._writer.write(self._conns[topic], int(timestamp), data)
        self._messages_in_segment += 1

    def frame_done(self, frames: int = 1) -> None:
        """Count input frame(s) as fully written; close the segment when it is big enough."""
        if self._writer is None:
            self._open()
        self._frames_in_segment += frames
        if ((self.segment_frames and self._frames_in_segment >= self.segment_frames)
                or time.monotonic() - self._opened_at >= self.segment_seconds):
            self.flush()

    def flush(self) -> None:
        """Close the open segment (if any) and list it in metadata.yaml."""
        writer = self._writer
        if writer is None:
            return
        if not self._messages_in_segment:
            self._writer = None
            writer.abort()
            shutil.rmtree(writer.path, ignore_errors=True)
            return
        seg_file = self._segment_file(writer.path)
        dst = self.path / seg_file.name
        with writing(seg_file):
            writer.close()
            fsync(seg_file)
            os.replace(seg_file, dst)
        self._writer = None
        frames, self._frames_in_segment = self._frames_in_segment, 0
        self.state["frames_done"] += frames
        self._merge(_segment_info(writer), dst.name)
        shutil.rmtree(writer.path, ignore_errors=True)

    def close(self, complete: bool = False) -> None:
        self.state["complete"] = bool(complete)
        before = self.info and len(self.info["relative_file_paths"])
        self.flush()
        if self.info is not None and len(self.info["relative_file_paths"]) == before:
            self._write_metadata()  # no new segment, but the state changed
        shutil.rmtree(self.path / PARTIAL, ignore_errors=True)

    # -- metadata ------------------------------------------------------------------------------
    def _merge(self, seg: dict, filename: str) -> None:
        """Add one closed segment's metadata to the bag's."""
        if self.info is None:
            self.info = {k: seg[k] for k in ("version", "storage_identifier",
                                              "compression_format", "compression_mode",
                                              "ros_distro")}
            self.info.update(relative_file_paths=[], files=[], topics_with_message_count=[],
                             message_count=0, starting_time={"nanoseconds_since_epoch": 0},
                             duration={"nanoseconds": 0})
        info = self.info
        info["relative_file_paths"].append(filename)
        entry = dict(seg["files"][0], path=filename)
        info["files"].append(entry)
        info["message_count"] += seg["message_count"]
        topics = {(t["topic_metadata"]["name"], t["topic_metadata"]["type"]): t
                  for t in info["topics_with_message_count"]}
        for t in seg["topics_with_message_count"]:
            key = (t["topic_metadata"]["name"], t["topic_metadata"]["type"])
            if key in topics:
                topics[key]["message_count"] += t["message_count"]
            else:
                info["topics_with_message_count"].append(dict(t))
                topics[key] = info["topics_with_message_count"][-1]
        spans = [(f["starting_time"]["nanoseconds_since_epoch"],
                  f["starting_time"]["nanoseconds_since_epoch"] + f["duration"]["nanoseconds"])
                 for f in info["files"] if f["message_count"]]
        if spans:
            start = min(s for s, _ in spans)
            info["starting_time"] = {"nanoseconds_since_epoch": start}
            info["duration"] = {"nanoseconds": max(e for _, e in spans) - start}
        self._write_metadata()

    def _write_metadata(self) -> None:
        self.info["custom_data"] = {STATE_KEY: json.dumps(self.state, sort_keys=True)}
        path = self.path / "metadata.yaml"
        with writing(path), atomic_path(path, sync=True) as tmp, tmp.open("w") as f:
            # C emitter: it is rewritten after every segment
            yaml.dump({"rosbag2_bagfile_information": self.info}, f, Dumper=_DUMPER,
                      default_flow_style=False, sort_keys=False)

    def abort(self) -> None:
        """Drop the open segment (after an error): the closed ones stay a valid bag. Never
        raises (closing a file on a full disk fails again)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.abort()
            except Exception as exc:  # noqa: BLE001  (the first error is the one reported)
                log.debug("aborting %s: %s", writer.path, exc)
        self._frames_in_segment = 0
        self._messages_in_segment = 0
        shutil.rmtree(self.path / PARTIAL, ignore_errors=True)
