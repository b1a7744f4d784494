"""Engine cache keys and lookup (no TensorRT needed), layer -> ONNX node mapping, and the real
TensorRT backend where ``tensorrt`` and a GPU are available."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from rba_core.runtime import BackendError
from rba_core.runtime.engine_cache import EngineCache, EngineKey, cache_root
from rba_core.runtime.trt_backend import node_of_layer, trt_unavailable_reason

KEY = EngineKey("ab" * 32, "10.3.0", "NVIDIA Orin", "8.7", "fp16")


class Builder:
    """A fake engine build that counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return f"engine #{self.calls}".encode()


def test_key_changes_with_every_field():
    digests = {KEY.digest()}
    for name, value in [("onnx_sha256", "cd" * 32), ("trt_version", "10.4.0"),
                        ("gpu_name", "NVIDIA A100"), ("compute_capability", "8.0"),
                        ("precision", "fp32"), ("schema", KEY.schema + 1)]:
        digests.add(dataclasses.replace(KEY, **{name: value}).digest())
    assert len(digests) == 7
    assert EngineKey(*dataclasses.astuple(KEY)).digest() == KEY.digest()  # deterministic


def test_built_once_then_loaded_without_rebuilding(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    onnx_path = tmp_path / "model.onnx"
    data, built = cache.get_or_build(KEY, onnx_path, build)
    assert (data, built, build.calls) == (b"engine #1", True, 1)
    for _ in range(3):  # later launches: same key, no build
        data, built = EngineCache(tmp_path).get_or_build(KEY, onnx_path, build)
        assert (data, built, build.calls) == (b"engine #1", False, 1)
    assert [p.name for p in tmp_path.glob("*.engine")] == [f"model-{KEY.digest()}.engine"]


@pytest.mark.parametrize("field, value", [("onnx_sha256", "ef" * 32), ("trt_version", "10.4.0"),
                                          ("gpu_name", "NVIDIA A100"),
                                          ("compute_capability", "8.6"), ("precision", "fp32")])
def test_key_change_rebuilds(tmp_path, field, value):
    cache, build = EngineCache(tmp_path), Builder()
    onnx_path = tmp_path / "model.onnx"
    cache.get_or_build(KEY, onnx_path, build)
    new_key = dataclasses.replace(KEY, **{field: value})
    data, built = cache.get_or_build(new_key, onnx_path, build)
    assert (data, built, build.calls) == (b"engine #2", True, 2)
    assert cache.load(new_key, onnx_path) == b"engine #2"
    assert cache.get_or_build(new_key, onnx_path, build) == (b"engine #2", False)
    # a stale engine (same ONNX path and precision) is removed; the other precision's is kept
    old = cache.load(KEY, onnx_path)
    assert old == (b"engine #1" if field == "precision" else None)


def test_engines_of_other_onnx_files_are_kept(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    a, b = tmp_path / "a" / "model.onnx", tmp_path / "b" / "model.onnx"  # same stem
    cache.get_or_build(KEY, a, build)
    other = dataclasses.replace(KEY, onnx_sha256="12" * 32)
    cache.get_or_build(other, b, build)
    assert cache.load(KEY, a) == b"engine #1" and cache.load(other, b) == b"engine #2"


def test_unusable_or_tampered_entries_are_rebuilt(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    onnx_path = tmp_path / "model.onnx"
    cache.get_or_build(KEY, onnx_path, build)
    # the deserializer rejects the cached bytes (e.g. a driver update): rebuild and overwrite
    data, built = cache.get_or_build(KEY, onnx_path, build, accept=lambda d: False)
    assert (data, built) == (b"engine #2", True)
    assert cache.load(KEY, onnx_path) == b"engine #2"
    # a key file naming another key (hash collision of the file name, manual copy): not used
    sidecar = cache.path(KEY, onnx_path).with_name(cache.path(KEY, onnx_path).name + ".key")
    meta = json.loads(sidecar.read_text())
    meta["key"]["gpu_name"] = "other"
    sidecar.write_text(json.dumps(meta))
    assert cache.load(KEY, onnx_path) is None
    sidecar.write_text("{not json")
    assert cache.load(KEY, onnx_path) is None
    assert cache.get_or_build(KEY, onnx_path, build) == (b"engine #3", True)


def test_truncated_or_orphaned_engines_are_rebuilt(tmp_path, caplog):
    """The key file records the engine's size and sha256: damage is caught before deserializing."""
    cache, build = EngineCache(tmp_path), Builder()
    onnx_path = tmp_path / "model.onnx"
    engine = cache.path(KEY, onnx_path)
    key_file = engine.with_name(engine.name + ".key")
    cache.get_or_build(KEY, onnx_path, build)
    seen = []
    damages = [lambda: engine.write_bytes(b"engine"),        # truncated
               lambda: engine.write_bytes(b"engine #X"),     # same size, other bytes
               lambda: key_file.unlink(),                    # engine without its key file
               lambda: engine.unlink()]                      # key file without its engine
    for n, damage in enumerate(damages, start=2):
        damage()
        with caplog.at_level("WARNING"):
            data, built = cache.get_or_build(KEY, onnx_path, build, accept=seen.append)
        assert (data, built) == (f"engine #{n}".encode(), True)
        assert "rebuilding" in caplog.text
        caplog.clear()
    assert seen == []  # no damaged engine ever reached the deserializer
    assert sorted(p.name for p in tmp_path.iterdir()) == [engine.name, key_file.name]


# One process of the race: a fake engine build (slow enough to overlap), counted in BUILDS.
RACER = """
import logging, os, sys, time
from pathlib import Path
logging.basicConfig(level=logging.INFO)
from rba_core.runtime.engine_cache import EngineCache, EngineKey
cache_dir, builds, ready, go = sys.argv[1:5]
def build():
    with open(builds, "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(1.0)
    return f"engine of {os.getpid()}".encode()
key = EngineKey("ab" * 32, "10.3.0", "NVIDIA Orin", "8.7", "fp16")
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.005)
data, built = EngineCache(cache_dir).get_or_build(key, "/models/m.onnx", build)
print("RESULT", data.decode(), built)
"""


def test_processes_building_the_same_engine_build_it_once(tmp_path):
    from proc_util import race

    builds = tmp_path / "builds.txt"
    runs = race(RACER, [str(tmp_path / "engines"), str(builds)], tmp_path, n=3)
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stdout for r in runs]
    builder = builds.read_text().split()
    assert len(builder) == 1
    results = [r.stdout.split("RESULT ", 1)[1].split() for r in runs]
    assert sorted(built for *_, built in results) == ["False", "False", "True"]
    assert {" ".join(data) for *data, _ in results} == {f"engine of {builder[0]}"}
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == [
        f"m-{KEY.digest()}.engine", f"m-{KEY.digest()}.engine.key"]


def test_without_a_file_lock_concurrent_builds_stay_whole(tmp_path):
    """Where fcntl is missing (Windows) every process may build, but none fails or gets a
    partial engine, and the entry left behind is used or rebuilt, never half-read."""
    from proc_util import race

    script = "import rba_core.files as F; F.fcntl = None\n" + RACER
    runs = race(script, [str(tmp_path / "engines"), str(tmp_path / "builds.txt")], tmp_path, 3)
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stdout for r in runs]
    builders = (tmp_path / "builds.txt").read_text().split()
    for run in runs:
        data, _ = run.stdout.split("RESULT ", 1)[1].rsplit(" ", 1)
        assert data.removeprefix("engine of ") in builders
    data, _ = EngineCache(tmp_path / "engines").get_or_build(KEY, "/models/m.onnx", Builder())
    assert data.decode().removeprefix("engine of ") in builders or data == b"engine #1"
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == [
        f"m-{KEY.digest()}.engine", f"m-{KEY.digest()}.engine.key"]


def test_failed_build_leaves_no_entry(tmp_path):
    cache = EngineCache(tmp_path)

    def failing():
        raise BackendError("build failed")

    with pytest.raises(BackendError):
        cache.get_or_build(KEY, tmp_path / "m.onnx", failing)
    assert list(tmp_path.iterdir()) == []


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RBA_CACHE_DIR", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert EngineCache().dir == tmp_path / "c" / "engines"
    monkeypatch.delenv("RBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "rba_ros"


def test_layers_map_to_their_onnx_nodes():
    nodes = {"node_Conv_12", "node_Add", "node_Add_3", "node_layer_norm_1"}
    assert node_of_layer("node_Conv_12", "", nodes) == "node_Conv_12"
    assert node_of_layer("whatever", "[ONNX Layer: node_Add_3]", nodes) == "node_Add_3"
    assert node_of_layer("node_Add_3_1", "", nodes) == "node_Add_3"  # uniquified by the parser
    assert node_of_layer("node_Add_3", "", nodes) == "node_Add_3"  # not node_Add
    assert node_of_layer("node_layer_norm_1_2_5", "", nodes) == "node_layer_norm_1"
    assert node_of_layer("ONNXTRT_Broadcast", "", nodes) is None
    assert node_of_layer("node_Mul_7", "[ONNX Layer: unknown]", nodes) is None


def test_fp16_builds_pin_the_fp32_nodes_float_layers():
    """_pin_fp32 on a stand-in for TensorRT's network API (attributes as in the Python API)."""
    from types import SimpleNamespace

    from rba_core.runtime.trt_backend import _pin_fp32

    trt = SimpleNamespace(float32="f32", float16="f16", int32="i32")

    class Layer:
        def __init__(self, name, *dtypes, metadata=""):
            self.name, self.metadata, self.precision = name, metadata, None
            self.outputs = [SimpleNamespace(dtype=d) for d in dtypes]
            self.num_outputs, self.set_types = len(dtypes), {}

        def get_output(self, j):
            return self.outputs[j]

        def set_output_type(self, j, dtype):
            self.set_types[j] = dtype

    layers = [Layer("node_Conv_1", "f16"),                      # backbone: left alone
              Layer("node_GridSample_2", "f32"),                # pixel decoder: pinned
              Layer("node_ArgMax_3", "i32"),                    # no float output: left alone
              Layer("node_TopK_4_1", "f32", "i32"),             # uniquified name: pinned, float only
              Layer("ONNXTRT_shuffle_9", "f16", metadata="[ONNX Layer: node_Tanh_5]")]
    network = SimpleNamespace(num_layers=len(layers), get_layer=layers.__getitem__)
    fp32 = {"node_GridSample_2", "node_ArgMax_3", "node_TopK_4", "node_Tanh_5"}
    assert _pin_fp32(trt, network, fp32, fp32 | {"node_Conv_1"}) == 3
    assert [layer.precision for layer in layers] == [None, "f32", None, "f32", "f32"]
    assert [layer.set_types for layer in layers] == [{}, {0: "f32"}, {}, {0: "f32"}, {0: "f32"}]


# -- the real thing (GPU + tensorrt) ---------------------------------------------------------
REASON = trt_unavailable_reason()
needs_trt = pytest.mark.skipif(REASON is not None, reason=f"TensorRT tests skipped: {REASON}")


@needs_trt
def test_tensorrt_engine_is_cached_and_matches_onnxruntime(tmp_path):
    from rba_core.model import ModelConfig, build_model
    from rba_core.runtime.onnx_export import ExportSpec, export_onnx
    from rba_core.runtime.ort_backend import OnnxRuntimeBackend
    from rba_core.runtime.trt_backend import TensorRTBackend

    path = tmp_path / "tiny.onnx"
    export_onnx(build_model(ModelConfig.preset("tiny")), path,
                ExportSpec(96, 128, batch=2, scores=["rba", "max_logit"]))
    first = TensorRTBackend(path, fp16=False, cache_dir=tmp_path / "engines")
    engine_file = first.engine_path
    mtime = engine_file.stat().st_mtime_ns
    second = TensorRTBackend(path, fp16=False, cache_dir=tmp_path / "engines")
    assert second.engine_path == engine_file and engine_file.stat().st_mtime_ns == mtime

    images = np.random.default_rng(0).integers(0, 256, (2, 3, 96, 128), dtype=np.uint8)
    ref = OnnxRuntimeBackend(path, ["CPUExecutionProvider"]).infer(images)
    out = second.infer(images)
    assert out.class_ids.dtype == np.int32 and out.class_ids.shape == (2, 96, 128)
    assert (out.class_ids == ref.class_ids).mean() >= 0.999
    for name in ("rba", "max_logit"):
        err = np.abs(out.scores[name] - ref.scores[name]).max() / np.abs(ref.scores[name]).max()
        assert err <= 1e-3, name  # fp32 engine (TF32 off); kernels differ from ORT's

    fp16 = TensorRTBackend(path, fp16=True, cache_dir=tmp_path / "engines")
    assert fp16.engine_path != engine_file  # precision is part of the key
    half = fp16.infer(images)
    assert (half.class_ids == ref.class_ids).mean() >= 0.99
    assert np.abs(half.scores["rba"] - ref.scores["rba"]).max() <= 0.05 * np.abs(
        ref.scores["rba"]).max()
