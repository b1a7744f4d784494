#!/usr/bin/env bash
# Re-create rba_core/weights/default.calibration.yaml: the embedded default model's score ->
# probability calibration (rba calibrate on CamVid val, all pixels, target 1 % false alarms: the run
# that gives the node's default threshold in MODEL_CARD.md). Rerun after retraining the model.
#
#   bash scripts/calibrate_default_model.sh            (RBA_DATA_DIR, default ../shared/data)
#
# Scores: the node's default `scores` (rba, energy, max_logit), so switching `score` live keeps
# calibrated 0..1 outputs. Prints the threshold; update `threshold` (rba_core/pipeline/config.py,
# README, MODEL_CARD.md) if it moved. A few minutes on 2 CPU cores.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$REPO/.venv/bin/python}"
DATA="${RBA_DATA_DIR:-$REPO/../shared/data}"
OUT="$REPO/rba_core/weights/default.calibration.yaml"
[[ -d "$DATA/camvid/val" ]] || { echo "error: $DATA/camvid/val not found (set RBA_DATA_DIR)" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cd "$REPO"
"$PY" -m rba_core.cli bag-from-images "$DATA/camvid/val" -o "$TMP/val.mcap"
"$PY" -m rba_core.cli calibrate "$TMP/val.mcap" --target-fpr 0.01 --scores rba,energy,max_logit \
  --backend torch -o "$TMP/threshold.yaml" --calibration "$OUT"
# provenance: the bag was temporary; say what it was made of, and of which weights
"$PY" - "$OUT" <<'PYEOF'
import hashlib, sys
from rba_core.pipeline.calibration import load_calibrations, save_calibrations
from rba_core.runtime.loader import DEFAULT_MODEL
path, header = sys.argv[1], {}
cals = load_calibrations(path, header)
header["source"].update(
    input="CamVid val (rba bag-from-images $RBA_DATA_DIR/camvid/val)",
    command="bash scripts/calibrate_default_model.sh",
    model_sha256=hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest())
save_calibrations(path, cals, header)
PYEOF
cat "$TMP/threshold.yaml"
echo "wrote $OUT"
