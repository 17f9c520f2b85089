#!/usr/bin/env bash
# Stage 4: random walk -> pseudo-label PNGs in $WORK_DIR/rw for $LIST (default train_aug).
# AFF_WEIGHTS (default $WORK_DIR/resnet38_aff.pth) may name the published resnet38_aff_SEAM.pth.
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_data
list="$(split_list train_aug)"
run_stage infer_aff.py "${DATA_ARGS[@]}" --weights "${AFF_WEIGHTS:-$WORK_DIR/resnet38_aff.pth}" \
  --infer_list "$list" --cam_dir "$WORK_DIR/${CAM_DIR:-cam}" --out_rw "$WORK_DIR/rw" "$@"
