#!/usr/bin/env bash
# The paper's stage-1 study, one command: every setting x seed is trained, its CAMs inferred and
# scored over the background-threshold curve, each cell in its own resumable folder
# WORK_DIR/<setting>/seed_<n>; then one table (ablation.md / .json) and one plot (ablation.png).
#
#   bash scripts/ablation.sh              # the synthetic set, demo-sized, on the CPU
#   ABLATION_DATA=voc VOC12_ROOT=... IMAGENET_PARAMS=ilsvrc-cls_rna-a1_cls1000_ep-0001.params \
#     GPUS="0 1 2 3" bash scripts/ablation.sh   # VOC at the published recipe, a cell per GPU
#
# Settings (SETTINGS picks some, by name; every cell takes the same start, data and budget):
#   baseline       one branch, classification loss only (--single_branch)
#   er             + ER                      (--no_ecr --no_pcm)
#   pcm            + PCM (its min-pool term) (--no_er --no_ecr)
#   er_pcm         + ER + PCM                (--no_ecr)
#   seam           the full method: ER, PCM, ECR, the published 0.3x rescale
#   flip, rotate, translate, rescale_0.5, rescale_0.7, rescale_0.5+flip: the full method under
#                  another equivariant transformation (train_seam.py --transform)
# Other settings: SEEDS (default "0 1"), WORK_DIR (default work_ablation), PARALLEL cells at a
# time (default 2 on the CPU, one thread each; on VOC one per entry of GPUS), PRETRAIN (synthetic
# set: the cells' start instead of training one, e.g. work_demo/pretrain.pth; none: random).
# Arguments go to every train_seam.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${SEAM_PYTHON:-}" ]; then source "$here/env.sh"; export SEAM_PYTHON="$PY"; fi
export WORK_DIR="${WORK_DIR:-work_ablation}"
source "$here/common.sh"
DATA="${ABLATION_DATA:-toy}"
SEEDS="${SEEDS:-0 1}"
declare -A FLAGS=(
  [baseline]="--single_branch" [er]="--no_ecr --no_pcm" [pcm]="--no_er --no_ecr" [er_pcm]="--no_ecr" [seam]=""
  [flip]="--transform flip" [rotate]="--transform rotate:-15..15" [translate]="--transform translate:-0.1..0.1"
  [rescale_0.5]="--transform rescale:0.5" [rescale_0.7]="--transform rescale:0.7"
  [rescale_0.5+flip]="--transform rescale:0.5+flip"
)
ORDER="baseline er pcm er_pcm seam flip rotate translate rescale_0.5 rescale_0.7 rescale_0.5+flip"
SETTINGS="${SETTINGS:-$ORDER}"
for setting in $SETTINGS; do
  if [ -z "${FLAGS[$setting]+set}" ]; then echo "error: SETTINGS: no setting $setting (one of: $ORDER)" >&2; exit 2; fi
done
for seed in $SEEDS; do
  if ! [[ "$seed" =~ ^[0-9]+$ ]]; then echo "error: SEEDS: $seed is not a seed (a number >= 0)" >&2; exit 2; fi
done
mkdir -p "$WORK_DIR"
start=$(date +%s)

if [ "$DATA" = toy ]; then
  # The demo's data and stage-1 budget (docs/demo.md); every cell fine-tunes one stand-in classifier.
  SIZE="${DEMO_SIZE:-96}" WIDTH="${DEMO_WIDTH:-0.125}" BATCH="${DEMO_BATCH:-8}"
  toy="$WORK_DIR/toy"
  if [ ! -f "$toy/val.txt" ]; then
    "$PY" -m voc12.toy --kind folder --n_classes "${DEMO_CLASSES:-6}" --object_scale 0.35 0.8 --out "$toy" \
      --n_train_aug "${DEMO_N_TRAIN_AUG:-600}" --n_train "${DEMO_N_TRAIN:-120}" --n_val "${DEMO_N_VAL:-120}" \
      --size "$SIZE" --seed 0
  fi
  data=(--dataset folder --data_root "$toy")
  gt="$toy/SegmentationClass" eval_list="$toy/train.txt" train_list="$toy/train_aug.txt"
  common=("${data[@]}" --train_list "$train_list" --device "${DEMO_DEVICE:-cpu}" --width "$WIDTH"
          --batch_size "$BATCH" --num_workers 0 --unfreeze --no_dropout --momentum 0.9 --log_interval 50
          --crop_size "$SIZE" --resize_long "$SIZE" $((SIZE * 5 / 3)))
  start_weights="${PRETRAIN:-$WORK_DIR/pretrain.pth}"  # PRETRAIN: another stand-in (the demo's), or none
  if [ -z "${PRETRAIN:-}" ] && [ ! -f "$start_weights" ]; then
    echo "== stage 0: a plain CAM classifier on the image labels, the cells' common start"
    "$PY" "$SEAM_ROOT/train_seam.py" "${common[@]}" --single_branch --session_name "$WORK_DIR/pretrain" --weights none \
      --max_epoches "${DEMO_PRE_EPOCHS:-10}" --lr 0.01 --seed 0
  fi
  train=("${common[@]}" --weights "$start_weights" --max_epoches "${DEMO_CAM_EPOCHS:-4}" --lr 0.001)
  infer=("${data[@]}" --device "${DEMO_DEVICE:-cpu}" --num_workers 0)
  PARALLEL="${PARALLEL:-2}"
  export OMP_NUM_THREADS=1
  paper=()
elif [ "$DATA" = voc ]; then
  need_data
  need IMAGENET_PARAMS
  # as the stage scripts: TRAIN_LIST trains, LIST is what is scored
  gt="$DATA_ROOT/SegmentationClass" eval_list="$(split_list train)"
  train_list="${TRAIN_LIST:-$(LIST='' split_list train_aug)}"
  data=("${DATA_ARGS[@]}")
  train=("${DATA_ARGS[@]}" "${LABEL_ARGS[@]}" --train_list "$train_list" --weights "$IMAGENET_PARAMS")
  infer=("${DATA_ARGS[@]}" "${LABEL_ARGS[@]}")
  GPUS="${GPUS:-0}"
  read -r -a gpu_list <<< "$GPUS"
  PARALLEL="${PARALLEL:-${#gpu_list[@]}}"
  paper=(--paper seam=55.41)  # the full method's published CAM mIoU on VOC train (../docs/faq.md)
else
  echo "error: ABLATION_DATA=$DATA: toy or voc" >&2; exit 2
fi

cell() {  # cell SETTING SEED SLOT: train, infer, score; each step skipped when its output exists
  local setting=$1 seed=$2 slot=$3 dir="$WORK_DIR/$1/seed_$2"
  local -a flags env=()
  read -r -a flags <<< "${FLAGS[$setting]}"
  if [ "$DATA" = voc ]; then env=(CUDA_VISIBLE_DEVICES="${gpu_list[$((slot % ${#gpu_list[@]}))]}"); fi
  mkdir -p "$dir"
  {
    if [ ! -f "$dir/seam.pth" ]; then
      env "${env[@]}" "$PY" "$SEAM_ROOT/train_seam.py" "${train[@]}" "${flags[@]}" --seed "$seed" --session_name "$dir/seam" \
        "${EXTRA[@]}"
    fi
    local -a fc8=()
    if [[ " ${flags[*]} " == *" --no_pcm "* || " ${flags[*]} " == *" --single_branch "* ]]; then fc8=(--no_pcm); fi
    env "${env[@]}" "$PY" "$SEAM_ROOT/infer_seam.py" "${infer[@]}" --weights "$dir/seam.pth" --infer_list "$eval_list" \
      --out_cam "$dir/cam" "${fc8[@]}"
    if [ ! -f "$dir/cam.json" ]; then
      "$PY" "$SEAM_ROOT/evaluation.py" "${data[@]}" --list "$eval_list" --gt_dir "$gt" --predict_dir "$dir/cam" \
        --type npz --curve --num_workers 1 --logfile "" --out_json "$dir/cam.json.tmp" --no_plot
      mv "$dir/cam.json.tmp" "$dir/cam.json"
    fi
  } > "$dir/cell.out" 2>&1
}

EXTRA=("$@")
cells=()
for setting in $SETTINGS; do for seed in $SEEDS; do cells+=("$setting $seed"); done; done
echo "== ${#cells[@]} cells ($SETTINGS x seeds $SEEDS), $PARALLEL at a time; each writes WORK_DIR/<setting>/seed_<n>/cell.out"
running=0 slot=0 failed=0
for c in "${cells[@]}"; do
  read -r setting seed <<< "$c"
  if [ -f "$WORK_DIR/$setting/seed_$seed/cam.json" ]; then echo "   $setting seed $seed: done before"; continue; fi
  if [ "$running" -ge "$PARALLEL" ]; then wait -n || failed=1; running=$((running - 1)); fi
  ( t0=$(date +%s); cell "$setting" "$seed" "$slot" \
    && echo "   $setting seed $seed: $(( $(date +%s) - t0 )) s" \
    || { echo "error: cell $setting seed $seed failed: $WORK_DIR/$setting/seed_$seed/cell.out" >&2; exit 1; } ) &
  running=$((running + 1)) slot=$((slot + 1))
done
while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
if [ "$failed" -ne 0 ]; then echo "error: some cells failed (rerun the same command to continue)" >&2; exit 1; fi
# shellcheck disable=SC2086  # the settings and seeds are words
run_py scripts/ablation_table.py "$WORK_DIR" --settings $SETTINGS --seeds $SEEDS "${paper[@]}" \
  --title "SEAM stage-1 ablation ($DATA), CAM mIoU on $(basename "$eval_list")"
echo "ablation finished in $(( $(date +%s) - start )) s"
