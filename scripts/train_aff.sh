#!/usr/bin/env bash
# Stage 3: train AffinityNet on the CRF maps of infer_seam.sh -> $WORK_DIR/resnet38_aff.pth
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_data
train_list="${TRAIN_LIST:-$(LIST="" split_list train_aug)}"
train_stage "$WORK_DIR/resnet38_aff" train_aff.py "${DATA_ARGS[@]}" \
  --train_list "$train_list" \
  --la_crf_dir "$WORK_DIR/crf_4.0" --ha_crf_dir "$WORK_DIR/crf_24.0" "${WEIGHTS_ARGS[@]}" "$@"
