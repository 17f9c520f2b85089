#!/usr/bin/env bash
# Stage 5 inference: multi-scale + flip segmentation of $LIST (default val) -> $WORK_DIR/seg
set -euo pipefail
source "$(dirname "$0")/common.sh"
need VOC12_ROOT
run_py infer_seg.py --voc12_root "$VOC12_ROOT" --weights "${SEG_WEIGHTS:-$WORK_DIR/resnet38_seg.pth}" \
  --infer_list "${LIST:-$SEAM_ROOT/voc12/val.txt}" --out_seg "$WORK_DIR/seg" "$@"
