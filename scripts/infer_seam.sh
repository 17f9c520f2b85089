#!/usr/bin/env bash
# Stage 2: multi-scale CAMs + CRF maps for $LIST (default train_aug, which holds train) -> $WORK_DIR/cam
# and $WORK_DIR/crf_<power> at LA_ALPHA and HA_ALPHA (default crf_4.0, crf_24.0). SEAM_WEIGHTS (default
# $WORK_DIR/resnet38_SEAM.pth) may name the published resnet38_SEAM.pth instead; SKIP_CRF=1: CAMs only.
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_data
alphas="$(crf_alphas)"
read -r la ha <<< "$alphas"
list="$(split_list train_aug)"
crf=(--out_crf "$WORK_DIR/crf" --crf_alphas "$la" "$ha")
if [ -n "${SKIP_CRF:-}" ]; then crf=(); fi
run_stage infer_seam.py "${DATA_ARGS[@]}" "${LABEL_ARGS[@]}" \
  --weights "${SEAM_WEIGHTS:-$WORK_DIR/${SEAM_SESSION:-resnet38_SEAM}.pth}" \
  --infer_list "$list" --out_cam "$WORK_DIR/${CAM_DIR:-cam}" "${crf[@]}" "$@"
