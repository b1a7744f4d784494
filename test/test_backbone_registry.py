"""The backbone registry: our names, timm's names (timm.is_model), one-line errors, one build."""
import pytest
import timm
import torch

from rba_core.dataconf import ConfigError
from rba_core.model import backbone as bb
from rba_core.model.backbone import Backbone, is_backbone, register_backbone
from rba_core.model.config import BackboneConfig


def test_unknown_backbone_is_one_line_naming_ours_and_close_timm_names():
    assert not timm.is_model("resnet_18")
    with pytest.raises(ConfigError) as e:
        Backbone(BackboneConfig(name="resnet_18"))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("backbone.name: unknown backbone 'resnet_18'")
    assert "d2_swin" in msg and "resnet18" in msg  # ours listed, timm's nearest name offered


def test_timm_names_work_and_the_model_is_built_once(monkeypatch):
    assert timm.is_model("resnet18.a1_in1k") and is_backbone("resnet18.a1_in1k")  # tags too
    assert is_backbone("d2_swin") and not is_backbone("resnet_18")
    calls = []
    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: calls.append(a) or create(*a, **k))
    net = Backbone(BackboneConfig(name="resnet18", channels=[64, 128, 256, 512])).eval()
    assert len(calls) == 1
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, 96, 128))
    # res2..res5 at strides 4, 8, 16, 32 (not resnet's stride-2 stem feature)
    assert [tuple(f.shape) for f in feats.values()] == [
        (1, 64, 24, 32), (1, 128, 12, 16), (1, 256, 6, 8), (1, 512, 3, 4)]


class Pyramid(torch.nn.Module):
    """A toy body: one 1x1 conv on the input subsampled at strides 4..32."""

    def __init__(self, cfg):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, cfg.channels[0], 1)

    def forward(self, x):
        return [self.conv(x[..., ::s, ::s]) for s in (4, 8, 16, 32)]


def test_register_backbone(monkeypatch):
    monkeypatch.setattr(bb, "BACKBONES", dict(bb.BACKBONES))
    register_backbone("pyramid", Pyramid)
    with pytest.raises(ValueError, match="registered already"):
        register_backbone("pyramid", Pyramid)
    assert is_backbone("pyramid")
    out = Backbone(BackboneConfig(name="pyramid", channels=[4] * 4))(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape) for f in out.values()] == [(1, 4, 16, 16), (1, 4, 8, 8), (1, 4, 4, 4),
                                                      (1, 4, 2, 2)]
