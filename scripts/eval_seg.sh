#!/usr/bin/env bash
# Segmentation mIoU on $LIST (default val) -> $WORK_DIR/results/seg.json
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_data
list="$(split_list val)"
run_py evaluation.py "${DATA_ARGS[@]}" --list "$list" --gt_dir "${GT_DIR:-$DATA_ROOT/SegmentationClass}" \
  --predict_dir "$WORK_DIR/seg" --type png --comment seg --logfile "$WORK_DIR/results/evallog.txt" \
  --out_json "$WORK_DIR/results/seg.json" "$@"
