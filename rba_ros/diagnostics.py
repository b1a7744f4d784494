"""/diagnostics for the node: one DiagnosticStatus per camera, plus one for the model.

Status names start with the node's fully-qualified name (``/robot1/rba_perception: model``), so
namespaced nodes do not collide. The model status is published from node start. Every value, and
when a status turns WARN or ERROR, is in README's ``/diagnostics`` row (outputs table).
"""
from __future__ import annotations

import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from .camera import CameraSlot

COUNTERS = ("received", "processed", "dropped_replaced", "dropped_stale", "conversion_errors",
            "processing_errors", "missing_camera_info", "missing_transform")


def _ms(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.1f}"


class Diagnostics:
    def __init__(self, node_name: str):
        self.node_name = node_name
        self._last: dict[str, dict[str, int]] = {}

    def camera_status(self, slot: CameraSlot, active: bool, ground: str = ""
                      ) -> DiagnosticStatus:
        w = slot.summary()
        totals = {c: getattr(slot.stats, c) for c in COUNTERS}
        last = self._last.get(slot.name, dict.fromkeys(COUNTERS, 0))
        self._last[slot.name] = totals
        new = {c: totals[c] - last[c] for c in COUNTERS}
        problems = []
        if active and new["received"] == 0:
            problems.append("no frames")
        if new["conversion_errors"]:
            problems.append(f"{new['conversion_errors']} undecodable frames")
        if new["processing_errors"]:
            problems.append(f"{new['processing_errors']} failed frames")
        if new["dropped_stale"]:
            problems.append(f"{new['dropped_stale']} frames too old")
        if new["missing_camera_info"]:
            problems.append(f"{new['missing_camera_info']} frames without a valid CameraInfo "
                            f"({slot.camera_error or 'none received'}): no obstacle_points, "
                            "free_points, obstacles_3d")
        if new["missing_transform"]:
            problems.append(f"{new['missing_transform']} frames without transform "
                            f"{slot.transform_error}: ground.* used, outputs in the camera frame")
        level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        message = "; ".join(problems) if problems else (
            f"{w.output_hz:.1f} Hz, {_ms(w.e2e_ms[0])} ms end-to-end" if active else "inactive")
        values = {
            "input_rate_hz": f"{w.input_hz:.2f}", "output_rate_hz": f"{w.output_hz:.2f}",
            "inference_latency_ms": _ms(w.inference_ms[0]),
            "inference_latency_max_ms": _ms(w.inference_ms[1]),
            "end_to_end_latency_ms": _ms(w.e2e_ms[0]),
            "end_to_end_latency_max_ms": _ms(w.e2e_ms[1]),
            "node_latency_ms": _ms(w.node_ms[0]), "node_latency_max_ms": _ms(w.node_ms[1]),
            **{f"frames_{c}" if c in ("received", "processed") else c: str(v)
               for c, v in totals.items()},
            "dropped_frames": str(slot.stats.dropped),
            "ground_frame": ground or "none (ground.*)",
        }
        return DiagnosticStatus(
            level=level, name=f"{self.node_name}: camera {slot.name or '/'}",
            message=message, hardware_id=slot.name or "camera",
            values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def model_status(self, state: str, info: dict[str, str], error: str = "",
                     note: str = "") -> DiagnosticStatus:
        """``info``: what runs (backend, precision, input_size, building, ...); ``note``: e.g.
        warming up (OK) or a failed engine build (WARN)."""
        level = (DiagnosticStatus.ERROR if error else DiagnosticStatus.WARN
                 if info.get("failed") else DiagnosticStatus.OK)
        message = f"{state}: {error}" if error else f"{state}; {note}" if note else state
        return DiagnosticStatus(
            level=level, name=f"{self.node_name}: model", message=message,
            hardware_id="rba_perception",
            values=[KeyValue(key=k, value=str(v)) for k, v in {"state": state, **info}.items()])

    def message(self, stamp, slots: list[CameraSlot], active: bool, state: str,
                info: dict[str, str], error: str = "", ground: str = "",
                note: str = "") -> DiagnosticArray:
        msg = DiagnosticArray()
        msg.header.stamp = stamp
        msg.status = [self.model_status(state, info, error, note)] + [
            self.camera_status(s, active, ground) for s in slots]
        return msg
