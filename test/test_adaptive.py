"""Size-adaptive backends: ONNX Runtime (standing in for a TensorRT engine build) exported per frame
size, torch while a size builds (the node) or waiting for it (the CLIs), cached exports re-used."""
import logging
import threading

import numpy as np
import pytest

from rba_core.checkpoint import save_model
from rba_core.model import ModelConfig, build_model
from rba_core.runtime import (BackendError, InferenceResult, ModelInfo, SizeAdaptiveBackend,
                              backend_status, load_backend)
from rba_core.runtime.torch_backend import TorchBackend

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

H, W = 48, 64


def frames(h=H, w=W, b=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (b, 3, h, w), dtype=np.uint8)


def agree(a: InferenceResult, ref: InferenceResult) -> None:
    """The export's own tolerance (onnx_export.verify_export): ids on 99.9 %, maps 1e-4 rel."""
    assert (a.class_ids == ref.class_ids).mean() >= 0.999
    r = ref.scores["rba"]
    assert np.abs(a.scores["rba"] - r).max() <= 1e-4 * np.abs(r).max()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    cfg = ModelConfig.preset("tiny", decoder={"num_queries": 8})
    return save_model(build_model(cfg), tmp_path_factory.mktemp("m") / "tiny.safetensors")


# -- the policy, with stand-ins (which backend answered is what is tested) ----------------------
class Stub:
    """A backend that answers with its ``tag`` in every class id."""

    def __init__(self, tag, size=None):
        self.tag, self.name, self.precision = tag, f"stub{tag}", "fp32"
        self.info = ModelInfo(["a"], [[0, 0, 0]], ["rba"], "exact", size, None)
        self.calls = 0

    def infer(self, images):
        self.calls += 1
        b, _, h, w = images.shape
        return InferenceResult(np.full((b, h, w), self.tag, np.int32), np.zeros((b, h, w)),
                               {"rba": np.zeros((b, h, w), np.float32)})

    def infer_modes(self, images, modes):
        return {m: self.infer(images) for m in modes}


def stub_adaptive(warmup, gate=None, fail=(), max_sizes=4):
    built = []

    def build(size):
        if gate is not None:
            gate.wait(30)
        if size in fail:
            raise RuntimeError("engine build failed\nsecond line")
        built.append(size)
        return Stub(1, size)

    torch_stub = Stub(0)
    backend = SizeAdaptiveBackend("onnxruntime", "fp32", torch_stub.info, 1, build,
                                  lambda: torch_stub, warmup, max_sizes)
    return backend, built, torch_stub


def tag(backend, images) -> int:
    return int(backend.infer(images).class_ids.flat[0])


def test_torch_runs_a_size_until_its_engine_is_built_then_switches():
    gate = threading.Event()
    backend, built, _ = stub_adaptive("torch", gate)
    assert backend.info.input_size is None and backend.info.batch_size == 1
    assert tag(backend, frames()) == 0  # the build is blocked: torch answers
    status = backend_status(backend)
    assert status["building"] == f"{H}x{W}" and status["input_size"] == "any"
    assert tag(backend, frames()) == 0
    gate.set()
    assert backend.wait((H, W), 30)
    assert tag(backend, frames()) == 1 and built == [(H, W)]
    assert backend_status(backend) == {"backend": "onnxruntime", "precision": "fp32",
                                       "input_size": f"{H}x{W}", "building": "", "failed": "",
                                       "warmup": "torch"}
    # another size: built in turn while torch runs it; the first size keeps its engine
    gate.clear()
    assert tag(backend, frames(64, 80)) == 0 and tag(backend, frames()) == 1
    gate.set()
    backend.wait(timeout=30)
    assert tag(backend, frames(64, 80)) == 1 and built == [(H, W), (64, 80)]
    assert backend_status(backend)["input_size"] == f"{H}x{W}, 64x80"


def test_wait_blocks_until_the_engine_runs_and_a_failure_is_one_line():
    backend, built, torch_stub = stub_adaptive("wait", fail=[(64, 80)])
    assert tag(backend, frames()) == 1 and built == [(H, W)] and torch_stub.calls == 0
    with pytest.raises(BackendError) as e:
        backend.infer(frames(64, 80))
    assert str(e.value) == ("64x80: building the onnxruntime graph failed (RuntimeError: engine "
                            "build failed)")


def test_a_failed_build_leaves_its_size_on_torch_and_is_reported(caplog):
    backend, _, _ = stub_adaptive("torch", fail=[(H, W)])
    with caplog.at_level(logging.ERROR, "rba_core.runtime.adaptive"):
        backend.infer(frames())
        backend.wait(timeout=30)
        assert tag(backend, frames()) == 0  # never retried, torch keeps the camera going
    assert "failed" in caplog.text and backend_status(backend)["failed"].startswith(f"{H}x{W}")


def test_odd_sizes_run_on_torch_instead_of_triggering_exports(caplog):
    backend, built, _ = stub_adaptive("wait", max_sizes=2)
    with caplog.at_level(logging.WARNING, "rba_core.runtime.adaptive"):
        assert tag(backend, frames(40, 40)) == 1 and tag(backend, frames(48, 48)) == 1
        assert tag(backend, frames(56, 56)) == 0  # a third size: torch
        assert tag(backend, frames(56, 56)) == 0
        assert tag(backend, frames(20, 200)) == 0  # too small to export
    assert built == [(40, 40), (48, 48)]
    assert caplog.text.count("56x56 frames run on torch") == 1  # warned once per size
    assert "too small" in caplog.text


def test_close_discards_queued_builds():
    gate = threading.Event()
    backend, built, _ = stub_adaptive("torch", gate)
    backend.infer(frames())
    backend.infer(frames(64, 80))  # queued behind the first
    backend.close()
    gate.set()
    assert backend.wait(timeout=30)
    assert backend_status(backend)["input_size"] == "any" and (64, 80) not in built


# -- the real thing: exports, ONNX Runtime, caches ----------------------------------------------
def test_load_backend_picks_the_adaptive_backend_without_a_size(model_file):
    assert isinstance(load_backend(model_file, "torch"), TorchBackend)
    for name in ("auto", "onnxruntime"):  # no TensorRT here: auto is ONNX Runtime
        backend = load_backend(model_file, name, "rba", device="cpu")
        assert isinstance(backend, SizeAdaptiveBackend) and backend.name == "onnxruntime"
    with pytest.raises(BackendError, match="int8 runs on the onnxruntime and tensorrt"):
        load_backend(model_file, "torch", int8=True)


def test_outputs_before_and_after_the_switch_agree_with_eager_torch(tmp_path, caplog):
    """Node mode on a preset (random weights exist only in memory: the export must use them)."""
    backend = load_backend("preset:tiny", "onnxruntime", "rba", device="cpu", threads=1,
                           cache_dir=tmp_path, warmup="torch")
    x = frames(b=1, seed=1)
    with caplog.at_level(logging.INFO, "rba_core.runtime.adaptive"):
        first = backend.infer(x)  # torch: the export takes seconds
        assert backend.runs((H, W)) == "torch" or "ready" in caplog.text
        assert backend.wait((H, W), 600)
    assert backend.runs((H, W)) == "onnxruntime"
    assert f"{H}x{W}: onnxruntime fp32 ready after" in caplog.text
    assert "switching from torch" in caplog.text
    agree(backend.infer(x), first)


def test_wait_mode_exports_each_size_once_into_the_cache(model_file, tmp_path, monkeypatch):
    reference = load_backend(model_file, "torch", "rba", device="cpu")
    backend = load_backend(model_file, "onnxruntime", "rba", device="cpu", threads=1,
                           cache_dir=tmp_path)
    x = frames(seed=2)
    agree(backend.infer(x), reference.infer(x))
    assert backend.runs((H, W)) == "onnxruntime"
    cached = sorted(p.name for p in (tmp_path / "onnx").glob("*.onnx"))
    assert len(cached) == 1 and f"{H}x{W}-b1-exact-rba" in cached[0]

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("rba_core.runtime.loader.export_onnx", no_export)
    again = load_backend(model_file, "onnxruntime", "rba", device="cpu", threads=1,
                         cache_dir=tmp_path)
    agree(again.infer(x), reference.infer(x))  # the cached graph, no export
