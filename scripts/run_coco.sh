#!/usr/bin/env bash
# The whole pipeline on MS-COCO 2014, resumable (every finished stage is skipped):
#   [NPROC=N] bash scripts/run_coco.sh COCO_ROOT IMAGENET_PARAMS [WORK_DIR]
# COCO_ROOT holds train2014/, val2014/ and annotations/instances_{train,val}2014.json as
# downloaded; the first run writes its masks, lists and labels there (python -m voc12.make_coco).
# train2014 (82,081 images with annotations) trains every stage and scores the CAMs and pseudo
# labels; val2014 (40,137) scores the segmentation. 81 classes throughout; CAM and CRF maps are
# stored as uint8 (the coco14 default, error <= 1/510: ~25 GB for train2014 instead of ~820 GB
# in float32, scripts/bench_camsize.py).
# Budgets (ours: the SEAM authors published no COCO configuration), each stage seeing about 2.5-3x
# the images it sees on VOC, as COCO has ~8x the images and 4x the classes:
#   stage 1 and 3: 3 epochs of train2014 (VOC: 8 of train_aug); stage 5: 50,000 steps (VOC: 20,000).
# Override with COCO_CAM_EPOCHS, COCO_AFF_EPOCHS, COCO_SEG_STEPS; TRAIN_FLAGS / INFER_FLAGS / EVAL_FLAGS
# go to every training / inference / evaluation stage (e.g. TRAIN_FLAGS="--amp off").
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: bash scripts/run_coco.sh COCO_ROOT IMAGENET_PARAMS [WORK_DIR]" >&2; exit 2; fi
export DATASET=coco14 DATA_ROOT="$1" IMAGENET_PARAMS="$2" WORK_DIR="${3:-work_coco}"
unset VOC12_ROOT CLS_LABELS LIST TRAIN_LIST
for f in "$DATA_ROOT/annotations/instances_train2014.json" "$DATA_ROOT/annotations/instances_val2014.json" \
         "$DATA_ROOT/train2014" "$DATA_ROOT/val2014" "$IMAGENET_PARAMS"; do
  case "$f" in imagenet|none) continue ;; esac  # torchvision's ImageNet weights; random initialisation
  [ -e "$f" ] || { echo "error: $f not found" >&2; exit 2; }
done
here="$(dirname "$0")"
source "$here/common.sh"
if [ ! -f "$DATA_ROOT/cls_labels.txt" ] || [ ! -f "$DATA_ROOT/train.txt" ] || [ ! -f "$DATA_ROOT/val.txt" ]; then
  echo "+ $(basename "$PY") -m voc12.make_coco --coco_root $DATA_ROOT" >&2
  "$PY" -m voc12.make_coco --coco_root "$DATA_ROOT"
fi
read -r -a train_flags <<< "${TRAIN_FLAGS:-}"
read -r -a infer_flags <<< "${INFER_FLAGS:-}"
read -r -a eval_flags <<< "${EVAL_FLAGS:-}"
bash "$here/train_seam.sh" --max_epoches "${COCO_CAM_EPOCHS:-3}" "${train_flags[@]}"
bash "$here/infer_seam.sh" "${infer_flags[@]}"  # train2014: CAMs + CRF maps
bash "$here/eval_cam.sh" "${eval_flags[@]}"
bash "$here/train_aff.sh" --max_epoches "${COCO_AFF_EPOCHS:-3}" "${train_flags[@]}"
bash "$here/infer_aff.sh" "${infer_flags[@]}"   # pseudo labels for train2014
bash "$here/eval_rw.sh" "${eval_flags[@]}"
bash "$here/train_seg.sh" --max_step "${COCO_SEG_STEPS:-50000}" "${train_flags[@]}"
bash "$here/infer_seg.sh" "${infer_flags[@]}"
bash "$here/eval_seg.sh" "${eval_flags[@]}"
alphas="$(crf_alphas)"
# shellcheck disable=SC2086  # two numbers
run_py scripts/results.py "$WORK_DIR" --title "MS-COCO 2014" --reference coco14 --crf_alphas $alphas
