#!/usr/bin/env bash
# The whole method on a synthetic VOC-style set, on CPU, in minutes: installs what it needs,
# generates the data, runs every stage at a slim width, and prints the results table next to
# a plain-CAM baseline trained with the same budget. Settings below can be overridden by the
# environment (DEMO_TINY=1 shrinks everything to a smoke test; DEMO_BACKBONE=resnet50 runs every
# stage on torchvision's ResNet-50 instead of ResNet-38).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${SEAM_PYTHON:-}" ]; then source "$here/env.sh"; export SEAM_PYTHON="$PY"; fi
export WORK_DIR="${WORK_DIR:-work_demo}"
if [ -n "${SEEDS:-}" ]; then  # one demo per seed in WORK_DIR/seed_<n>, then the table over them
  for seed in $SEEDS; do
    SEEDS="" DEMO_SEED="$seed" WORK_DIR="$WORK_DIR/seed_$seed" bash "$0"
  done
  source "$here/common.sh"
  # shellcheck disable=SC2086  # the seeds and the two powers are words
  run_py scripts/results.py "$WORK_DIR" --title "Synthetic VOC-style demo (CPU), seeds $SEEDS" \
    --crf_alphas "${DEMO_LA_ALPHA:-0.5}" "${DEMO_HA_ALPHA:-2}" --seeds $SEEDS
  # shellcheck disable=SC2086
  run_py scripts/demo_claims.py "$WORK_DIR" "$WORK_DIR" --seeds $SEEDS \
    --crf_alphas "${DEMO_LA_ALPHA:-0.5}" "${DEMO_HA_ALPHA:-2}"
  exit 0
fi
if [ -n "${DEMO_TINY:-}" ]; then
  : "${DEMO_N_TRAIN_AUG:=16}" "${DEMO_N_PSEUDO:=12}" "${DEMO_N_TRAIN:=6}" "${DEMO_N_VAL:=4}" "${DEMO_SIZE:=64}"
  : "${DEMO_WIDTH:=0.0625}"
  : "${DEMO_PRE_EPOCHS:=1}" "${DEMO_CAM_EPOCHS:=1}" "${DEMO_AFF_EPOCHS:=1}" "${DEMO_SEG_STEPS:=2}" "${DEMO_BATCH:=4}"
  : "${DEMO_CRF_WORKERS:=0}"
fi
N_CLASSES="${DEMO_CLASSES:-6}" N_TRAIN_AUG="${DEMO_N_TRAIN_AUG:-600}" N_PSEUDO="${DEMO_N_PSEUDO:-240}"
N_TRAIN="${DEMO_N_TRAIN:-120}" N_VAL="${DEMO_N_VAL:-120}"
SIZE="${DEMO_SIZE:-96}" OBJECT_SCALE="${DEMO_OBJECT_SCALE:-0.35 0.8}" WIDTH="${DEMO_WIDTH:-0.125}" BATCH="${DEMO_BATCH:-8}"
PRE_EPOCHS="${DEMO_PRE_EPOCHS:-10}" CAM_EPOCHS="${DEMO_CAM_EPOCHS:-4}" AFF_EPOCHS="${DEMO_AFF_EPOCHS:-6}"
SEG_STEPS="${DEMO_SEG_STEPS:-400}" CRF_WORKERS="${DEMO_CRF_WORKERS:-2}" SEED="${DEMO_SEED:-0}"
LA="${DEMO_LA_ALPHA:-0.5}" HA="${DEMO_HA_ALPHA:-2}" RW_ALPHA="${DEMO_RW_ALPHA:-1}" RW_RADIUS="${DEMO_RW_RADIUS:-3}"
if ! [ "$N_PSEUDO" -ge "$N_TRAIN" ] 2>/dev/null; then  # train's CAMs and pseudo labels are scored
  echo "error: DEMO_N_PSEUDO=$N_PSEUDO must be a number of images >= DEMO_N_TRAIN ($N_TRAIN)" >&2
  exit 2
fi
# Finished stages are skipped on a rerun: a work folder of other settings (or of an older demo,
# which has no stamp) would mix its outputs into this table.
settings="classes=$N_CLASSES train_aug=$N_TRAIN_AUG pseudo=$N_PSEUDO train=$N_TRAIN val=$N_VAL size=$SIZE \
objects=$OBJECT_SCALE width=$WIDTH batch=$BATCH epochs=$PRE_EPOCHS/$CAM_EPOCHS/$AFF_EPOCHS seg_steps=$SEG_STEPS \
seed=$SEED crf=$LA/$HA walk=$RW_ALPHA/$RW_RADIUS"
if [ -n "${DEMO_BACKBONE:-}" ]; then settings+=" backbone=$DEMO_BACKBONE"; fi  # default: resnet38d
stamp="$WORK_DIR/demo_settings.txt"
if [ -e "$WORK_DIR/toy" ] && [ "$(cat "$stamp" 2>/dev/null)" != "$settings" ]; then
  echo "error: $WORK_DIR holds a demo run of other settings or an older demo: remove it or set WORK_DIR" >&2
  exit 2
fi
mkdir -p "$WORK_DIR"
echo "$settings" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
source "$here/common.sh"
if [ -n "${DEMO_BACKBONE:-}" ]; then export BACKBONE="$DEMO_BACKBONE"; else unset BACKBONE; fi
LA_ALPHA="$LA" HA_ALPHA="$HA" crf_alphas > /dev/null  # DEMO_LA_ALPHA / DEMO_HA_ALPHA checked before any work
start=$(date +%s)
lap_start=$start
lap() {  # lap NAME: one line per stage with its elapsed time, so a user sees where the minutes go
  local now; now=$(date +%s)
  echo "[demo] $1: $((now - lap_start)) s (total $((now - start)) s)"
  lap_start=$now
}

toy="$WORK_DIR/toy"
if [ ! -f "$toy/val.txt" ]; then
  # shellcheck disable=SC2086  # OBJECT_SCALE is two numbers
  "$PY" -m voc12.toy --kind folder --n_classes "$N_CLASSES" --object_scale $OBJECT_SCALE --out "$toy" \
    --n_train_aug "$N_TRAIN_AUG" --n_train "$N_TRAIN" --n_val "$N_VAL" --size "$SIZE" --seed "$SEED"
fi
lap "synthetic data"
# Stages 2-5 (CAMs, CRF maps, AffinityNet, pseudo labels, DeepLab) work on the first N_PSEUDO
# images of train_aug, which hold train: the classifiers of stages 0-1 see all of it. With 240
# rather than 360, stages 2-4 took about 40 s less on 2 cores (docs/demo.md).
pseudo="$WORK_DIR/pseudo.txt"
head -n "$N_PSEUDO" "$toy/train_aug.txt" > "$pseudo"
export DATASET=folder DATA_ROOT="$toy" TRAIN_LIST="$toy/train_aug.txt"
unset VOC12_ROOT CLS_LABELS  # image labels from the folder's XML annotations
crop="$SIZE"
# No ImageNet weights and a short budget: BN and the stem train too (--unfreeze), no dropout
# (channel dropout on 1/8-width layers halves what is learned in a few epochs), ordinary momentum.
# One data-loading process: stage 1 runs two trainings side by side on a 2-core machine.
# The CPU unless DEMO_DEVICE says otherwise: the table is a CPU table.
device=(--device "${DEMO_DEVICE:-cpu}")
common=("${device[@]}" --width "$WIDTH" --batch_size "$BATCH" --num_workers 0 --unfreeze --no_dropout --momentum 0.9
        --log_interval 50 --seed "$SEED")
cam_train=("${common[@]}" --crop_size "$crop" --resize_long "$SIZE" $((SIZE * 5 / 3)))
plain_cam=(--no_er --no_ecr --no_pcm)

echo "== stage 0: a plain CAM classifier on the image labels, in place of the ImageNet weights"
# From random initialisation SEAM's losses hold the classifier back (docs/demo.md); on VOC every
# stage starts from ImageNet weights. Here every later stage starts from this network.
export IMAGENET_PARAMS=none
SEAM_SESSION=pretrain bash "$here/train_seam.sh" "${cam_train[@]}" "${plain_cam[@]}" --max_epoches "$PRE_EPOCHS" --lr 0.01
export IMAGENET_PARAMS="$WORK_DIR/pretrain.pth"
lap "stage 0: pretrain a classifier"

echo "== stage 1: SEAM, and beside it the plain-CAM baseline (no ER, ECR, PCM) with the same start, data and budget"
echo "   (one thread each; the baseline's training, CAMs and eval write to $WORK_DIR/baseline.out)"
# Both fine-tune the stage-0 network at lr 0.001: at the published 0.01 (with batch-statistics BN)
# SEAM's losses undo classes the network had learned (docs/demo.md).
cam_train+=(--max_epoches "$CAM_EPOCHS" --lr 0.001)
(
  export OMP_NUM_THREADS=1
  SEAM_SESSION=baseline bash "$here/train_seam.sh" "${cam_train[@]}" "${plain_cam[@]}"
  SEAM_SESSION=baseline CAM_DIR=cam_baseline SKIP_CRF=1 LIST="$toy/train.txt" bash "$here/infer_seam.sh" \
    "${device[@]}" --num_workers 0 --no_pcm
  CAM_DIR=cam_baseline SKIP_CRF_EVAL=1 LIST="$toy/train.txt" bash "$here/eval_cam.sh" --num_workers 0
) > "$WORK_DIR/baseline.out" 2>&1 &
baseline=$!
trap 'kill "$baseline" 2>/dev/null || true' EXIT  # a failure or Ctrl-C here stops the baseline too
OMP_NUM_THREADS=1 bash "$here/train_seam.sh" "${cam_train[@]}"
lap "stage 1: train SEAM (baseline beside it)"
# The toy CAMs are confident (best background threshold ~0.6, against ~0.2 on VOC): at the
# published CRF powers 4 and 24 fewer than half of the "confident foreground" pixels that train
# AffinityNet are foreground. Powers 0.5 and 2 keep the two maps' roles (docs/demo.md).
export LA_ALPHA="$LA" HA_ALPHA="$HA"
LIST="$pseudo" bash "$here/infer_seam.sh" "${device[@]}" --num_workers 0 --crf_workers "$CRF_WORKERS"
LIST="$toy/train.txt" bash "$here/eval_cam.sh" --num_workers 0
if ! wait "$baseline"; then
  tail -n 5 "$WORK_DIR/baseline.out" >&2
  echo "error: the baseline failed (whole output: $WORK_DIR/baseline.out)" >&2
  exit 1
fi
trap - EXIT
lap "stage 2: CAMs + CRF + eval"

echo "== AffinityNet and random walk: stage 3-4"
TRAIN_LIST="$pseudo" bash "$here/train_aff.sh" "${common[@]}" --crop_size "$crop" --max_epoches "$AFF_EPOCHS" \
  --lr 0.01
lap "stage 3: train AffinityNet"
# Background power 1 for the same reason (VOC: the published 6, between the CRF's 4 and 24). A
# 96-pixel image has a 12x12 feature grid, where the published radius 5 reaches across most of
# the image: radius 3.
LIST="$pseudo" bash "$here/infer_aff.sh" "${device[@]}" --num_workers 0 --alpha "$RW_ALPHA" --radius "$RW_RADIUS"
LIST="$toy/train.txt" bash "$here/eval_rw.sh" --num_workers 0
lap "stage 4: random walk + eval"

echo "== segmentation: stage 5"
# The authors' BN momentum 0.0003 needs their 20,000 steps to re-estimate the statistics; 0.1 here.
TRAIN_LIST="$pseudo" bash "$here/train_seg.sh" "${common[@]}" --crop_size "$crop" --max_step "$SEG_STEPS" \
  --lr 0.01 --bn_momentum 0.1
lap "stage 5: train DeepLab"
head -n 4 "$toy/train.txt" > "$WORK_DIR/figure.txt"
cat "$toy/val.txt" "$WORK_DIR/figure.txt" > "$WORK_DIR/segment.txt"  # val, and the figure's train images
LIST="$WORK_DIR/segment.txt" bash "$here/infer_seg.sh" "${device[@]}" --num_workers 0 --crf_workers "$CRF_WORKERS"
LIST="$toy/val.txt" bash "$here/eval_seg.sh" --num_workers 0
lap "stage 5: segment val + eval"

# shellcheck disable=SC2046  # two numbers
run_py scripts/results.py "$WORK_DIR" --title "Synthetic VOC-style demo (CPU, width $WIDTH, $N_CLASSES classes)" \
  --crf_alphas $(crf_alphas)
run_py scripts/demo_claims.py "$WORK_DIR" "$toy" --crf_alphas $(crf_alphas)
run_py scripts/figure.py "$WORK_DIR" --list "$WORK_DIR/figure.txt" --dataset folder --data_root "$toy" \
  --cams cam_baseline cam --out "$WORK_DIR/demo.png"
echo "== for reference: the walk from the same CAMs with ground-truth affinities, and the CAM pooled onto its grid"
run_py scripts/walk_gt_affinity.py --list "$toy/train.txt" --cam_dir "$WORK_DIR/cam" --gt_dir "$toy/SegmentationClass" \
  --alpha "$RW_ALPHA" --radius "$RW_RADIUS" --dataset folder --data_root "$toy"
echo "demo finished in $(( $(date +%s) - start )) s"
