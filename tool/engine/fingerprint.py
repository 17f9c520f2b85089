"""The environment a result came from, so that two numbers can be told apart: a broken install
from another GPU model, a dirty tree from a release. Every training log, evaluation JSON and
results table carries it."""
import contextlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _output(*command):
    """A command's output (run in the repository), or None where it cannot run or fails."""
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model():
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _gpus():
    if not torch.cuda.is_available():
        return None
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    drivers = _output("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader")
    return {"names": names, "driver": drivers.split()[0] if drivers else None}


def precision(device, amp):
    """What the forward passes ran in: bf16 autocast or fp32, with TF32 on or off."""
    bf16 = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if device.type != "cuda":
        return "bf16 autocast (CPU)" if bf16 else "fp32"
    tf32 = torch.backends.cudnn.allow_tf32
    return ("bf16 autocast" if bf16 else "fp32") + f", TF32 convolutions {'on' if tf32 else 'off'}"


def fingerprint(precision_used=None, processes=1, seed=None, deterministic=None):
    """A JSON-able dict of the environment (see the module docstring)."""
    commit = _output("git", "rev-parse", "HEAD")
    status = _output("git", "status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "dirty": None if status is None else bool(status),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpus": _gpus(),
        "cpu": _cpu_model(),
        "threads": torch.get_num_threads(),
        "precision": precision_used,
        "deterministic": deterministic,
        "processes": processes,
        "seed": seed,
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) if sys.argv and sys.argv[0] else None,
    }


def _version(module):
    """A package's __version__ without importing it (torchvision's import takes a second): from
    the module when loaded, else its version.py, else the installed metadata."""
    if module in sys.modules:
        return getattr(sys.modules[module], "__version__", None)
    spec = importlib.util.find_spec(module)
    if spec is None:
        return None
    with contextlib.suppress(OSError, TypeError, IndexError):
        with open(os.path.join(spec.submodule_search_locations[0], "version.py")) as f:
            found = re.search(r"""^__version__ = ['"]([^'"]+)['"]""", f.read(), re.M)
        if found:
            return found.group(1)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(module)
    return None


def fingerprint_line(fp):
    """One line of a fingerprint, for a table's footer or a log."""
    commit = (fp.get("commit") or "unknown")[:10] + ("+dirty" if fp.get("dirty") else "")
    device = ", ".join(fp["gpus"]["names"]) + f" (driver {fp['gpus']['driver']})" if fp.get("gpus") else \
        f"{fp.get('cpu')} x{fp.get('threads')} threads"
    parts = [f"commit {commit}", f"Python {fp.get('python')}", f"torch {fp.get('torch')}",
             f"torchvision {fp.get('torchvision')}", f"CUDA {fp.get('cuda')}", f"cuDNN {fp.get('cudnn')}", device]
    parts += [f"{key} {fp[key]}" for key in ("precision", "processes", "seed") if fp.get(key) is not None]
    return "; ".join(parts)
