#!/usr/bin/env bash
# Everything that needs CUDA, in one call of a GPU machine: 6 minutes on one H100 (--quick: 3),
# with room to run it again within a 15-minute loan.
#
#   bash scripts/gpu_check.sh [--quick] [OUT_DIR]    (default OUT_DIR: work_gpu_check)
#
# Environment: GPU_CHECK_LIMIT_S (default 360, --quick 180); GPU_CHECK_WHEELS, a folder of wheels
# to install what is missing from (a machine without a package registry); SEAM_PYTHON.
#
# OUT_DIR starts empty (a folder of an earlier gpu_check is cleared; any other non-empty folder
# is refused). Each step logs to OUT_DIR/<step>.log; the JSON summary (each step pass / fail /
# skipped with its seconds and budget, the environment fingerprint, the CUDA tests' figures,
# training rates and benchmark lines) is printed last and written to OUT_DIR/summary.json; the
# exit status is 0 when no step failed and the CUDA tests ran and passed, else 1. Without CUDA
# it prints one line and the steps it would run, and exits 0.
#
# Steps, most important first, with their budgets in seconds on one H100 (a step that would not
# fit in what is left of the limit is skipped and says so; each is stopped at twice its budget):
#   step             budget quick what
STEPS="
preflight           10   y     imports; tries to install pydensecrf2, tensorboardX, pytest where missing
cuda_tests          55   y     tests/test_cuda.py: CAMs, random walk vs the CPU; CUDA resume; train_seam --compile
toy_data             8   y     synthetic VOC-style set: 400 train_aug, 20 train, 20 val images of 320 px
stage1_train        20   y     train_seam.py at full width, the published crop and batch, checkpoints on a thread
stage2_cams         12   y     infer_seam.py multi-scale + flip CAMs (and the CRF maps, with pydensecrf)
stage3_train        12   y     train_aff.py on the stage-2 maps
stage4_walk         12   y     infer_aff.py random walk (and --crf, with pydensecrf), then evaluation.py
stage5_train        15   y     train_seg.py on the random-walk labels
stage5_segment       8   y     infer_seg.py on val (its CRF, with pydensecrf)
stage1_variants     15   y     train_seam.py --backbone resnet50 --val_list --deterministic --transform flip+rotate
infer_interrupted   12   y     infer_seam.py stopped by SIGINT mid-list, then the same command completes it
torchrun            25   n     2 processes: NCCL on 2 GPUs (stage 1, stage 5 --sync_bn); on 1 GPU gloo on the CPU
bench_seam          90   n     scripts/bench_seam.py at the published size: fp32 eager, bf16 + channels_last, + compile
bench_loader        20   n     scripts/bench_loader.py: the stage-1 loader at 8 and 16 workers
bench_pipeline      40   n     scripts/bench_pipeline.py: every stage's rate and the projected VOC run
"
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK=0 OUT=work_gpu_check
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -*) echo "error: gpu_check.sh: unknown option $arg (usage: gpu_check.sh [--quick] [OUT_DIR])" >&2; exit 2 ;;
    *) OUT="$arg" ;;
  esac
done
LIMIT="${GPU_CHECK_LIMIT_S:-$([ "$QUICK" = 1 ] && echo 180 || echo 360)}"
PY="${SEAM_PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

steps() {  # the table's rows for this mode: name budget
  echo "$STEPS" | awk -v quick="$QUICK" 'NF && (quick == 0 || $3 == "y") { print $1, $2 }'
}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  total=$(steps | awk '{ s += $2 } END { print s }')
  echo "gpu_check.sh: no CUDA device here (torch.cuda.is_available() is not True); on a GPU it runs, within ${LIMIT} s:"
  steps | while read -r name budget; do printf '  %-18s %4s s\n' "$name" "$budget"; done
  echo "  total budget       ${total} s"
  exit 0
fi

if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
  if [ ! -f "$OUT/steps.tsv" ]; then
    echo "error: $OUT is not empty and not a gpu_check folder: give another OUT_DIR" >&2
    exit 2
  fi
  rm -rf "$OUT"
fi
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || { echo "error: $OUT: cannot make the output folder" >&2; exit 2; }
: > "$OUT/steps.tsv"
START=$(date +%s)
export PYTHONPATH="$OUT/site:$PYTHONPATH"
T="$OUT/toy"
NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
has() { "$PY" -c "import $1" 2>/dev/null; }  # imports, not only found: a build that cannot load is missing
SKIPPED=77  # a step's exit status for "skipped, for want of a package"

# --- the steps (each a function; its output goes to OUT/<name>.log)

preflight() {
  "$PY" -c 'import numpy, PIL, cv2, tqdm, torchvision' || return 1  # what every stage script needs
  local item module package
  for item in pydensecrf.densecrf:pydensecrf2 tensorboardX:tensorboardX pytest:pytest; do
    module="${item%%:*}" package="${item#*:}"
    has "$module" && continue
    # one at a time, without dependencies, into OUT_DIR/site (on PYTHONPATH): the machine's own
    # packages (numpy above all) stay as they are; from GPU_CHECK_WHEELS, else the registry
    local source=(--retries 0 --timeout 5)
    if [ -n "$GPU_CHECK_WHEELS" ]; then source=(--no-index --find-links "$GPU_CHECK_WHEELS"); fi
    echo "installing $package"
    timeout 15 "$PY" -m pip install -q --disable-pip-version-check --no-deps --target "$OUT/site" "${source[@]}" \
      "$package" || echo "could not install $package"
  done
  has pydensecrf.densecrf || echo "skipped without pydensecrf: the CRF of stages 2, 4 and 5 (stage 3 reads the" \
    "CAMs with the background power) and the CRF rows of bench_pipeline's projection"
  has tensorboardX || echo "without tensorboardX: text logs only (nothing skipped)"
  has pytest || echo "skipped without pytest: cuda_tests"
  return 0
}

cuda_tests() {
  has pytest || { echo "skipped: no pytest"; return $SKIPPED; }
  "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py
}

toy_data() {
  "$PY" -m voc12.toy --out "$T" --n_train_aug 400 --n_train 20 --n_val 20 --size 320 --seed 0
}

stage1_train() {
  "$PY" train_seam.py --voc12_root "$T" --tblog_dir "$OUT/tb" --train_list "$T/train_aug.txt" \
    --cls_labels "$T/cls_labels.txt" \
    --session_name "$OUT/seam" --weights none --max_step 30 --log_interval 10 --ckpt_interval 15
}

stage2_cams() {
  local crf=()
  if has pydensecrf.densecrf; then crf=(--out_crf "$OUT/crf"); fi
  "$PY" infer_seam.py --weights "$OUT/seam.pth" --voc12_root "$T" --cls_labels "$T/cls_labels.txt" \
    --infer_list "$T/train.txt" --out_cam "$OUT/cam" "${crf[@]}" --num_workers 4 || return 1
  has pydensecrf.densecrf && return 0
  # stage 3's inputs without the CRF: [(1 - max fg)^alpha, CAMs], as the CRF files store them
  "$PY" - "$OUT" "$T/train.txt" <<'EOF'
import os, sys
import numpy as np
from tool.cam import with_background
from tool.engine.camfile import load_cam, save_crf
from voc12.labels import NUM_CLASSES, load_img_id_list
out, ids = sys.argv[1], load_img_id_list(sys.argv[2])
for name in ids:
    keys, cams = load_cam(os.path.join(out, "cam", name + ".npz"), NUM_CLASSES)
    for alpha in (4.0, 24.0):
        save_crf(os.path.join(f"{out}/crf_{alpha}", name + ".npz"), np.concatenate([[0], keys + 1]),
                 with_background(cams, alpha))
print("no pydensecrf: the stage-3 maps are the CAMs with the background power, without CRF")
EOF
}

stage3_train() {
  "$PY" train_aff.py --voc12_root "$T" --tblog_dir "$OUT/tb" --train_list "$T/train.txt" --session_name "$OUT/aff" \
    --la_crf_dir "$OUT/crf_4.0" \
    --ha_crf_dir "$OUT/crf_24.0" --weights "$OUT/seam.pth" --max_step 20 --log_interval 5
}

stage4_walk() {
  local crf=()
  if has pydensecrf.densecrf; then crf=(--crf); fi
  "$PY" infer_aff.py --weights "$OUT/aff.pth" --voc12_root "$T" --infer_list "$T/train.txt" --cam_dir "$OUT/cam" \
    --out_rw "$OUT/rw" --num_workers 4 "${crf[@]}" || return 1
  "$PY" evaluation.py --list "$T/train.txt" --predict_dir "$OUT/rw" --gt_dir "$T/SegmentationClass" --type png \
    --logfile ""
}

stage5_train() {
  "$PY" train_seg.py --voc12_root "$T" --tblog_dir "$OUT/tb" --train_list "$T/train.txt" --label_dir "$OUT/rw" \
    --session_name "$OUT/seg" \
    --weights "$OUT/seam.pth" --max_step 20 --log_interval 5
}

stage5_segment() {
  local crf=(--no_crf)
  if has pydensecrf.densecrf; then crf=(); fi
  "$PY" infer_seg.py --weights "$OUT/seg.pth" --voc12_root "$T" --infer_list "$T/val.txt" --out_seg "$OUT/seg_val" \
    --num_workers 4 "${crf[@]}"
}

stage1_variants() {  # paths never run on CUDA before, in one run: another backbone, validation, determinism, A
  "$PY" train_seam.py --voc12_root "$T" --tblog_dir "$OUT/tb" --train_list "$T/train_aug.txt" \
    --cls_labels "$T/cls_labels.txt" \
    --session_name "$OUT/seam_variants" --weights none --backbone resnet50 --val_list "$T/val.txt" \
    --val_interval 5 --deterministic --transform "flip+rotate:-15..15" --max_step 10 --log_interval 5 || return 1
  test -s "$OUT/seam_variants.val.json" && grep -q "val step 10" "$OUT/tb/"*seam_variants.log
}

infer_interrupted() {
  "$PY" - "$OUT" "$T" <<'EOF'
import glob, os, signal, subprocess, sys, time
out, toy = sys.argv[1:]
folder = os.path.join(out, "cam_interrupted")
cmd = [sys.executable, "infer_seam.py", "--weights", os.path.join(out, "seam.pth"), "--voc12_root", toy,
       "--cls_labels", os.path.join(toy, "cls_labels.txt"), "--infer_list", os.path.join(toy, "train.txt"),
       "--out_cam", folder, "--num_workers", "2"]
first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
deadline = time.time() + 60
while not glob.glob(os.path.join(folder, "*.npz")) and first.poll() is None and time.time() < deadline:
    time.sleep(0.02)
first.send_signal(signal.SIGINT)
text = first.communicate(timeout=60)[0]
written = len(glob.glob(os.path.join(folder, "*.npz")))
print(text[-2000:])
assert first.returncode != 0, "the first run ended before the signal: nothing was interrupted"
assert "interrupted by SIGINT" in text, f"exit {first.returncode} without the interruption's line"
assert not [f for f in os.listdir(folder) if not f.endswith(".npz")], "a temporary file was left"
second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
print(second.stdout[-1000:], second.stderr[-1000:])
total = len(open(os.path.join(toy, "train.txt")).read().split())
assert second.returncode == 0 and len(glob.glob(os.path.join(folder, "*.npz"))) == total
print(f"interrupted after {written} of {total} images; the same command wrote the other {total - written}")
EOF
}

torchrun() {
  local tiny=(--width 0.25 --crop_size 96 --resize_long 96 128 --batch_size 4 --max_step 6 --log_interval 2)
  local args=(--voc12_root "$T" --tblog_dir "$OUT/tb" --train_list "$T/train_aug.txt" --cls_labels "$T/cls_labels.txt"
              --weights none)
  if [ "$NGPU" -ge 2 ]; then
    "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 train_seam.py "${args[@]}" "${tiny[@]}" \
      --session_name "$OUT/seam_ddp" --val_list "$T/val.txt" --val_interval 6 || return 1
    "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 train_seg.py --voc12_root "$T" \
      --tblog_dir "$OUT/tb" \
      --train_list "$T/train.txt" --label_dir "$OUT/rw" --session_name "$OUT/seg_ddp" --weights none --sync_bn \
      --width 0.25 --crop_size 96 --batch_size 4 --max_step 4 --log_interval 2
  else
    echo "1 GPU: NCCL needs one GPU per process, so NCCL and --sync_bn are not run; 2 processes on the CPU" \
      "(gloo) instead"
    CUDA_VISIBLE_DEVICES="" "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 train_seam.py \
      "${args[@]}" "${tiny[@]}" --device cpu --session_name "$OUT/seam_ddp" --val_list "$T/val.txt" --val_interval 6
  fi
}

bench_seam() { "$PY" scripts/bench_seam.py --steps 6 --warmup 2; }
bench_loader() { "$PY" scripts/bench_loader.py --voc12_root "$T" --workers 8 16 --batches 20; }
bench_pipeline() { "$PY" scripts/bench_pipeline.py --steps 3; }

# --- the run
export OUT T PY NGPU SKIPPED GPU_CHECK_WHEELS="${GPU_CHECK_WHEELS:-}"
export -f has preflight cuda_tests toy_data stage1_train stage2_cams stage3_train stage4_walk stage5_train \
  stage5_segment stage1_variants infer_interrupted torchrun bench_seam bench_loader bench_pipeline

while read -r name budget; do
  left=$((LIMIT - ($(date +%s) - START)))
  t0=$(date +%s.%N)
  if [ "$budget" -gt "$left" ]; then
    rc=skip
    echo "skipped: ${left} s of the ${LIMIT} s limit left, the step's budget is ${budget} s" > "$OUT/$name.log"
  else
    # a step ends at twice its budget (timeout stops its whole process group)
    timeout -k 10 $((2 * budget < left ? 2 * budget : left)) bash -c "$name" > "$OUT/$name.log" 2>&1
    rc=$?
    [ "$rc" = $SKIPPED ] && rc=skip
  fi
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$secs" "$budget" >> "$OUT/steps.tsv"
  echo "[gpu_check] $name: $([ "$rc" = skip ] && echo skipped || echo "exit $rc"), $secs s (budget $budget s)"
done < <(steps)

"$PY" - "$OUT" "$QUICK" <<'EOF'
import json, os, re, sys
from tool.engine.fingerprint import fingerprint
out, quick = sys.argv[1], sys.argv[2] == "1"
def read(name):
    path = os.path.join(out, name + ".log")
    return open(path).read() if os.path.exists(path) else ""
environment = {k: v for k, v in fingerprint().items() if k != "command"}
summary = {"quick": quick, "environment": environment, "steps": {}, "skipped_for_want_of": [], "bench": [],
           "train_images_per_s": {}}
for line in open(os.path.join(out, "steps.tsv")):
    name, rc, secs, budget = line.rstrip("\n").split("\t")
    status = "skipped" if rc == "skip" else "pass" if rc == "0" else f"fail (exit {rc})"
    summary["steps"][name] = {"status": status, "seconds": float(secs), "budget": int(budget)}
summary["skipped_for_want_of"] = [s for s in read("preflight").splitlines() if s.startswith(("skipped", "without"))]
for name in ("bench_seam", "bench_loader", "bench_pipeline"):
    summary["bench"] += [json.loads(s) for s in read(name).splitlines() if s.startswith("{")]
tests = re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|errors?)\b.*?)\s*=*$", read("cuda_tests"), re.M)
summary["cuda_tests"] = tests[-1] if tests else "no summary line"
summary["cuda_test_figures"] = re.findall(r"\[cuda\] (.*)", read("cuda_tests"))
for stage in ("stage1_train", "stage3_train", "stage5_train", "stage1_variants"):
    rates = re.findall(r"img/s=([\d.]+)", read(stage))
    if rates:
        summary["train_images_per_s"][stage] = float(rates[-1])
miou = re.findall(r"mIoU[^\d]*([\d.]+)", read("stage4_walk"))
summary["stage4_miou"] = float(miou[-1]) if miou else None
summary["seconds"] = round(sum(s["seconds"] for s in summary["steps"].values()), 1)
# ok: nothing failed, and the CUDA tests ran and passed (skipped ones prove nothing)
summary["ok"] = (not any(s["status"].startswith("fail") for s in summary["steps"].values())
                 and summary["steps"].get("cuda_tests", {}).get("status") == "pass"
                 and "passed" in summary["cuda_tests"] and "skipped" not in summary["cuda_tests"])
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
print(json.dumps(summary))
sys.exit(0 if summary["ok"] else 1)
EOF
