"""Shutdown of the real node process: any sequence of SIGINT / SIGTERM ends in exit 0, without a
traceback, within 3 s of the first signal, also while frames are being inferred.

The sequences are those a robot sees: Ctrl-C (SIGINT); systemd or docker stop (SIGTERM); a
terminal's Ctrl-C plus ros2 launch's own SIGINT, which arrive 10 ms to 2 s apart (two SIGINTs);
launch escalating to SIGTERM while the node still stops (SIGTERM after SIGINT). Each stop also
removes the node's Fast DDS shared-memory segments from /dev/shm.
"""
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SUMMARY
from rba_ros.harness import NodeProcess, RosClient, have_vision_msgs, make_image, next_domain, now_stamp

pytest.importorskip("rclpy")
if not have_vision_msgs():
    pytest.skip("vision_msgs not built into this venv (bash scripts/build_vision_msgs.sh VENV)",
                allow_module_level=True)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = pytest.mark.ros

PARAMS = {"model_path": "preset:tiny", "backend": "torch", "threads": 1, "max_age": 0.0}
LIMIT = 3.0  # seconds from the first signal to the exit
INT, TERM = signal.SIGINT, signal.SIGTERM
CASES = {  # name -> [(delay after the previous signal in s, signal)]
    "SIGINT": [(0, INT)],
    "SIGTERM": [(0, TERM)],
    "2xSIGINT 10ms": [(0, INT), (0.01, INT)],
    "2xSIGINT 300ms": [(0, INT), (0.3, INT)],
    "2xSIGINT 1s": [(0, INT), (1.0, INT)],
    "2xSIGINT 2s": [(0, INT), (2.0, INT)],
    "SIGINT then SIGTERM 50ms": [(0, INT), (0.05, TERM)],
    "SIGTERM then SIGINT 500ms": [(0, TERM), (0.5, INT)],
    "SIGINT mid 1080p frame": [(0, INT)],  # inference takes seconds: not waited for in full
}
BIG = {"SIGINT mid 1080p frame": (1080, 1920)}
RESULTS: dict[str, tuple] = {}


def mapped_segments(pid: int | str) -> set[str]:
    """The Fast DDS segments /dev/shm/fastrtps_* that process ``pid`` has mapped (its own, and
    those of the participants it sends to; port files, shared by all, left out)."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split()[-1] for line in maps
            if "/dev/shm/fastrtps_" in line and "/dev/shm/fastrtps_port" not in line}


def shm_segments(pid: int) -> list[str]:
    """The segments of the node's participant: mapped by it, not by this (the client's) process."""
    return sorted(mapped_segments(pid) - mapped_segments("self"))


@pytest.fixture(scope="module")
def client():
    domain = next_domain()
    c = RosClient(domain)
    try:
        yield domain, c
    finally:
        c.close()
        SUMMARY.extend(f"shutdown {name:26s} -> exit {rc}, {seconds:.2f} s after the first signal "
                       f"({note})" for name, (rc, seconds, note) in RESULTS.items())


@pytest.mark.parametrize("case", list(CASES))
def test_signals_end_in_a_clean_exit(case, client, tmp_path):
    domain, c = client
    node = NodeProcess(tmp_path, domain, PARAMS)
    topic = "/camera/image_raw"
    pub = c.publisher(Image, topic)
    got = c.collect(Image, "/camera/rba/anomaly")
    with node:
        c.wait_for_subscriber(topic, node, timeout=120)
        size = BIG.get(case, (240, 320))
        frame = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
        feeding = threading.Event()

        def feed():  # keep inference busy, so the signal lands mid-frame
            while not feeding.is_set():
                pub.publish(make_image(frame, "rgb8", "cam", now_stamp(c.node)))
                time.sleep(0.5 if case in BIG else 0.05)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            if case in BIG:
                time.sleep(3.0)  # the first big frame is in inference now
            else:
                c.wait_until(lambda: got, 60, "a first output", node)
            segments = shm_segments(node.proc.pid)
            exited = []
            waiter = threading.Thread(target=lambda: (node.proc.wait(), exited.append(
                time.monotonic())), daemon=True)
            t0 = time.monotonic()
            delivered = 0
            for i, (delay, sig) in enumerate(CASES[case]):
                time.sleep(delay)
                if node.proc.poll() is None:
                    node.proc.send_signal(sig)
                    delivered += 1
                if i == 0:
                    waiter.start()
            waiter.join(timeout=LIMIT + 5)
            rc = node.proc.poll()
            seconds = (exited[0] if exited else time.monotonic()) - t0
        finally:
            feeding.set()
            feeder.join()
        log = node.log()
    RESULTS[case] = (rc, seconds, f"{delivered} of {len(CASES[case])} signals reached it")
    assert rc == 0, f"{case}: exit code {rc}\n{log[-3000:]}"
    assert "Traceback" not in log, f"{case}: traceback in the log\n{log[-3000:]}"
    assert seconds < LIMIT, f"{case}: {seconds:.2f} s to exit\n{log[-3000:]}"
    # the harness's Fast DDS profile (config/fastdds_shm.xml) gives each participant a 64 MiB
    # shared-memory segment; a stop must remove it, or every restart leaks 64 MiB of RAM
    # (unless the stop cut off a frame still inferring: that worker thread keeps the node's
    # objects alive until os._exit, like a SIGKILL would; README "Stopping" says so)
    assert segments, "the node mapped no Fast DDS segment: is the SHM transport off?"
    if "stopping without its outputs" not in log:
        assert not [f for f in segments if Path(f).exists()], f"{case}: left in /dev/shm: {segments}"


def test_a_native_crash_leaves_every_threads_python_stack_in_the_log(client, tmp_path):
    """A segfault in DDS or torch code must not vanish silently (exit -11, nothing logged): the
    node runs faulthandler, so the log shows where each thread was. PYTHONFAULTHANDLER is empty
    (off) in its environment, so this is the node's own doing."""
    domain, c = client
    node = NodeProcess(tmp_path, domain, {**PARAMS, "autostart": False},
                       env={"PYTHONFAULTHANDLER": ""})
    diag = c.collect(DiagnosticArray, "/diagnostics")
    with node:  # spinning: it publishes diagnostics (a topic; a service call may be lost here)
        c.wait_until(lambda: diag, 120, "diagnostics from the node", node)
        node.proc.send_signal(signal.SIGSEGV)
        rc = node.proc.wait(30)
    log = node.log()
    assert rc == -signal.SIGSEGV, log[-3000:]
    assert "Fatal Python error: Segmentation fault" in log, log[-3000:]
    assert 'File "' in log and "perception_node.py" in log, log[-3000:]  # the main thread's stack
