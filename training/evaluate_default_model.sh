#!/usr/bin/env bash
# The numbers of rba_core/weights/MODEL_CARD.md: CamVid val mIoU, and AP / AUROC / FPR95 of every
# score on Road Anomaly and Fishyscapes Static, for the closed-set and the RbA fine-tuned model.
#   bash training/evaluate_default_model.sh [CLOSED_SET.safetensors] [FINETUNED.safetensors]
# Anomaly sets are evaluated at CamVid's scale (network input 640x360 / 720x360; labels at full
# resolution), the paper's protocol (pooled pixels, exact).
set -euo pipefail
export OMP_WAIT_POLICY=PASSIVE
PY=${PY:-.venv/bin/python}
DATA=${RBA_DATA_DIR:-../shared/data}
CLOSED=${1:-runs/camvid_tiny_continue/model_best.safetensors}
FINAL=${2:-rba_core/weights/default.safetensors}
SCORES=rba,energy,max_logit,msp,entropy
for tag in closed_set finetuned; do
  model=$CLOSED; [ "$tag" = finetuned ] && model=$FINAL
  $PY -m rba_core.cli eval --model "$model" --backend torch --dataset camvid \
      --root "$DATA/camvid" --split val --out "out/card/$tag/camvid"
  $PY -m rba_core.cli eval --model "$model" --backend torch --dataset road_anomaly \
      --root "$DATA/anomaly/RoadAnomaly" --resize 640x360 --scores $SCORES \
      --out "out/card/$tag/road_anomaly"
  $PY -m rba_core.cli eval --model "$model" --backend torch --dataset fs_static \
      --root "$DATA/anomaly/fs_static" --resize 720x360 --scores $SCORES \
      --out "out/card/$tag/fs_static"
done
$PY bench/bench_default_model.py --model "$FINAL" --threads 2
