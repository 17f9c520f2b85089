#!/usr/bin/env bash
# Stage 5 inference: multi-scale + flip segmentation + CRF of $LIST (default val) -> $WORK_DIR/seg.
# SEG_WEIGHTS: another checkpoint, e.g. the authors' deeplabv1_resnet38_VOCDataset_itr20000_all_64.754.pth
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_data
list="$(split_list val)"
run_stage infer_seg.py "${DATA_ARGS[@]}" --weights "${SEG_WEIGHTS:-$WORK_DIR/resnet38_seg.pth}" \
  --infer_list "$list" --out_seg "$WORK_DIR/seg" "$@"
