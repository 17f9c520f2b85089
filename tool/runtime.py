"""Device, precision and speed settings shared by the training and inference scripts."""
import contextlib
import functools
import os
import signal
import threading
import time

import torch
from torch.utils.data import DataLoader

from tool.cli import add_debug_flag, non_negative_int
from tool.distributed import init_distributed, usable_cores
from tool.fileio import remove_temporaries, require_writable
from tool.procs import die_with_parent


def select_device(name=None):
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name} but no CUDA device is available")
    return device


def set_precision(device, amp, fixed_shapes=False):
    """`--amp off` promises exact fp32: no TF32 in convolutions (cuDNN's default) or matmuls.
    `fixed_shapes` (training crops): let cuDNN time its kernels once per shape and keep the fastest."""
    if device.type == "cuda":
        exact = amp == "off"
        torch.backends.cudnn.allow_tf32 = not exact
        torch.backends.cuda.matmul.allow_tf32 = False  # PyTorch's default; PCM's fp32 matmuls stay fp32
        torch.backends.cudnn.benchmark = fixed_shapes and not exact


def setup_device(name=None, amp="auto", fixed_shapes=False, deterministic=False):
    """The device of this process (`name`, default cuda when available; cuda:LOCAL_RANK under
    torchrun) with its precision set (`amp`), and with `deterministic` (the training scripts'
    --deterministic) PyTorch's deterministic algorithms."""
    device = init_distributed(select_device(name))
    set_precision(device, amp, fixed_shapes)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return device


def autocast(device, amp):
    """bf16 autocast on CUDA by default; fp32 on CPU unless asked."""
    enabled = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def channels_last_enabled(device, flag):
    """`--channels_last auto|on|off`: auto = on for CUDA (Tensor Core convolutions want NHWC)."""
    return flag == "on" or (flag == "auto" and device.type == "cuda")


def to_device(model, device, channels_last):
    return model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)


def to_input(x, device, channels_last):
    """A batch on the device, asynchronously from pinned memory, in the model's memory format."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def default_loader_workers(cap=16):
    """Training loader processes: the usable cores, at most `cap` (a fast GPU step needs more
    than the published 8 to be fed; scripts/bench_loader.py measures a machine's need)."""
    return min(cap, usable_cores())


def add_speed_flags(parser, amp_help="mixed precision: auto = bf16 on CUDA, off on CPU (off: exact fp32, no TF32)",
                    compile_flag=True):
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto", help=amp_help)
    parser.add_argument("--channels_last", choices=["auto", "on", "off"], default="auto",
                        help="NHWC memory format (auto: on CUDA)")
    if compile_flag:
        parser.add_argument("--compile", action="store_true",
                            help="torch.compile the model (what it cannot compile runs eagerly, with a warning)")


def prepare_outputs(folders, grace_s=60):
    """Before an inference run's work: its output folders can be written (one line if not), and
    the write temporaries a killed run left there go (older than `grace_s`, so not those another
    torchrun rank is writing now)."""
    require_writable(folders)
    for folder in folders:
        for path in remove_temporaries(folder, before=time.time() - grace_s):
            print(f"removed {path}, left by an interrupted write")


def inference_loader(dataset, num_workers, device):
    """An inference script's loader: one item at a time, pinned for the GPU, workers that end
    with this process (a kill -9 included)."""
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, pin_memory=device.type == "cuda",
                      worker_init_fn=functools.partial(die_with_parent, os.getpid()))


def lagged_to_host(items, device):
    """(meta, device tensor) pairs -> (meta, CPU tensor) pairs, one item late: each copy to the
    host starts asynchronously and is collected after the next item's GPU work is queued, so
    the GPU computes image i+1 while the host post-processes and writes image i."""
    pending = None
    for meta, tensor in items:
        if device.type == "cuda":
            host = tensor.to("cpu", non_blocking=True)  # pinned, asynchronous
            done = torch.cuda.Event()
            done.record()
        else:
            host, done = tensor, None
        if pending is not None:
            yield _collect(*pending)
        pending = (meta, host, done)
    if pending is not None:
        yield _collect(*pending)


def _collect(meta, host, done):
    if done is not None:
        done.synchronize()
    return meta, host


class Interruption:
    """SIGINT / SIGTERM during an inference loop: the loop checks `requested` after each image
    and stops; what was handed to the writers is finished (every file atomic, none partial), the
    rest is left for the same command run again. A second signal acts as it would have."""

    def __init__(self):
        self.signal, self._previous = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum, frame):
        self.signal = signum
        self._restore()

    def _restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(self, *exc):
        self._restore()
        return False

    @property
    def requested(self):
        return self.signal is not None

    def stop(self, written, total, folder):
        """After the writers are done: the one-line exit of an interrupted run (nothing if none)."""
        if self.signal is not None:
            raise SystemExit(f"interrupted by {signal.Signals(self.signal).name}: {written} of {total} images "
                             f"written to {folder}; run the same command to continue")


SKIP_BAD_HELP = ("leave out listed images that are missing or unreadable (each named in the output) instead of "
                 "stopping before the work starts")


def add_inference_flags(parser, weights_help, network, infer_list_help, amp_help):
    """Flags every inference script has (the data set's come from voc12.dataset)."""
    parser.add_argument("--weights", required=True, help=weights_help)
    parser.add_argument("--network", default=network,
                        help="the stage's network, as the published command lines give it; the network built "
                             "(backbone, width, classes) is the one the checkpoint records")
    parser.add_argument("--infer_list", default=None, help=infer_list_help)
    parser.add_argument("--num_workers", type=non_negative_int, default=8, help="data loader workers")
    parser.add_argument("--crf_workers", type=non_negative_int, default=None,
                        help="CRF processes (default: the cores this process may use, less the loader workers)")
    add_speed_flags(parser, amp_help=amp_help, compile_flag=False)
    parser.add_argument("--overwrite", action="store_true", help="recompute images whose outputs exist")
    parser.add_argument("--allow_pickle", action="store_true", help="allow legacy pickled .pth weights")
    parser.add_argument("--skip_bad_images", action="store_true", help=SKIP_BAD_HELP)
    add_debug_flag(parser)
