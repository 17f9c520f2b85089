#!/usr/bin/env bash
# Stage 5: DeepLab (ResNet-38) on the random-walk labels of train_aug -> $WORK_DIR/resnet38_seg.pth
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_data
train_list="${TRAIN_LIST:-$(LIST="" split_list train_aug)}"
train_stage "$WORK_DIR/resnet38_seg" train_seg.py "${DATA_ARGS[@]}" \
  --train_list "$train_list" --label_dir "$WORK_DIR/rw" "$@"
