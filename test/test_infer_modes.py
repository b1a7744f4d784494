"""Backend.infer_modes: one network pass, every inference mode, equal to single-mode backends."""
import numpy as np
import pytest
import torch

from rba_core.checkpoint import save_model
from rba_core.model import ModelConfig, build_model
from rba_core.runtime import BackendError, load_backend


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("tiny", decoder={"num_queries": 8}))
    return save_model(model, tmp_path_factory.mktemp("m") / "tiny.safetensors")


IMAGES = np.random.default_rng(0).integers(0, 256, (1, 3, 64, 96), dtype=np.uint8)


def test_torch_modes_from_one_pass_equal_single_mode_backends(model_file):
    both = load_backend(str(model_file), "torch", "rba,msp", device="cpu")
    results = both.infer_modes(IMAGES, ["exact", "fast"])
    for mode in ("exact", "fast"):
        ref = load_backend(str(model_file), "torch", "rba,msp", mode, "cpu").infer(IMAGES)
        got = results[mode]
        assert np.array_equal(got.class_ids, ref.class_ids)
        assert np.array_equal(got.confidence, ref.confidence)
        for name in ("rba", "msp"):
            assert np.array_equal(got.scores[name], ref.scores[name])
        assert got.timing["network_s"] > 0 and got.timing["postprocess_s"] > 0
    assert results["exact"].timing["network_s"] == results["fast"].timing["network_s"]
    assert not np.array_equal(results["exact"].scores["rba"], results["fast"].scores["rba"])


def test_engine_has_its_one_mode(model_file, tmp_path):
    pytest.importorskip("onnxruntime")
    engine = load_backend(str(model_file), "onnxruntime", "rba", "fast", "cpu",
                          input_size=(64, 96), cache_dir=tmp_path)
    (mode, got), = engine.infer_modes(IMAGES, ["fast"]).items()
    ref = engine.infer(IMAGES)
    assert mode == "fast" and np.array_equal(got.scores["rba"], ref.scores["rba"])
    assert got.timing["inference_s"] > 0
    with pytest.raises(BackendError, match="exported with --inference fast; other modes need"):
        engine.infer_modes(IMAGES, ["exact", "fast"])
