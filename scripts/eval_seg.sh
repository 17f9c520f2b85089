#!/usr/bin/env bash
# Segmentation mIoU on $LIST (default val) -> $WORK_DIR/results/seg.json
set -euo pipefail
source "$(dirname "$0")/common.sh"
need VOC12_ROOT
run_py evaluation.py --list "${LIST:-$SEAM_ROOT/voc12/val.txt}" --gt_dir "${GT_DIR:-$VOC12_ROOT/SegmentationClass}" \
  --predict_dir "$WORK_DIR/seg" --type png --comment seg --logfile "$WORK_DIR/results/evallog.txt" \
  --out_json "$WORK_DIR/results/seg.json" "$@"
