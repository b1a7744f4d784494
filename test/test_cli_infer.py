"""`rba infer` end to end on a real image, and its one-line errors."""
import json
import subprocess
import sys

import cv2
import numpy as np

from conftest import require
from rba_core.checkpoint import save_model
from rba_core.cli import main
from rba_core.model import ModelConfig, build_model


def test_infer_writes_maps_for_a_real_image(data_dir, tmp_path):
    image = require(data_dir / "camvid" / "val" / "0016E5_07959.png")
    model = save_model(build_model(ModelConfig.preset("tiny", decoder={"num_queries": 8})),
                       tmp_path / "m.safetensors")
    out = tmp_path / "out"
    rc = main(["infer", str(image), "--model", str(model), "--backend", "torch",
               "--scores", "rba,energy", "--out", str(out)])
    assert rc == 0
    h, w = cv2.imread(str(image)).shape[:2]
    ids = cv2.imread(str(out / "0016E5_07959_class.png"), cv2.IMREAD_UNCHANGED)
    assert ids.shape == (h, w) and ids.max() < 11
    for score in ("rba", "energy"):
        amap = np.load(out / f"0016E5_07959_{score}.npy")
        assert amap.shape == (h, w) and amap.dtype == np.float32 and np.isfinite(amap).all()
        assert cv2.imread(str(out / f"0016E5_07959_{score}.png")).shape == (h, w, 3)
    rba = np.load(out / "0016E5_07959_rba.npy")
    assert (rba <= 0).all() and (rba > -11).all()  # -sum tanh over 11 classes of L >= 0
    summary = json.loads((out / "summary.json").read_text())
    assert abs(sum(summary[0]["classes"].values()) - 1.0) < 1e-3


def test_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rba_core.cli", "infer", str(tmp_path / "x.png"),
                           "--model", "preset:tiny", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"rba infer: error: no such file or folder: {tmp_path / 'x.png'}"
    assert "Traceback" not in proc.stderr
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    proc = subprocess.run([sys.executable, "-m", "rba_core.cli", "infer", str(bad), "--model",
                           str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "model file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_infer_auto_exports_the_image_size_and_matches_torch(data_dir, tmp_path, capsys):
    """No --backend, no size: ONNX Runtime on a graph exported at the image's own size."""
    src = cv2.imread(str(require(data_dir / "camvid" / "val" / "0016E5_07959.png")))
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), cv2.resize(src, (128, 96)))
    model = save_model(build_model(ModelConfig.preset("tiny", decoder={"num_queries": 8})),
                       tmp_path / "m.safetensors")
    maps = {}
    for backend in ("auto", "torch"):
        out = tmp_path / backend
        assert main(["infer", str(image), "--model", str(model), "--backend", backend,
                     "--out", str(out)]) == 0
        maps[backend] = np.load(out / "frame_rba.npy")
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert line.endswith("(onnxruntime fp32, input 96x128)" if backend == "auto" else
                             "(torch fp32, input any)"), line
    ref = maps["torch"]
    assert maps["auto"].shape == (96, 128)
    assert np.abs(maps["auto"] - ref).max() <= 1e-4 * np.abs(ref).max()
