"""``device: cuda:N`` reaches ONNX Runtime's GPU providers as their ``device_id``."""
from __future__ import annotations

import onnxruntime
import pytest

from rba_core.runtime.base import BackendError
from rba_core.runtime.ort_backend import providers_for

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture
def gpu_build(monkeypatch):
    """Pretend this is onnxruntime-gpu with TensorRT: the provider list is all we inspect."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(ALL))


def options(providers) -> dict:
    return {p[0] if isinstance(p, tuple) else p: (p[1] if isinstance(p, tuple) else {})
            for p in providers}


@pytest.mark.parametrize("device, gpu", [("cuda:1", 1), ("cuda:3", 3), ("cuda", 0), (None, 0)])
def test_gpu_index_reaches_tensorrt_and_cuda_providers(gpu_build, device, gpu):
    built = providers_for(device)
    assert [p[0] if isinstance(p, tuple) else p for p in built] == ALL  # order: TRT, CUDA, CPU
    opts = options(built)
    assert opts["TensorrtExecutionProvider"]["device_id"] == gpu
    assert opts["CUDAExecutionProvider"]["device_id"] == gpu


def test_cpu_device_uses_the_cpu_provider_only(gpu_build):
    assert providers_for("cpu") == ["CPUExecutionProvider"]


@pytest.mark.parametrize("device", ["cuda:x", "gpu:0", "cuda:-1"])
def test_bad_device_is_one_clear_error(device):
    with pytest.raises(BackendError, match="cpu, cuda or cuda:N"):
        providers_for(device)


def test_cpu_only_build_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert providers_for("cuda:2") == ["CPUExecutionProvider"]
