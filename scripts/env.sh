# Sourced by the entry scripts: pick (or create) the Python environment and install
# requirements.txt into it, idempotently.
#   - an active virtualenv / conda environment is used as it is;
#   - else $SEAM_VENV (default: .venv in the checkout), created with --system-site-packages
#     so that a machine's installed torch is reused.
_seam_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${VIRTUAL_ENV:-}" ] || [ -n "${CONDA_PREFIX:-}" ]; then
  PY="$(command -v python)"
else
  SEAM_VENV="${SEAM_VENV:-$_seam_root/.venv}"
  if [ ! -x "$SEAM_VENV/bin/python" ]; then
    echo "[seam] creating virtual environment $SEAM_VENV"
    python3 -m venv --system-site-packages "$SEAM_VENV" || { echo "[seam] cannot create $SEAM_VENV" >&2; exit 1; }
  fi
  PY="$SEAM_VENV/bin/python"
fi
# Reinstall only when requirements.txt changed since the last successful install.
_stamp="$("$PY" -c 'import sys; print(sys.prefix)')/.seam-requirements.sha"
_want="$(sha256sum "$_seam_root/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
  echo "[seam] installing requirements.txt into $("$PY" -c 'import sys; print(sys.prefix)')"
  # A torch already installed (a GPU machine's own build) stays: pin its version, so that pip
  # picks the torchvision made for it instead of upgrading torch to suit the newest torchvision.
  _pin="$(mktemp)"
  "$PY" -c 'import torch; print("torch==" + torch.__version__.split("+")[0])' > "$_pin" 2>/dev/null || : > "$_pin"
  "$PY" -m pip install -q -r "$_seam_root/requirements.txt" -c "$_pin" \
    || { rm -f "$_pin"; echo "[seam] pip install -r requirements.txt failed" >&2; exit 1; }
  # The dense CRF is compiled from source (g++ and Python headers); the rest works without it.
  if ! "$PY" -c 'import pydensecrf.densecrf' 2>/dev/null; then
    "$PY" -m pip install -q "pydensecrf2>=1.0" -c "$_pin" || echo "[seam] warning: pydensecrf2 did not build," \
      "so the CRF steps (infer_seam.py --out_crf, infer_seg.py's CRF, infer_aff.py --crf) will stop with a" \
      "one-line message; install a C++ compiler and the Python headers, then pip install pydensecrf2" \
      "(or run infer_seg.py with --no_crf)" >&2
  fi
  rm -f "$_pin"
  echo "$_want" > "$_stamp"
fi
export PYTHONPATH="$_seam_root${PYTHONPATH:+:$PYTHONPATH}"
