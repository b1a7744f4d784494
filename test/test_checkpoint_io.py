"""Our safetensors format: round trip, strict key/shape checks, one-line errors."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from rba_core.checkpoint import CheckpointError, load_model, read_config, save_model
from rba_core.model import ModelConfig, build_model


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig.preset("tiny", decoder={"num_queries": 8})).eval()


def test_save_load_round_trip_gives_identical_outputs(model, tmp_path):
    path = save_model(model, tmp_path / "m.safetensors", info={"note": "hello"})
    loaded = load_model(path)
    assert loaded.cfg == model.cfg
    assert loaded.info == {"note": "hello"}
    x = torch.randint(0, 256, (1, 3, 70, 90), dtype=torch.uint8)
    assert torch.equal(loaded.semantic(x), model.semantic(x))
    cfg, info = read_config(path)
    assert cfg == model.cfg


def test_half_precision_file_is_smaller_and_close(model, tmp_path):
    full = save_model(model, tmp_path / "full.safetensors")
    half = save_model(model, tmp_path / "half.safetensors", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    x = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    assert torch.allclose(load_model(half).semantic(x), model.semantic(x), atol=5e-3)


def test_int8_weights_are_a_quarter_and_dequantize_to_fp32(model, tmp_path):
    full = save_model(model, tmp_path / "full.safetensors")
    small = save_model(model, tmp_path / "int8.safetensors", int8=True)
    assert small.stat().st_size < 0.4 * full.stat().st_size
    stored = load_file(str(small))
    big = [k for k, v in model.state_dict().items() if v.ndim >= 2 and v.numel() >= 4096]
    assert big and all(stored[k].dtype == torch.int8 for k in big)
    loaded = load_model(small)
    for k in big:  # rounding error at most half a quantisation step per output channel
        w, q = model.state_dict()[k], loaded.state_dict()[k]
        step = w.abs().amax(dim=tuple(range(1, w.ndim))) / 127
        err = (w - q).abs().amax(dim=tuple(range(1, w.ndim)))
        assert q.dtype == torch.float32 and (err <= 0.5 * step * 1.01 + 1e-6).all(), k
    x = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    assert torch.allclose(loaded.semantic(x), model.semantic(x), atol=0.05)
    broken = _rewrite(small, tmp_path / "broken.safetensors",
                      lambda t, m: t.__setitem__(big[0] + "::scale", t[big[0] + "::scale"][:1]))
    with pytest.raises(CheckpointError, match="scale"):
        load_model(broken)


def _rewrite(path, out, edit):
    tensors = load_file(str(path))
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    edit(tensors, meta)
    save_file(tensors, str(out), metadata=meta)
    return out


def test_missing_unexpected_and_misshaped_keys_are_all_reported(model, tmp_path):
    path = save_model(model, tmp_path / "m.safetensors")

    def edit(t, meta):
        del t["decoder.class_embed.bias"]
        t["decoder.extra.weight"] = torch.zeros(2)
        t["decoder.query_feat.weight"] = torch.zeros(3, 3)

    bad = _rewrite(path, tmp_path / "bad.safetensors", edit)
    with pytest.raises(CheckpointError) as err:
        load_model(bad)
    msg = str(err.value)
    assert "1 missing key(s):\n  decoder.class_embed.bias" in msg
    assert "1 unexpected key(s):\n  decoder.extra.weight" in msg
    assert "decoder.query_feat.weight: checkpoint (3, 3) vs model (8, 64)" in msg


def test_invalid_embedded_config_names_the_field(model, tmp_path):
    path = save_model(model, tmp_path / "m.safetensors")

    def edit(t, meta):
        cfg = json.loads(meta["config"])
        cfg["decoder"]["heads"] = 5
        meta["config"] = json.dumps(cfg)

    bad = _rewrite(path, tmp_path / "bad.safetensors", edit)
    with pytest.raises(CheckpointError, match="decoder.hidden_dim"):
        load_model(bad)


def test_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="rba convert"):
        load_model(foreign)


def test_truncated_file_is_reported(model, tmp_path):
    path = save_model(model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_model(cut)
