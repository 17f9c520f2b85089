#!/usr/bin/env bash
# Stage 3: train AffinityNet on the CRF maps of infer_seam.sh -> $WORK_DIR/resnet38_aff.pth
set -euo pipefail
source "$(dirname "$0")/common.sh"
need VOC12_ROOT
train_stage "$WORK_DIR/resnet38_aff" train_aff.py --voc12_root "$VOC12_ROOT" \
  --train_list "${TRAIN_LIST:-$SEAM_ROOT/voc12/train_aug.txt}" \
  --la_crf_dir "$WORK_DIR/crf_4.0" --ha_crf_dir "$WORK_DIR/crf_24.0" "${WEIGHTS_ARGS[@]}" "$@"
