"""The export cache of our checkpoints (``CacheEntry`` protocol, shared with TensorRT engines):
two processes exporting the same model at once, and every broken entry rebuilt, never loaded."""
from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

from proc_util import race
from rba_core.checkpoint import save_model
from rba_core.files import WriteError
from rba_core.model import ModelConfig, build_model
from rba_core.runtime import BackendError, load_backend

SIZE = (64, 64)

# One process of the race: counts real exports in EXPORTS (one line each), waits for GO, then
# loads the onnxruntime backend (export through the cache) and prints what it got.
RACER = textwrap.dedent("""
    import hashlib, json, logging, os, sys, time
    from pathlib import Path
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import numpy as np
    import rba_core.runtime.onnx_export as ox
    from rba_core.runtime import load_backend
    ckpt, cache, exports, ready, go = sys.argv[1:6]
    original = ox.export_onnx
    def counted(*args, **kwargs):
        with open(exports, "a") as f:
            f.write(f"{os.getpid()}\\n")
        return original(*args, **kwargs)
    ox.export_onnx = counted
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.005)
    backend = load_backend(ckpt, "onnxruntime", "rba", "exact", "cpu", input_size=(64, 64),
                           cache_dir=cache)
    images = np.random.default_rng(0).integers(0, 256, (1, 3, 64, 64), dtype=np.uint8)
    out = backend.infer(images)
    print("RESULT " + json.dumps({
        "class_ids": hashlib.sha256(out.class_ids.tobytes()).hexdigest(),
        "rba": hashlib.sha256(out.scores["rba"].tobytes()).hexdigest()}))
""")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def raced(tmp_path_factory):
    """Two processes load the same uncached checkpoint at once through the export cache."""
    tmp = tmp_path_factory.mktemp("race")
    cfg = ModelConfig.preset("tiny", decoder={"num_queries": 8})
    ckpt = save_model(build_model(cfg), tmp / "tiny.safetensors")
    cache, exports = tmp / "cache", tmp / "exports.txt"
    runs = race(RACER, [str(ckpt), str(cache), str(exports)], tmp)
    return {"ckpt": ckpt, "cache": cache, "exports": exports, "runs": runs}


def entry_files(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "onnx").iterdir())


def test_two_processes_exporting_at_once_export_once(raced):
    runs = raced["runs"]
    for run in runs:
        assert run.returncode == 0, run.stdout
        assert "Traceback" not in run.stdout
    # exactly one export happened; the other process waited on the lock and used it
    assert len(raced["exports"].read_text().split()) == 1
    assert sum("waiting for another process" in r.stdout for r in runs) == 1
    assert sum("just built by another process" in r.stdout for r in runs) == 1
    results = [json.loads(r.stdout.split("RESULT ", 1)[1]) for r in runs]
    assert results[0] == results[1]
    # the entry: the graph and its key file, no temporary file or lock left behind
    files = entry_files(raced["cache"])
    assert len(files) == 2 and files[1] == files[0] + ".key", files
    onnx_path = raced["cache"] / "onnx" / files[0]
    onnx.checker.check_model(str(onnx_path))
    record = json.loads((onnx_path.parent / files[1]).read_text())
    assert record["files"] == {files[0]: {"size": onnx_path.stat().st_size,
                                          "sha256": sha256(onnx_path)}}
    assert record["key"]["source_sha256"] == sha256(raced["ckpt"])
    assert record["key"]["source_size"] == raced["ckpt"].stat().st_size


@pytest.fixture
def cached(raced, tmp_path, monkeypatch):
    """A copy of the raced cache, and a stand-in exporter (the raced graph's bytes) that counts
    its calls: broken entries are rebuilt without re-tracing the model each time."""
    cache = tmp_path / "cache"
    shutil.copytree(raced["cache"], cache)
    name = entry_files(cache)[0]
    good = (raced["cache"] / "onnx" / name).read_bytes()
    calls = []

    def export(model, path, spec, **kwargs):
        calls.append(path)
        Path(path).write_bytes(good)

    monkeypatch.setattr("rba_core.runtime.loader.export_onnx", export)
    monkeypatch.setattr("rba_core.runtime.loader.load_torch_model", lambda spec: None)
    path = cache / "onnx" / name
    return {"ckpt": raced["ckpt"], "cache": cache, "path": path, "key": path.with_name(
        name + ".key"), "good": hashlib.sha256(good).hexdigest(), "calls": calls}


def load(c):
    return load_backend(c["ckpt"], "onnxruntime", "rba", "exact", "cpu", input_size=SIZE,
                        cache_dir=c["cache"])


def check_rebuilt(c, calls: int = 1) -> None:
    backend = load(c)  # loads and runs: the rebuilt graph is whole
    images = np.random.default_rng(1).integers(0, 256, (1, 3, *SIZE), dtype=np.uint8)
    assert backend.infer(images).class_ids.shape == (1, *SIZE)
    assert len(c["calls"]) == calls
    assert sha256(c["path"]) == c["good"]
    assert json.loads(c["key"].read_text())["files"][c["path"].name]["sha256"] == c["good"]
    assert entry_files(c["cache"]) == [c["path"].name, c["key"].name]


def test_an_intact_entry_is_used_without_exporting(cached):
    check_rebuilt(cached, calls=0)


def _truncate(c):
    data = c["path"].read_bytes()
    c["path"].write_bytes(data[:len(data) // 2])


def _garbage(c):  # same size, so only the sha256 can tell
    size = c["path"].stat().st_size
    c["path"].write_bytes(np.random.default_rng(0).bytes(size))


def _flip_one_byte(c):
    data = bytearray(c["path"].read_bytes())
    data[len(data) // 3] ^= 0xFF
    c["path"].write_bytes(bytes(data))


def _stale(field, value):
    def edit(c):
        record = json.loads(c["key"].read_text())
        record["key"][field] = value
        c["key"].write_text(json.dumps(record))
    return edit


def _no_artefact(c):
    c["path"].unlink()


def _no_key(c):
    c["key"].unlink()


def _bad_key(c):
    c["key"].write_text("{not json")


def _killed_build(c):  # a build killed half-way: its folder and an unheld lock file stay
    _truncate(c)
    tmp = c["path"].with_name(f".{c['path'].name}.x1y2.tmp")
    tmp.mkdir()
    (tmp / c["path"].name).write_bytes(b"half")
    c["path"].with_name(c["path"].name + ".lock").touch()


@pytest.mark.parametrize("damage, why", [
    (_truncate, "truncated"), (_garbage, "corrupted"), (_flip_one_byte, "corrupted"),
    (_stale("source_sha256", "0" * 64), "stale (source_sha256 changed)"),
    (_stale("source_size", 1), "stale (source_size changed)"),
    (_stale("spec", {"height": 32}), "stale (spec changed)"),
    (_no_artefact, "is missing"), (_no_key, "key file is missing"),
    (_bad_key, "key file is unreadable"), (_killed_build, "truncated")],
    ids=["truncated", "garbage", "one-byte", "stale-model-hash", "stale-model-size",
         "stale-options", "key-without-artefact", "artefact-without-key", "bad-key",
         "killed-build"])
def test_broken_entries_are_rebuilt_never_loaded(cached, caplog, damage, why):
    damage(cached)
    with caplog.at_level("WARNING"):
        check_rebuilt(cached)
    assert why in caplog.text and "rebuilding" in caplog.text


def test_a_failed_or_invalid_build_publishes_nothing(cached, monkeypatch):
    _truncate(cached)

    def garbage_export(model, path, spec, **kwargs):
        Path(path).write_bytes(b"\x08\x07 this is not a graph")

    monkeypatch.setattr("rba_core.runtime.loader.export_onnx", garbage_export)
    with pytest.raises(BackendError, match="fails the ONNX checker"):
        load(cached)
    entry = [cached["path"].name, cached["key"].name]  # as it was: no temporary, no lock
    assert entry_files(cached["cache"]) == entry

    def full_disk(model, path, spec, **kwargs):
        Path(path).write_bytes(b"part")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("rba_core.runtime.loader.export_onnx", full_disk)
    with pytest.raises(WriteError, match="no space left on device") as e:
        load(cached)
    assert str(cached["path"]) in str(e.value) and "\n" not in str(e.value)
    assert entry_files(cached["cache"]) == entry
