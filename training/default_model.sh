#!/usr/bin/env bash
# Reproduces the embedded default model (rba_core/weights/default.safetensors) on a 2-core CPU:
# closed-set training on CamVid train (selected on CamVid val), RbA fine-tuning with AnomalyMix on
# the COCO objects of coco128-seg, then packing: conv/linear weights int8 with per-channel scales,
# the rest fp16 (11.5 MB; same CamVid mIoU as fp32). Run from the repository root after
# `make setup`, with the shared data at $RBA_DATA_DIR (default ../shared/data).
set -euo pipefail
export OMP_WAIT_POLICY=PASSIVE   # no OpenMP busy-waiting when other processes share the CPU
PY=${PY:-.venv/bin/python}

time $PY -m rba_core.cli train training/camvid_tiny.yaml
time $PY -m rba_core.cli finetune training/camvid_tiny_rba.yaml
$PY - <<'PYEOF'
from rba_core.checkpoint import load_model, save_model
model = load_model("runs/camvid_tiny_rba/model_final.safetensors")
info = {"name": "rba_tiny_camvid", "dataset": "camvid",
        "data": "CamVid train (research use only)",
        "recipe": ["training/camvid_tiny.yaml", "training/camvid_tiny_rba.yaml"],
        "card": "rba_core/weights/MODEL_CARD.md"}
save_model(model, "rba_core/weights/default.safetensors", int8=True, info=info)
print("wrote rba_core/weights/default.safetensors")
PYEOF
