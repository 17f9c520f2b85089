"""Checkpoint I/O: atomic saves, strict pickle-free loading, resumable training state."""
import random

import numpy as np
import torch

from tool.fileio import atomic_path


def save_state_dict(state_dict, path):
    """Save a plain state dict atomically (loadable with weights_only=True)."""
    with atomic_path(path) as tmp:
        torch.save(state_dict, tmp)


def load_state_dict_file(path, allow_pickle=False):
    """Load a `.pth` without unpickling arbitrary objects (opt-in `allow_pickle` for legacy files)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: weights file not found") from None
    except Exception as e:  # pickle-level errors from weights_only
        raise ValueError(f"{path}: cannot load as a weights-only checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a resumable checkpoint of ours
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def strip_module_prefix(state_dict):
    """Accept checkpoints saved from DataParallel / DDP."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return state_dict


def load_weights_strict(model, state_dict, source="state dict"):
    """Load with strict key/shape matching; only missing `num_batches_tracked` buffers are tolerated.

    A network that names its published checkpoints' keys differently maps them with its
    `adapt_state_dict` (e.g. the segmentation net's `backbone.` prefix).
    Raises ValueError with one line naming every missing / unexpected / mis-shaped key.
    """
    state_dict = strip_module_prefix(dict(state_dict))
    if hasattr(model, "adapt_state_dict"):
        state_dict = model.adapt_state_dict(state_dict)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    misshaped = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            problems.append(f"{what}: {shown}")
    if problems:
        raise ValueError(f"{source}: does not match {type(model).__module__}.Net: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=False)


def rng_state():
    """RNG states as tensors and plain values, so resume files load with weights_only=True."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path, model, optimizer, step, extra=None):
    """Everything needed to resume exactly: model, optimiser, step, RNG states."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "rng": rng_state(),
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: checkpoint to resume from not found") from None
    except Exception as e:
        raise ValueError(f"{path}: not a resumable checkpoint of this project ({type(e).__name__}: {e})") from None
