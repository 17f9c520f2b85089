#!/usr/bin/env bash
# Stage 1: train SEAM on train_aug -> $WORK_DIR/$SEAM_SESSION.pth. Extra flags go to train_seam.py.
set -euo pipefail
source "$(dirname "$0")/common.sh"
need VOC12_ROOT
train_stage "$WORK_DIR/${SEAM_SESSION:-resnet38_SEAM}" train_seam.py --voc12_root "$VOC12_ROOT" \
  --train_list "${TRAIN_LIST:-$SEAM_ROOT/voc12/train_aug.txt}" --cls_labels "$CLS_LABELS" "${WEIGHTS_ARGS[@]}" "$@"
