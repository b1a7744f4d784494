#!/usr/bin/env bash
# Reproduces the embedded default model (rba_core/weights/default.safetensors) on a 2-core CPU:
# closed-set training on CamVid train with the released recipe (selected on CamVid val), continued
# from the first default model (git 7e16232) for 1000 iterations; RbA fine-tuning with AnomalyMix
# on the COCO objects of coco128-seg; then packing: conv/linear weights int8 with per-channel
# scales, the rest fp16 (11.5 MB). Run from the repository root of a git clone (stage 0 reads the
# first model from the history) after `make setup`, with the shared data at $RBA_DATA_DIR (default
# ../shared/data). `FROM_SCRATCH=1` trains the closed-set stage from scratch instead
# (training/camvid_tiny.yaml, 4000 iterations, about 3 h here) and fine-tunes that.
set -euo pipefail
export OMP_WAIT_POLICY=PASSIVE   # no OpenMP busy-waiting when other processes share the CPU
PY=${PY:-.venv/bin/python}

if [ "${FROM_SCRATCH:-0}" = 1 ]; then
  time $PY -m rba_core.cli train training/camvid_tiny.yaml
  PARENT=runs/camvid_tiny/model_best.safetensors RECIPE=training/camvid_tiny.yaml
else
  mkdir -p runs   # stage 0: the first default model (2500 it. of the pre-issue-14 recipe + RbA)
  git show 7e16232:rba_core/weights/default.safetensors > runs/default_v1.safetensors || {
    echo "error: stage 0 needs the git history (commit 7e16232; a shallow clone lacks it):" \
         "git fetch --unshallow, or FROM_SCRATCH=1" >&2; exit 2; }
  time $PY -m rba_core.cli train training/camvid_tiny_continue.yaml
  PARENT=runs/camvid_tiny_continue/model_best.safetensors RECIPE=training/camvid_tiny_continue.yaml
fi
export RECIPE
time $PY -m rba_core.cli finetune training/camvid_tiny_rba.yaml --set "model.init=$PARENT"
$PY - <<'PYEOF'
import os
from rba_core.checkpoint import load_model, save_model
model = load_model("runs/camvid_tiny_rba/model_final.safetensors")
info = {"name": "rba_tiny_camvid", "dataset": "camvid",
        "data": "CamVid train (research use only)",
        "recipe": [os.environ["RECIPE"], "training/camvid_tiny_rba.yaml"],
        "card": "rba_core/weights/MODEL_CARD.md"}
save_model(model, "rba_core/weights/default.safetensors", int8=True, info=info)
print("wrote rba_core/weights/default.safetensors")
PYEOF
