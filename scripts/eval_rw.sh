#!/usr/bin/env bash
# Random-walk pseudo-label mIoU on $LIST (default train) -> $WORK_DIR/results/rw.json
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_data
list="$(split_list train)"
run_py evaluation.py "${DATA_ARGS[@]}" --list "$list" --gt_dir "${GT_DIR:-$DATA_ROOT/SegmentationClass}" \
  --predict_dir "$WORK_DIR/rw" --type png --comment rw --logfile "$WORK_DIR/results/evallog.txt" \
  --out_json "$WORK_DIR/results/rw.json" "$@"
