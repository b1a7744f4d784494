"""Checkpoints are read without running code: a crafted pickle is refused and has no effect."""
from __future__ import annotations

import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from rba_core.checkpoint import CheckpointError, UnsafeCheckpointError, load_pickle
from rba_core.cli import main


class Payload:
    """Unpickling this runs ``exec``, which creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def write(kind: str, obj, path):
    if kind == "torch_zip":
        torch.save(obj, path)
    elif kind == "torch_legacy":  # torch.save before 1.6
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:  # plain pickle, like detectron2 model-zoo .pkl files
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=int(kind[-1]))
    return path


KINDS = ["torch_zip", "torch_legacy", "pickle_2", "pickle_4"]


def test_the_payload_is_live(tmp_path):
    """Control: unpickled with full trust, the payload does create the marker."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path, kind):
    marker = tmp_path / "marker"
    path = write(kind, {"model": {"w": np.zeros(2, np.float32)}, "trainer": Payload(marker)},
                 tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError) as err:
        load_pickle(path)
    assert not marker.exists()
    msg = str(err.value)
    assert "exec" in msg and "refusing to unpickle" in msg
    assert "If you trust the file" in msg and "'weights.pth'" in msg
    assert ("weights_only=False" if kind.startswith("torch") else "encoding='latin1'") in msg


def test_cli_refuses_without_traceback(tmp_path, capsys):
    marker = tmp_path / "marker"
    path = write("torch_zip", {"model": {"w": torch.zeros(2)}, "x": Payload(marker)},
                 tmp_path / "evil.pth")
    assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rba convert: error: refusing to unpickle") and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_plain_checkpoints_load(tmp_path, kind):
    model = OrderedDict(w=np.arange(6, dtype=np.float32).reshape(2, 3), i=np.array([1, 2]))
    if kind.startswith("torch"):
        model["t"] = torch.ones(3, dtype=torch.float16)
    obj = {"model": model, "iteration": 1999, "__author__": "Detectron2", "lr": [1e-4, None],
           "matching_heuristics": True}
    loaded = load_pickle(write(kind, obj, tmp_path / "ok.pth"))
    assert loaded["iteration"] == 1999 and loaded["__author__"] == "Detectron2"
    assert loaded["lr"] == [1e-4, None] and loaded["matching_heuristics"] is True
    w = loaded["model"]["w"]
    assert np.array_equal(w, model["w"]) and w.dtype == np.float32
    if kind.startswith("torch"):
        assert torch.equal(loaded["model"]["t"], model["t"])


def test_unreadable_files_give_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_pickle(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a pickle")
    with pytest.raises(CheckpointError, match="not a readable pickle"):
        load_pickle(junk)
