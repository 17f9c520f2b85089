#!/usr/bin/env bash
# Everything that needs CUDA, in one run (about 5 minutes on one H100):
# In this order (what matters most first, should a time limit stop it):
#   1. the suite's CUDA tests (tests/test_cuda.py: GPU fp32 and bf16 CAMs against the CPU's, the
#      random walk on the GPU, CPU-loadable checkpoints and resume on CUDA, a --compile run);
#   2. the stage scripts at full width on a synthetic VOC-style set: 50 steps of stage 1 (the
#      published crop, batch and loader), then stages 2-5 on 20 images;
#   3. scripts/bench_seam.py at the published size: fp32 eager against the fast path, training
#      and multi-scale CAM inference, with peak memory and model FLOP utilisation; and
#      scripts/bench_loader.py: the stage-1 loader alone at 4, 8 and 16 workers;
#   4. scripts/bench_pipeline.py: every stage's rate at the published size and the projected
#      VOC run (the CRF rows only with pydensecrf).
# Needs torch, pytest, numpy, Pillow, OpenCV and tqdm; works without pydensecrf and tensorboardX:
# the CRF maps of stage 3 are then the CAMs with the background power and no CRF, as the summary says.
#   bash scripts/gpu_check.sh [OUT_DIR]      (default work_gpu_check; the JSON summary is printed last
#                                             and written to OUT_DIR/summary.json)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${SEAM_PYTHON:-python3}"
OUT="${1:-work_gpu_check}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "error: gpu_check.sh needs a CUDA device (torch.cuda.is_available() is False)" >&2; exit 2; }
: > "$OUT/steps.tsv"
step() {  # step NAME command...: output to OUT/NAME.log; status and seconds to OUT/steps.tsv
  local name="$1" t0 rc; shift
  t0=$(date +%s.%N)
  "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  local secs; secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  printf '%s\t%s\t%s\n' "$name" "$rc" "$secs" >> "$OUT/steps.tsv"
  echo "[gpu_check] $name: exit $rc, $secs s"
}
if "$PY" -c 'import pydensecrf.densecrf' 2>/dev/null; then CRF=1; else CRF=0; fi

step cuda_tests "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py

T="$OUT/toy"
step toy_data "$PY" -m voc12.toy --out "$T" --n_train_aug 400 --n_train 20 --n_val 20 --size 320 --seed 0
common=(--voc12_root "$T" --tblog_dir "$OUT/tb")
step stage1_train "$PY" train_seam.py "${common[@]}" --train_list "$T/train_aug.txt" --cls_labels "$T/cls_labels.txt" \
  --session_name "$OUT/seam" --weights none --max_step 50 --log_interval 10 --ckpt_interval 25
crf_args=()
if [ "$CRF" = 1 ]; then crf_args=(--out_crf "$OUT/crf"); fi
step stage2_cams "$PY" infer_seam.py --weights "$OUT/seam.pth" --voc12_root "$T" --cls_labels "$T/cls_labels.txt" \
  --infer_list "$T/train.txt" --out_cam "$OUT/cam" "${crf_args[@]}" --num_workers 4
if [ "$CRF" = 0 ]; then  # stage 3's inputs without the CRF: [(1 - max fg)^alpha, CAMs] as the CRF files store them
  step stage2_maps_no_crf "$PY" - "$OUT" "$T/train.txt" <<'EOF'
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
EOF
fi
step stage3_train "$PY" train_aff.py "${common[@]}" --train_list "$T/train.txt" --session_name "$OUT/aff" \
  --la_crf_dir "$OUT/crf_4.0" --ha_crf_dir "$OUT/crf_24.0" --weights "$OUT/seam.pth" --max_step 20 --log_interval 5
step stage4_walk "$PY" infer_aff.py --weights "$OUT/aff.pth" --voc12_root "$T" --infer_list "$T/train.txt" \
  --cam_dir "$OUT/cam" --out_rw "$OUT/rw" --num_workers 4
step stage4_eval "$PY" evaluation.py --list "$T/train.txt" --predict_dir "$OUT/rw" --gt_dir "$T/SegmentationClass" \
  --type png --logfile ""
step stage5_train "$PY" train_seg.py "${common[@]}" --train_list "$T/train.txt" --label_dir "$OUT/rw" \
  --session_name "$OUT/seg" --weights "$OUT/seam.pth" --max_step 20 --log_interval 5
step stage5_segment "$PY" infer_seg.py --weights "$OUT/seg.pth" --voc12_root "$T" --infer_list "$T/val.txt" \
  --out_seg "$OUT/seg_val" --no_crf --num_workers 4
step bench "$PY" scripts/bench_seam.py --steps 10 --warmup 3
step bench_loader "$PY" scripts/bench_loader.py --workers 4 8 16
step pipeline "$PY" scripts/bench_pipeline.py --steps 3

"$PY" - "$OUT" "$CRF" <<'EOF'
import json, os, re, sys
import torch
out, crf = sys.argv[1], sys.argv[2] == "1"
def read(name):
    path = os.path.join(out, name + ".log")
    return open(path).read() if os.path.exists(path) else ""
summary = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "pydensecrf": crf,
           "steps": {}, "bench": [], "train_images_per_s": {}}
for line in open(os.path.join(out, "steps.tsv")):
    name, rc, secs = line.rstrip("\n").split("\t")
    summary["steps"][name] = {"exit": int(rc), "seconds": float(secs)}
for line in read("bench").splitlines() + read("bench_loader").splitlines() + read("pipeline").splitlines():
    if line.startswith("{"):
        summary["bench"].append(json.loads(line))
tests = re.findall(r"^=*\s*(\d+ passed.*?)\s*=*$|^(\d+ failed.*)$", read("cuda_tests"), re.M)
summary["cuda_tests"] = next((a or b for a, b in tests), "no summary line")
summary["cuda_test_figures"] = re.findall(r"\[cuda\] (.*)", read("cuda_tests"))
for stage in ("stage1_train", "stage3_train", "stage5_train"):
    rates = [float(r) for r in re.findall(r"img/s=([\d.]+)", read(stage))]
    if rates:
        summary["train_images_per_s"][stage] = rates[-1]
miou = re.findall(r"mIoU[^\d]*([\d.]+)", read("stage4_eval"))
summary["stage4_miou_after_50_steps"] = float(miou[-1]) if miou else None
summary["ok"] = all(s["exit"] == 0 for s in summary["steps"].values())
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
print(json.dumps(summary))
EOF
