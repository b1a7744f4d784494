"""ModelConfig: presets, YAML round trip, and errors that name the bad field."""
import pytest
import yaml

from rba_core.dataconf import ConfigError
from rba_core.model import PRESETS, ModelConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_round_trips_through_yaml(name):
    cfg = ModelConfig.preset(name)
    again = ModelConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()


def test_released_preset_architecture():
    cfg = ModelConfig.preset("rba_swin_b_1dl")
    assert cfg.backbone.kwargs["embed_dim"] == 128
    assert cfg.backbone.kwargs["depths"] == [2, 2, 18, 2]
    assert cfg.pixel_decoder.encoder_levels == 1 and cfg.pixel_decoder.encoder_layers == 6
    assert cfg.decoder.layers == 1 and cfg.decoder.num_queries == 100
    assert cfg.num_classes == 19
    assert ModelConfig.preset("rba_swin_l_1dl").backbone.channels == [192, 384, 768, 1536]


def test_preset_overrides_merge_nested():
    cfg = ModelConfig.preset("tiny", decoder={"num_queries": 7})
    assert cfg.decoder.num_queries == 7
    assert cfg.decoder.hidden_dim == ModelConfig.preset("tiny").decoder.hidden_dim


@pytest.mark.parametrize("patch, path, words", [
    ({"decoder": {"num_querys": 5}}, "decoder.num_querys", "unknown field"),
    ({"decoder": {"num_queries": "many"}}, "decoder.num_queries", "integer"),
    ({"pixel_decoder": {"encoder_levels": 2}}, "pixel_decoder.encoder_levels", "one of"),
    ({"pixel_decoder": {"conv_dim": 66}}, "pixel_decoder.conv_dim", "encoder_heads"),
    ({"backbone": {"channels": [1, 2, 3]}}, "backbone.channels", "4 entries"),
    ({"colors": [[0, 0, 0]]}, "colors", "entries for 11 classes"),
    ({"colors": [[0, 0, 300]] * 11}, "colors.0", "RGB"),
    ({"size_divisibility": 20}, "size_divisibility", "multiple of 32"),
    ({"pixel_std": [1, 0, 1]}, "pixel_std", "positive"),
    ({"backbone": "resnet18"}, "backbone", "mapping"),
])
def test_malformed_config_names_the_field(patch, path, words):
    data = ModelConfig.preset("tiny").to_dict()
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(data[key], dict):
            data[key].update(value)
        else:
            data[key] = value
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict(data)
    assert err.value.path == path
    assert str(err.value).startswith(path + ":")
    assert words in str(err.value)


def test_unknown_preset_lists_known():
    with pytest.raises(ConfigError, match="rba_swin_b_1dl"):
        ModelConfig.preset("nope")
