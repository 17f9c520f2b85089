#!/usr/bin/env bash
# Stage 3: train AffinityNet on the CRF maps of infer_seam.sh (powers LA_ALPHA, HA_ALPHA)
# -> $WORK_DIR/resnet38_aff.pth
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_data
alphas="$(crf_alphas)"
read -r la ha <<< "$alphas"
train_list="${TRAIN_LIST:-$(LIST="" split_list train_aug)}"
train_stage "$WORK_DIR/resnet38_aff" train_aff.py "${DATA_ARGS[@]}" \
  --train_list "$train_list" \
  --la_crf_dir "$WORK_DIR/crf_$la" --ha_crf_dir "$WORK_DIR/crf_$ha" "$@"
