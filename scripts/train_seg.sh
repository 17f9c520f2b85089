#!/usr/bin/env bash
# Stage 5: DeepLab (ResNet-38) on the random-walk labels of train_aug -> $WORK_DIR/resnet38_seg.pth
set -euo pipefail
source "$(dirname "$0")/common.sh"
need VOC12_ROOT
train_stage "$WORK_DIR/resnet38_seg" train_seg.py --voc12_root "$VOC12_ROOT" \
  --train_list "${TRAIN_LIST:-$SEAM_ROOT/voc12/train_aug.txt}" --label_dir "$WORK_DIR/rw" "${WEIGHTS_ARGS[@]}" "$@"
