"""CLI-side configs check their fields on creation, like ModelConfig: errors name the field."""
import pytest

from rba_core.cli import main
from rba_core.dataconf import ConfigError
from rba_core.evaluation.runner import EvalConfig
from rba_core.replay.from_images import ImagesToBag
from rba_core.replay.groundtruth import GroundTruth
from rba_core.replay.runner import ReplayConfig


@pytest.mark.parametrize("make, message", [
    (lambda: ImagesToBag("f", "o.mcap", rate=0), "^rate: must be > 0"),
    (lambda: ImagesToBag("f", "o.mcap", format="gif"),
     r"^format: must be one of \['jpeg', 'png'\]"),
    (lambda: ImagesToBag("f", "o.mcap", quality="high"), "^quality: expected an integer"),
    (lambda: ImagesToBag("f", "o.mcap", camera_info=[1.0, 2.0]), "^camera_info: takes fx fy cx cy"),
    (lambda: ReplayConfig("in.mcap", "out", batch=0), "^batch: must be at least 1"),
    (lambda: ReplayConfig("in.mcap", "out", storage="zip"), "^storage: must be one of"),
    (lambda: ReplayConfig("in.mcap", "out", topics="/cam"), "^topics: expected a list"),
    (lambda: EvalConfig(None, "camvid", "r", "o", modes=["exact", "exact"]),
     "^modes: --inference takes distinct modes"),
    (lambda: EvalConfig(None, "camvid", "r", "o", scores=["rba", "foo"]),
     "^scores: unknown score 'foo'"),
    (lambda: EvalConfig(None, "camvid", "r", "o", backend="cuda"), "^backend: must be one of"),
    (lambda: EvalConfig(None, "camvid", "r", "o", limit=0), "^limit: must be at least 1"),
    (lambda: GroundTruth(folder="m", key="time"), "^key: must be one of"),
    (lambda: GroundTruth(folder="m", ignore_index=300), "^ignore_index: must be in 0..255"),
])
def test_bad_values_name_the_field(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_good_values_are_converted():
    cfg = ImagesToBag("f", "o.mcap", rate=30, camera_info=[400, 400, 240, 180])
    assert isinstance(cfg.rate, float) and cfg.camera_info == [400.0, 400.0, 240.0, 180.0]


@pytest.mark.parametrize("argv, line", [
    (["bag-from-images", "frames", "-o", "{tmp}/b.mcap", "--rate", "0"],
     "rba bag-from-images: error: rate: must be > 0, got 0.0"),
    (["replay", "in.mcap", "--out", "{tmp}/r", "--batch", "0"],
     "rba replay: error: batch: must be at least 1, got 0"),
    (["eval", "--dataset", "camvid", "--root", "r", "--out", "{tmp}/e", "--limit", "0"],
     "rba eval: error: limit: must be at least 1, got 0"),
])
def test_cli_reports_the_bad_field_in_one_line(argv, line, tmp_path, capsys):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == line
    assert not any(tmp_path.iterdir())  # checked before anything is written
