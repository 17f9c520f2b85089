#!/usr/bin/env bash
# Stage 2: multi-scale CAMs + CRF maps (alpha 4 and 24) for $LIST (default train_aug, which holds
# train) -> $WORK_DIR/cam, $WORK_DIR/crf_4.0, $WORK_DIR/crf_24.0. SEAM_WEIGHTS (default
# $WORK_DIR/resnet38_SEAM.pth) may name the published resnet38_SEAM.pth instead; SKIP_CRF=1: CAMs only.
set -euo pipefail
source "$(dirname "$0")/common.sh"
need VOC12_ROOT
crf=(--out_crf "$WORK_DIR/crf")
if [ -n "${SKIP_CRF:-}" ]; then crf=(); fi
run_stage infer_seam.py --voc12_root "$VOC12_ROOT" --cls_labels "$CLS_LABELS" \
  --weights "${SEAM_WEIGHTS:-$WORK_DIR/${SEAM_SESSION:-resnet38_SEAM}.pth}" \
  --infer_list "${LIST:-$SEAM_ROOT/voc12/train_aug.txt}" --out_cam "$WORK_DIR/${CAM_DIR:-cam}" "${crf[@]}" "$@"
