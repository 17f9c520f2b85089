#!/usr/bin/env bash
# CAM mIoU on $LIST (default train) over the background-threshold curve, and the CRF maps
# -> $WORK_DIR/results/{cam,crf_4.0,crf_24.0}.json (CRF powers LA_ALPHA, HA_ALPHA)
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_data
alphas="$(crf_alphas)"
list="$(split_list train)"
gt="${GT_DIR:-$DATA_ROOT/SegmentationClass}"
cam="${CAM_DIR:-cam}"
run_py evaluation.py "${DATA_ARGS[@]}" --list "$list" --gt_dir "$gt" --predict_dir "$WORK_DIR/$cam" --type npz \
  --curve --comment "$cam" --logfile "$WORK_DIR/results/evallog.txt" --out_json "$WORK_DIR/results/$cam.json" "$@"
if [ -z "${SKIP_CRF_EVAL:-}" ]; then
  for alpha in $alphas; do
    run_py evaluation.py "${DATA_ARGS[@]}" --list "$list" --gt_dir "$gt" --predict_dir "$WORK_DIR/crf_$alpha" \
      --type crf --comment "crf_$alpha" --logfile "$WORK_DIR/results/evallog.txt" \
      --out_json "$WORK_DIR/results/crf_$alpha.json" "$@"
  done
fi
