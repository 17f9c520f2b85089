#!/usr/bin/env bash
# Stage 1: train SEAM on train_aug -> $WORK_DIR/$SEAM_SESSION.pth. Extra flags go to train_seam.py.
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_data
train_list="${TRAIN_LIST:-$(LIST="" split_list train_aug)}"
train_stage "$WORK_DIR/${SEAM_SESSION:-resnet38_SEAM}" train_seam.py "${DATA_ARGS[@]}" "${LABEL_ARGS[@]}" \
  --train_list "$train_list" "$@"
