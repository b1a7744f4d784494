"""The node's per-frame path: keep-latest input, the inference worker thread, output publishing.

``FrameWorker`` is a mixin of ``PerceptionNode`` (``perception_node.py``), which owns the state it
uses: ``cfg``, ``perception``, ``slots``, ``pubs``, ``label_pubs``, ``max_age``, ``_wake``,
``_stop`` and ``_pose`` (camera -> ground_frame from TF).
"""
from __future__ import annotations

import time

from rba_core.pipeline import messages
from rba_core.pipeline.image_msgs import decode_image

from .camera import CameraSlot, Pending
from .conversions import to_msg

THROTTLE = 5.0  # seconds between repeated warnings of one kind


def join(*parts: str) -> str:
    """Relative topic name from non-empty parts ('front', 'image_raw', 'compressed')."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def age_ns(item: Pending, now: int) -> int:
    """Node clock ``now`` minus the header stamp (minus the receipt time when unstamped)."""
    stamp = int(item.msg.header.stamp.sec) * 1_000_000_000 + int(item.msg.header.stamp.nanosec)
    return now - (stamp if stamp > 0 else item.received_ros)


class FrameWorker:
    # -- input -----------------------------------------------------------------------------------
    def _on_image(self, slot: CameraSlot, msg) -> None:
        slot.put(msg, self.get_clock().now().nanoseconds)
        with self._wake:
            self._wake.notify()

    def _pending(self) -> bool:
        return any(s.peek_received() is not None for s in self.slots)

    def _take(self) -> list[tuple[CameraSlot, Pending]]:
        """Newest frame of each camera (or of the longest-waiting one), minus stale frames."""
        ready = [s for s in self.slots if s.peek_received() is not None]
        if ready and not self.cfg.batch_cameras:
            ready = [min(ready, key=lambda s: s.peek_received() or 0.0)]
        now = self.get_clock().now().nanoseconds
        jobs = []
        for slot in ready:
            item = slot.take()
            if item is None:
                continue
            age = age_ns(item, now) / 1e9
            if self.max_age > 0 and age > self.max_age:
                slot.count("dropped_stale")
                self.get_logger().warning(
                    f"camera {slot.name or '/'}: dropped a frame {age:.2f} s old (max_age "
                    f"{self.max_age} s; check clock sync / use_sim_time)",
                    throttle_duration_sec=THROTTLE)
                continue
            jobs.append((slot, item))
        return jobs

    # -- inference worker ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                self._wake.wait_for(lambda: self._stop.is_set() or self._pending(), timeout=0.5)
            if self._stop.is_set():
                break
            try:
                jobs = self._take()
                if jobs:
                    self._process(jobs)
            except Exception as exc:  # noqa: BLE001 - never let the worker die
                if not self.context.ok():  # shutting down (Ctrl-C): publishers are gone
                    break
                self.get_logger().error(f"inference worker: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=THROTTLE)

    def _process(self, jobs: list[tuple[CameraSlot, Pending]]) -> None:
        frames = []
        for slot, item in jobs:
            try:
                frames.append((slot, item, decode_image(item.msg, self.cfg.max_image_pixels)))
            except Exception as exc:  # noqa: BLE001 - ImageDecodeError or a converter bug
                slot.count("conversion_errors")
                self.get_logger().warning(
                    f"camera {slot.name or '/'}: cannot convert image: {exc}",
                    throttle_duration_sec=THROTTLE)
        if not frames:
            return
        t0 = time.perf_counter()
        try:
            results = self.perception.process([rgb for _, _, rgb in frames])
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory on a huge frame
            for slot, _, _ in frames:
                slot.count("processing_errors")
            self.get_logger().error(f"inference failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=THROTTLE)
            return
        inference_ms = (time.perf_counter() - t0) * 1e3
        for (slot, item, rgb), result in zip(frames, results):
            try:
                self._publish(slot, item.msg.header, rgb, result)
            except Exception as exc:  # noqa: BLE001
                if not self.context.ok():
                    return
                slot.count("processing_errors")
                self.get_logger().error(f"publishing failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=THROTTLE)
                continue
            e2e = age_ns(item, self.get_clock().now().nanoseconds) / 1e6
            slot.record(inference_ms, e2e, (time.monotonic() - item.received) * 1e3)

    def _publish(self, slot: CameraSlot, src_header, rgb, result) -> None:
        """Every output topic someone subscribes to, with the source image's header."""
        pubs, camera = self.pubs[slot.name], slot.camera
        wanted = {name for name, pub in pubs.items() if pub.get_subscription_count() > 0}
        hdr = messages.header((src_header.stamp.sec, src_header.stamp.nanosec),
                              src_header.frame_id)
        pose = self._pose(self.perception, slot, src_header) if camera is not None else None
        out = messages.frame_messages(messages.FrameData(
            self.perception, hdr, rgb, result, camera, pose, slot.tracker), wanted)
        if len(out) < len(wanted):  # the outputs that need a camera model
            slot.count("missing_camera_info")
            self.get_logger().warning(
                f"camera {slot.name or '/'}: no valid CameraInfo on "
                f"{join(slot.name, self.cfg.camera_info_topic)} "
                f"({slot.camera_error or 'none yet'}): no "
                f"{', '.join(sorted(wanted - set(out)))}", throttle_duration_sec=THROTTLE)
        for name, data in out.items():
            pubs[name].publish(to_msg(pubs[name].msg_type, data))

    def _publish_labels(self) -> None:
        stamp = self.get_clock().now().to_msg()
        hdr = messages.header((stamp.sec, stamp.nanosec), "")
        names = list(self.perception.info.class_names)
        for pub in self.label_pubs.values():
            pub.publish(to_msg(pub.msg_type, messages.labels_msg(
                hdr, names, self.perception.threshold_probability)))
