"""rba_perception: cameras in; segmentation, anomaly, obstacles and a costmap cloud out.

A lifecycle node (``autostart`` configures and activates it at start):

- configure: read parameters, load the model / engine (rba_core.runtime), create publishers
- activate:  publish ``labels`` (transient-local), start the inference worker, subscribe
- deactivate: unsubscribe, stop the worker;  cleanup: free the model and publishers

Each camera has a keep-latest slot (``camera.py``); the worker thread (``worker.py``) takes the
newest frame of every camera when free, drops frames older than ``max_age``, runs one (batched)
inference and publishes the outputs someone subscribes to, with the source image's header. Bad
input is counted and logged (throttled), never fatal. CameraInfo is validated when it arrives (its
rays computed on a side thread); with ``ground_frame`` set, the camera pose comes from TF at the
image stamp (``ground_tf.py``), else from ``ground.*``.

Run: ``ros2 run rba_ros perception_node --ros-args --params-file config/perception.yaml`` or
``python -m rba_ros.perception_node --ros-args --params-file config/perception.yaml``.
"""
from __future__ import annotations

import os

# a corrupt or hostile PNG/JPEG header must not make OpenCV allocate gigabytes
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(2 ** 26))
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # decode failures are counted and logged by us

import faulthandler  # noqa: E402
import gc  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.msg import SetParametersResult  # noqa: E402
from rclpy.exceptions import ParameterException  # noqa: E402
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from rba_core.errors import RbaError  # noqa: E402
from rba_core.pipeline import messages  # noqa: E402
from rba_core.pipeline.config import PipelineConfig  # noqa: E402
from rba_core.runtime.adaptive import backend_status  # noqa: E402

from .bond import NodeBond  # noqa: E402
from .camera import CameraSlot  # noqa: E402
from .config import NodeConfig  # noqa: E402
from .conversions import message_type, qos  # noqa: E402
from .diagnostics import Diagnostics  # noqa: E402
from .ground_tf import GroundTransforms  # noqa: E402
from .params import (configure_time_changes, declare_all, plain, read_values,  # noqa: E402
                     refusal, split_configs)
from .worker import FrameWorker, join  # noqa: E402

NODE_NAME = "rba_perception"
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
STOP_WAIT = 1.5  # seconds a stopping process waits for the frame in flight (big models on CPU)


class _RosLogHandler(logging.Handler):
    """rba_core's log records (model loading, exports, engine builds) -> the node's ROS log."""

    def __init__(self, logger):
        super().__init__(logging.INFO)
        self.logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        # one call site per severity: rclpy refuses a call site whose severity changes
        # ("Logger severity cannot be changed between calls")
        try:
            if record.levelno >= logging.ERROR:
                self.logger.error(record.getMessage())
            elif record.levelno >= logging.WARNING:
                self.logger.warning(record.getMessage())
            else:
                self.logger.info(record.getMessage())
        except Exception:  # noqa: BLE001 - a log line must never break inference
            pass


def _bridge_logging(logger) -> None:
    core = logging.getLogger("rba_core")
    for old in [h for h in core.handlers if isinstance(h, _RosLogHandler)]:
        core.removeHandler(old)
    core.addHandler(_RosLogHandler(logger))
    core.setLevel(logging.INFO)
    core.propagate = False


def _guarded(transition):
    """Transition callback wrapper: log exceptions (rclpy would swallow them) and fail cleanly."""
    def wrapper(self, state):
        try:
            return transition(self, state)
        except Exception as exc:  # noqa: BLE001 - reported, the node stays alive
            self.get_logger().error(f"{transition.__name__} failed: {exc}")
            self.model_error = f"{transition.__name__} failed: {type(exc).__name__}: {exc}"
            return TransitionCallbackReturn.ERROR
    wrapper.__name__ = transition.__name__
    return wrapper


class PerceptionNode(FrameWorker, LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.specs = declare_all(self)
        self.cfg: NodeConfig | None = None
        self.perception = None
        self.slots: list[CameraSlot] = []
        self.pubs: dict[str, dict] = {}       # camera -> output topic -> lifecycle publisher
        self.label_pubs: dict[str, object] = {}
        self.subs: list = []
        self.transforms: GroundTransforms | None = None  # while active with a ground_frame
        self.active = False
        self.max_age = 0.0
        self.model_info: dict[str, str] = {}
        self.model_error = ""  # why the last configure failed; cleared by a good one
        # /diagnostics from the start (unconfigured, failed configure too), names with namespace
        self.diagnostics = Diagnostics(f"{self.get_namespace().rstrip('/')}/{self.get_name()}")
        _bridge_logging(self.get_logger())
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diag_timer = None
        self._diagnostics_every(self.get_parameter("diagnostics_period").value)
        self.bond = NodeBond(self)
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # -- lifecycle -------------------------------------------------------------------------------
    @_guarded
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.cfg, pipeline_cfg = split_configs(read_values(self, self.specs))
            self.perception = self._load(self.cfg, pipeline_cfg)
        except RbaError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self.perception, self.model_error = None, f"configure failed: {exc}"
            self.cfg = None
            return FAILURE
        cfg, self.model_error = self.cfg, ""
        self.max_age = cfg.max_age
        self.slots = [CameraSlot(name, transport) for name, transport in cfg.camera_specs()]
        out_qos = qos(cfg.output_qos.reliability == "reliable", cfg.output_qos.depth)
        labels_qos = qos(True, 1, transient_local=True)
        for slot in self.slots:
            topic = functools.partial(messages.output_topic, slot.name,
                                      namespace=cfg.output_namespace)
            self.pubs[slot.name] = {
                name: self.create_lifecycle_publisher(message_type(t), topic(name), out_qos)
                for name, t in messages.OUTPUT_TOPICS.items()}
            name, t = messages.LABELS_TOPIC
            self.label_pubs[slot.name] = self.create_lifecycle_publisher(
                message_type(t), topic(name), labels_qos)
        self._diagnostics_every(cfg.diagnostics_period)
        run = backend_status(self.perception.backend)
        size = (f"input size {run['input_size']}" if run["input_size"] != "any" else
                "input size of each camera's frames" + (
                    " (torch runs a new size until its graph is built)"
                    if run["backend"] != "torch" else ""))
        self.get_logger().info(
            f"configured: {run['backend']} backend ({run['precision']}, {size}), model "
            f"{self.model_info['model']}, cameras {', '.join(s.name or '/' for s in self.slots)}")
        return SUCCESS

    @_guarded
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        self._publish_labels()
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="rba-inference", daemon=True)
        self._worker.start()
        in_qos = qos(self.cfg.input_qos.reliability == "reliable", self.cfg.input_qos.depth)
        for slot in self.slots:
            slot.clear()
            compressed = slot.transport == "compressed"
            topic = join(slot.name, self.cfg.image_topic, "compressed" if compressed else "")
            self.subs.append(self.create_subscription(
                CompressedImage if compressed else Image, topic,
                lambda msg, s=slot: self._on_image(s, msg), in_qos))
            self.subs.append(self.create_subscription(
                CameraInfo, join(slot.name, self.cfg.camera_info_topic),
                lambda msg, s=slot: self._on_camera_info(s, msg), in_qos))
        self._track_ground_frame()
        self.active = True
        self.bond.start()
        self.get_logger().info("active")
        return result

    @_guarded
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        return super().on_deactivate(state)

    @_guarded
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return super().on_cleanup(state)

    @_guarded
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self.on_error(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self._cleanup()
        return SUCCESS  # back to unconfigured (from on_error), finalized (from on_shutdown)

    def _deactivate(self, wait: float | None = None) -> None:
        """Unsubscribe, stop the worker (waiting at most ``wait`` s for the frame in flight)."""
        self.active = False
        self.bond.stop()
        for sub in self.subs:
            self.destroy_subscription(sub)
        self.subs = []
        if self.transforms is not None:
            self.transforms.close()
            self.transforms = None
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(wait)
            if self._worker.is_alive():
                self.get_logger().warning(f"inference still running after {wait} s: stopping "
                                          "without its outputs")
            self._worker = None

    def _cleanup(self) -> None:
        for pubs in list(self.pubs.values()) + [self.label_pubs]:
            for pub in pubs.values():
                self.destroy_lifecycle_publisher(pub)
        self.pubs, self.label_pubs, self.slots, self.model_info = {}, {}, [], {}
        if self.perception is not None and hasattr(self.perception.backend, "close"):
            self.perception.backend.close()  # stops engine builds still queued
        self.perception = None  # frees the backend (torch / ONNX Runtime / TensorRT)
        self.cfg = None

    def _load(self, cfg: NodeConfig, pipeline_cfg: PipelineConfig):
        from rba_core.pipeline.calibration import calibration_path, model_calibrations
        from rba_core.pipeline.perception import Perception
        from rba_core.runtime import load_backend

        if cfg.threads:
            import torch
            torch.set_num_threads(cfg.threads)
        t0 = time.monotonic()
        # without input_size: one graph per frame size, torch runs a size while it builds
        backend = load_backend(
            cfg.model_path or None, cfg.backend, cfg.scores, cfg.inference, cfg.device or None,
            cfg.fp16, input_size=tuple(cfg.input_size) if cfg.input_size else None,
            batch_size=cfg.batch_size, threads=cfg.threads or None,
            cache_dir=cfg.cache_dir or None, int8=cfg.int8, warmup="torch")
        calibrations = model_calibrations(cfg.model_path)
        perception = Perception(backend, pipeline_cfg, calibrations)  # checks score, classes
        info = backend.info
        self.model_info = {
            "model": cfg.model_path or "default", "classes": str(len(info.class_names)),
            "scores": ",".join(info.score_names),
            "score_calibration": (str(calibration_path(cfg.model_path)) if calibrations else
                                  "none: 0..1 scores are a 0/1 step at the threshold"),
            "load_s": f"{time.monotonic() - t0:.1f}"}
        return perception

    def _model_values(self) -> tuple[dict[str, str], str]:
        """/diagnostics model values (what runs now: backend, precision, sizes) and a note."""
        if self.perception is None:
            return self.model_info, ""
        run = backend_status(self.perception.backend)
        note = ""
        if run.get("building"):
            note = (f"warming up: torch runs {run['building']} until its {run['backend']} graph "
                    f"is built")
        if run.get("failed"):
            note = "; ".join(filter(None, [note, f"build failed, torch runs {run['failed']}"]))
        return {**self.model_info, **run}, note

    # -- parameters ------------------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        """Live values (PipelineConfig fields, validated against the model, and max_age) in every
        state; configure-time values while unconfigured only (``cfg`` is None)."""
        values = read_values(self, self.specs)
        specs = {s.name: s for s in self.specs}
        ours = {p.name: plain(specs[p.name], p.value) for p in params if p.name in specs}
        if not ours:  # use_sim_time, qos overrides, ...: not ours to judge
            return SetParametersResult(successful=True)
        if self.cfg is not None and (fixed := configure_time_changes(self.specs, values, ours)):
            return SetParametersResult(successful=False, reason=refusal(fixed, self.active))
        values.update(ours)
        try:
            node_cfg, pipeline_cfg = split_configs(values)
            old = self.perception and self.perception.cfg
            if self.perception is not None:
                self.perception.update(pipeline_cfg)
        except RbaError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.max_age = node_cfg.max_age
        if self.active and old is not None:
            if (old.score, old.threshold) != (pipeline_cfg.score, pipeline_cfg.threshold):
                self._publish_labels()  # LabelInfo.threshold = p(threshold)
            self._track_ground_frame()
        return SetParametersResult(successful=True)

    def _track_ground_frame(self) -> None:
        """Listen to TF while ``ground_frame`` is set (activate, live parameter changes)."""
        if self.perception.cfg.ground_frame and self.transforms is None:
            self.transforms = GroundTransforms(self)
            self.get_logger().info(f"ground_frame {self.perception.cfg.ground_frame}: camera "
                                   f"poses from {self.transforms.source}")

    def _on_camera_info(self, slot: CameraSlot, msg) -> None:
        """Validate the CameraInfo; a new camera model gets its rays computed on a side thread
        (the first frame would otherwise pay for them: ~0.5 s with distortion at 480x360)."""
        if slot.set_camera_info(msg):
            threading.Thread(target=self._warm, args=(slot.camera, msg.header),
                             name="rba-rays", daemon=True).start()

    def _warm(self, camera, header) -> None:
        perception = self.perception
        try:
            if perception is not None:
                perception.warm(camera, self._pose(perception, None, header))
        except Exception as exc:  # noqa: BLE001 - only a cache warm-up; frames still work
            self.get_logger().warning(f"computing camera rays failed: {exc}")

    def _pose(self, perception, slot: CameraSlot | None, header):
        """camera -> ground_frame at the image stamp; None: ground.* fallback."""
        ground_frame, transforms = perception.cfg.ground_frame, self.transforms
        if not ground_frame or transforms is None:
            return None
        return transforms.camera_pose(ground_frame, header, slot)

    def _diagnostics_every(self, period: float) -> None:
        if self.diag_timer is not None:
            if abs(self.diag_timer.timer_period_ns - period * 1e9) < 1e3:
                return
            self.destroy_timer(self.diag_timer)
        self.diag_timer = self.create_timer(period, self._publish_diagnostics)

    def _publish_diagnostics(self) -> None:
        state = "active" if self.active else "inactive" if self.cfg else "unconfigured"
        ground = (self.perception.cfg.ground_frame if self.perception is not None else "") or ""
        source = self.transforms.source if self.transforms is not None else "not listening"
        values, note = self._model_values()
        self.diag_pub.publish(self.diagnostics.message(
            self.get_clock().now().to_msg(), self.slots, self.active, state, values,
            self.model_error, f"{ground} ({source})" if ground else "none (ground.*)", note))


def main(args=None) -> None:
    """Run until SIGINT or SIGTERM. Any number of them, in any order (Ctrl-C plus ros2 launch's;
    systemd's SIGTERM), only request the stop: the node deactivates, joins the worker, is
    destroyed and the process exits 0, never with a traceback.

    As a program (``args`` None) every ending goes through ``os._exit``: 0 after a stop, 2 for a
    parameter of the wrong type or out of range (one line), 1 for any other error. The
    interpreter's own teardown of torch and timm takes seconds (1.9 s and 4.4 s on a loaded 2-core
    machine), longer than ros2 launch waits before it escalates, and its final garbage collection
    of the rclpy / Fast DDS objects hung (5 of 10 runs of test_node_robustness.py) or crashed."""
    if args is not None:  # in-process (tests): errors propagate
        _run(args)
        return
    code = 0
    try:
        _run(None)
    except ParameterException as exc:  # -p / --params-file: wrong type, out of range
        print(f"{NODE_NAME}: bad parameter: {exc}", file=sys.stderr)
        code = 2
    except BaseException:  # noqa: BLE001 - reported; the exit below must still happen
        traceback.print_exc()
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(args) -> None:
    if not faulthandler.is_enabled():  # a crash in native code (DDS, torch) logs every
        faulthandler.enable()          # thread's Python stack instead of dying silently
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:  # rclpy's own handlers would shut the context down under the running node
        from rclpy.signals import SignalHandlerOptions
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except (ImportError, TypeError):  # an rclpy without signal_handler_options
        rclpy.init(args=args)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    node = executor = None
    try:
        node = PerceptionNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if node.get_parameter("autostart").value and not stop.is_set():
            if node.trigger_configure() == SUCCESS and not stop.is_set():
                node.trigger_activate()
        while not stop.is_set() and rclpy.ok():  # signal handlers run between these waits
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:  # the context was shut down by someone else
        pass
    except Exception:
        if rclpy.ok():  # a context shut down mid-wait raises RCLError instead: a stop too
            raise
    finally:
        if node is not None:
            node._deactivate(wait=STOP_WAIT)
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        # Fast DDS removes the participant's shared-memory segment (64 MiB with
        # config/fastdds_shm.xml) only when the last rclpy object of the context is freed; the
        # node's objects sit in reference cycles, and os._exit skips the interpreter's collection:
        # without this every stop left its segment in /dev/shm
        node = executor = None
        gc.collect()
        for sig, handler in previous.items():  # called in-process (tests): give them back
            signal.signal(sig, handler)


if __name__ == "__main__":
    main()
