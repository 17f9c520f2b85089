#!/usr/bin/env bash
# The whole paper pipeline on PASCAL VOC 2012, resumable (every finished stage is skipped):
#   [NPROC=N] [SEEDS="0 1 2"] bash scripts/run_voc.sh VOC2012_ROOT IMAGENET_PARAMS [WORK_DIR]
# NPROC=N runs every training and inference stage on N GPUs of this machine (torchrun).
# SEEDS runs the whole pipeline once per seed in WORK_DIR/seed_<n> (each resumable); the table
# shows each row's mean +- std over the seeds beside each seed's value.
# train_aug trains every stage and gets pseudo labels; train scores CAMs and the random walk;
# val scores the segmentation. Ends with the results table next to the paper's figures.
# TRAIN_FLAGS / INFER_FLAGS / EVAL_FLAGS go to every training / inference / evaluation stage,
# e.g. TRAIN_FLAGS="--amp off" INFER_FLAGS="--amp off" for the paper's exact fp32.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: bash scripts/run_voc.sh VOC2012_ROOT IMAGENET_PARAMS [WORK_DIR]" >&2; exit 2; fi
export VOC12_ROOT="$1" IMAGENET_PARAMS="$2" WORK_DIR="${3:-work_voc}" DATASET=voc12 DATA_ROOT="$1"
unset CLS_LABELS LIST TRAIN_LIST  # the paper's lists and labels, whatever a stage-by-stage session exported
for f in "$VOC12_ROOT/JPEGImages" "$VOC12_ROOT/SegmentationClass" "$IMAGENET_PARAMS"; do
  case "$f" in imagenet|none) continue ;; esac  # torchvision's ImageNet weights; random initialisation
  [ -e "$f" ] || { echo "error: $f not found" >&2; exit 2; }
done
here="$(dirname "$0")"
read -r -a train_flags <<< "${TRAIN_FLAGS:-}"
read -r -a infer_flags <<< "${INFER_FLAGS:-}"
read -r -a eval_flags <<< "${EVAL_FLAGS:-}"
run_all() {
  bash "$here/train_seam.sh" "${train_flags[@]}"
  bash "$here/infer_seam.sh" "${infer_flags[@]}"  # train_aug (holds train): CAMs + CRF maps
  bash "$here/eval_cam.sh" "${eval_flags[@]}"
  bash "$here/train_aff.sh" "${train_flags[@]}"
  bash "$here/infer_aff.sh" "${infer_flags[@]}"   # pseudo labels for train_aug
  bash "$here/eval_rw.sh" "${eval_flags[@]}"
  bash "$here/train_seg.sh" "${train_flags[@]}"
  bash "$here/infer_seg.sh" "${infer_flags[@]}"
  bash "$here/eval_seg.sh" "${eval_flags[@]}"
}
base="$WORK_DIR"
if [ -n "${SEEDS:-}" ]; then
  for seed in $SEEDS; do
    (export WORK_DIR="$base/seed_$seed" SEED="$seed"; run_all)
  done
else
  run_all
fi
source "$here/common.sh"
alphas="$(crf_alphas)"
seed_args=()
if [ -n "${SEEDS:-}" ]; then read -r -a seed_args <<< "--seeds $SEEDS"; fi
# shellcheck disable=SC2086  # two numbers
run_py scripts/results.py "$base" --title "PASCAL VOC 2012" --crf_alphas $alphas "${seed_args[@]}"
