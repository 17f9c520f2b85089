"""Checkpoint I/O: atomic saves (on a background thread while training goes on), an inference
script's network, and the resumable training state (RNG states included). Reading a weights
file strictly and pickle-free is network.weights'."""
import os
import random
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from network.weights import load_state_dict_file, load_weights_strict, reason
from tool.engine.files import atomic_path, keep_as
from tool.engine.runtime import channels_last_enabled, to_device


def to_cpu(obj):
    """A copy of a (nested) state with every tensor copied to the CPU: what is saved never
    aliases tensors that training goes on changing, and loads where there is no GPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, OrderedDict):  # a state dict: its attributes (_metadata, a network record) travel
        out = OrderedDict((k, to_cpu(v)) for k, v in obj.items())
        out.__dict__.update(vars(obj))
        return out
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def save_state_dict(state_dict, path):
    """Save a plain state dict atomically (CPU tensors, loadable with weights_only=True)."""
    _write(to_cpu(state_dict), path)


class BackgroundSaver:
    """Writes checkpoints on a thread while training goes on, one at a time.

    `save(state, path)` snapshots the state to the CPU first (so exact resume holds), waits
    for the previous write, then writes atomically in the background. `wait()` raises the
    error of a failed write; call it before reading the file or leaving.
    """

    def __init__(self):
        self._executor, self._writing = ThreadPoolExecutor(1), None

    def save(self, state, path, previous=None):
        """`previous`: first keep the file now at `path` under this name (a hard link, no copy)."""
        snapshot = to_cpu(state)
        self.wait()
        self._writing = self._executor.submit(_write, snapshot, path, previous)

    def wait(self):
        if self._writing is not None:
            self._writing.exception()  # a Ctrl-C while waiting leaves the write pending
            writing, self._writing = self._writing, None
            writing.result()  # the error of a failed write


def _write(state, path, previous=None):
    if previous and os.path.exists(path):
        keep_as(path, previous)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_model(path, build, device, channels_last="auto", allow_pickle=False):
    """An inference script's network: `build(state_dict)` makes it (the network the file records),
    the weights at `path` load strictly, then eval mode on `device`, channels-last as the
    `channels_last` flag (auto / on / off) says. Returns (model, channels_last); a bad file is a
    ValueError naming it."""
    state = load_state_dict_file(path, allow_pickle=allow_pickle)
    model = build(state)
    load_weights_strict(model, state, source=str(path))
    channels_last = channels_last_enabled(device, channels_last)
    return to_device(model.eval(), device, channels_last), channels_last


def rng_state():
    """RNG states as tensors and plain values, so resume files load with weights_only=True."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this process's device only: resumable on fewer GPUs
    return state


def set_rng_state(state):
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        # a list (one state per GPU) is also accepted: this process resumes on its own device
        torch.cuda.set_rng_state(cuda[0] if isinstance(cuda, (list, tuple)) else cuda)


def training_state(model, optimizer, step):
    """Everything needed to resume exactly: model, optimiser, step, RNG states."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "rng": rng_state()}


def load_training_state(path, mmap=False):
    """A resumable checkpoint (`mmap`: tensors read lazily, for a cheap look at names and shapes)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: checkpoint to resume from not found") from None
    except Exception as e:
        raise ValueError(f"{path}: not a resumable checkpoint of this project ({reason(e)})") from None
