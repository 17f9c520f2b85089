#!/usr/bin/env bash
# Random-walk pseudo-label mIoU on $LIST (default train) -> $WORK_DIR/results/rw.json
set -euo pipefail
source "$(dirname "$0")/common.sh"
need VOC12_ROOT
run_py evaluation.py --list "${LIST:-$SEAM_ROOT/voc12/train.txt}" --gt_dir "${GT_DIR:-$VOC12_ROOT/SegmentationClass}" \
  --predict_dir "$WORK_DIR/rw" --type png --comment rw --logfile "$WORK_DIR/results/evallog.txt" \
  --out_json "$WORK_DIR/results/rw.json" "$@"
