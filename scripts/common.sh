# Sourced by the stage scripts: settings from the environment, the Python to use, helpers.
#   VOC12_ROOT       VOC2012 folder (JPEGImages, SegmentationClass, SegmentationClassAug)
#   DATASET          voc12 (default), coco14 or folder (voc12/dataset.py); DATA_ROOT its folder
#                    (VOC12_ROOT stands for DATA_ROOT)
#   IMAGENET_PARAMS  ImageNet weights of the backbone (ResNet-38: .params or converted .pth;
#                    torchvision backbones: imagenet or a .pth), needed by the training stages;
#                    none = random initialisation (synthetic data only)
#   SEED             seed of the training stages (default: each script's, 0)
#   BACKBONE         backbone of the training stages: resnet38d (default, the published network),
#                    resnet50, resnet101 or package.module:Class; inference reads it from the checkpoints
#   WORK_DIR         where every stage writes (default ./work)
#   CLS_LABELS       image-level labels (default: the data set's, voc12/cls_labels.txt for VOC)
#   SEAM_PYTHON      interpreter (default: active venv/conda, else $SEAM_VENV or .venv, else python3)
#   NPROC            processes (GPUs) for the training and inference stages: torchrun when > 1
#   LA_ALPHA         background power of the low-alpha CRF maps (default 4, confident foreground)
#   HA_ALPHA         background power of the high-alpha CRF maps (default 24, confident background)
SEAM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK_DIR="${WORK_DIR:-work}"
DATASET="${DATASET:-voc12}"
DATA_ROOT="${DATA_ROOT:-${VOC12_ROOT:-}}"
if [ -n "${SEAM_PYTHON:-}" ]; then
  PY="$SEAM_PYTHON"
elif [ -n "${VIRTUAL_ENV:-}" ] || [ -n "${CONDA_PREFIX:-}" ]; then
  PY="$(command -v python)"
elif [ -x "${SEAM_VENV:-$SEAM_ROOT/.venv}/bin/python" ]; then
  PY="${SEAM_VENV:-$SEAM_ROOT/.venv}/bin/python"
else
  PY="$(command -v python3)"
fi
export PYTHONPATH="$SEAM_ROOT${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$WORK_DIR/results"

need() {  # need VAR...: fail with one line when a setting is missing
  for v in "$@"; do
    if [ -z "${!v:-}" ]; then echo "error: set $v (see README: stage-by-stage commands)" >&2; exit 2; fi
  done
}

need_data() {  # the data set: DATA_ARGS for every script, LABEL_ARGS where image labels are read
  if [ -z "$DATA_ROOT" ]; then
    echo "error: set VOC12_ROOT (or DATASET and DATA_ROOT; see README: stage-by-stage commands)" >&2; exit 2
  fi
  DATA_ARGS=(--dataset "$DATASET" --data_root "$DATA_ROOT")
  LABEL_ARGS=()
  if [ -n "${CLS_LABELS:-}" ]; then LABEL_ARGS=(--cls_labels "$CLS_LABELS"); fi
}

split_list() {  # split_list ROLE: $LIST if set, else the data set's list of ROLE (train_aug, train, val)
  if [ -n "${LIST:-}" ]; then echo "$LIST"; return; fi
  "$PY" -m voc12.dataset "${DATA_ARGS[@]}" --list "$1"
}

crf_alphas() {  # "LA HA" as infer_seam.py names their folders crf_<power> (4 -> 4.0)
  "$PY" -c 'import math, sys
def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
powers = []
for name, value in zip(("LA_ALPHA", "HA_ALPHA"), sys.argv[1:]):
    try:
        powers.append(float(value))
    except ValueError:
        powers.append(math.nan)
    if not 0 < powers[-1] < math.inf:
        fail(f"{name}={value}: give a positive number")
if not powers[0] < powers[1]:
    fail(f"LA_ALPHA={sys.argv[1]} must be below HA_ALPHA={sys.argv[2]} (low power: confident foreground)")
print(*map(repr, powers))' "${LA_ALPHA:-4}" "${HA_ALPHA:-24}"
}

run_py() {  # run_py script.py args...: print the command, then run it
  echo "+ $(basename "$PY") $*" >&2
  "$PY" "$SEAM_ROOT/$1" "${@:2}"
}

run_stage() {  # run_stage script.py args...: run_py, or on NPROC GPUs of this machine under torchrun
  if [ "${NPROC:-1}" -gt 1 ]; then
    echo "+ torchrun --standalone --nproc_per_node $NPROC $*" >&2
    "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" "$SEAM_ROOT/$1" "${@:2}"
  else
    run_py "$@"
  fi
}


train_stage() {  # train_stage SESSION script.py args...: skip when done, resume when interrupted
  local session="$1"; shift
  if [ -f "$session.pth" ]; then echo "[seam] $session.pth exists: skipping $1" >&2; return 0; fi
  if [ -z "${IMAGENET_PARAMS:-}" ]; then  # no silent random initialisation: `none` is the explicit choice
    echo "error: set IMAGENET_PARAMS to the backbone's ImageNet weights (or none: random initialisation)" >&2; exit 2
  fi
  local resume=()
  if [ -f "$session.resume.pt" ]; then resume=(--resume "$session.resume.pt"); fi
  local chosen=()
  if [ -n "${BACKBONE:-}" ]; then chosen+=(--backbone "$BACKBONE"); fi
  if [ -n "${SEED:-}" ]; then chosen+=(--seed "$SEED"); fi
  run_stage "$1" --session_name "$session" --tblog_dir "$WORK_DIR/tblog" --weights "$IMAGENET_PARAMS" \
    "${resume[@]}" "${chosen[@]}" "${@:2}"
}
