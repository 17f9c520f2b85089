"""What every stage script runs on: the entry point and its one-line errors, flag types and
--help groups, the device and its precision, torchrun, progress bars.

`run_script(parser, run, argv)` parses the flags once and runs `run(args)`; whatever a user can
mend (a missing or damaged file, a bad value, an output that cannot be written, a data loader
worker's report of one) ends the run in one `error:` line, printed after every open progress
bar is closed, so it stands on a line of its own. `--debug` shows the traceback instead.
The argparse types check numbers where they are parsed (exit status 2, before any work).

Without torchrun (no WORLD_SIZE in the environment) this process is rank 0 of 1.
"""
import argparse
import atexit
import contextlib
import ctypes
import math
import os
import re
import signal
import sys
import weakref

import torch
import torch.distributed as dist
from tqdm import tqdm

from tool.engine.files import WriteError

# What a user can mend, as raised by the readers, checks and writers of this project.
USER_ERRORS = (FileNotFoundError, ValueError, WriteError)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, every flag with its default: not for a required flag (it has
    none), nor where the help says the default itself ("(default: None)" would contradict it)."""

    def _get_help_string(self, action):
        if action.required or re.search(r"(?<!published )\bdefault\b", action.help or "", re.IGNORECASE):
            return action.help
        return super()._get_help_string(action)


# the --help groups, in the order a researcher scans them (one without flags is not shown)
GROUPS = ("data", "network and weights", "method", "optimisation", "speed", "outputs", "faults")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with every flag's default in --help, the flags in GROUPS, and the error on one
    line (`error: ...`, exit status 2), not behind the usage."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=HelpFormatter, **kwargs)
        for title in GROUPS:
            self.add_argument_group(title)

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def group(parser, title):
    """The --help group `title` of `parser` (one of GROUPS for ours; made on first use for any
    other parser), so that each flag is defined in its group."""
    return next((g for g in parser._action_groups if g.title == title), None) or parser.add_argument_group(title)


def one_line(exc):
    """An exception as one line: a data loader re-raises a worker's error with its traceback in
    the message (its last line is the error); torch's reader errors are paragraphs."""
    text = str(exc).strip() or type(exc).__name__
    if "Original Traceback" in text:
        text = re.sub(r"^\w+(Error|Exception): ", "", text.splitlines()[-1].strip())
    return text.splitlines()[0]


def run_script(parser, run, argv=None, status=1):
    """Parse, then run(args) under the one-line error handler. `status`: the exit status of a
    one-line error (1; evaluation.py's is 2, as published)."""
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (SystemExit, *USER_ERRORS) as e:
        close_progress_bars()  # a one-line exit of the code itself: printed by Python, after the bars
        if isinstance(e, SystemExit) or getattr(args, "debug", False):
            raise
        if status == 1:
            raise SystemExit(f"error: {one_line(e)}") from None
        print(f"error: {one_line(e)}", file=sys.stderr)
        raise SystemExit(status) from None


def _number(kind, test, what):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not ((kind is int or math.isfinite(value)) and test(value)):  # isfinite overflows on a huge int
            raise argparse.ArgumentTypeError(f"{text} must be {what}")
        return value

    return parse


count = _number(int, lambda v: v >= 1, ">= 1")  # batch size, steps, epochs, sizes, iterations, intervals
non_negative_int = _number(int, lambda v: v >= 0, ">= 0")  # processes, log t, shifts
positive = _number(float, lambda v: v > 0, "> 0")  # rates, scales, powers, widths
non_negative = _number(float, lambda v: v >= 0, ">= 0")  # weight decay, momentum, loss weights


def add_run_flags(parser, amp_help, compile_flag=True):
    """The speed and fault flags every stage script has."""
    speed = group(parser, "speed")
    speed.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    speed.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto", help=f"{amp_help} (published: fp32)")
    speed.add_argument("--channels_last", choices=["auto", "on", "off"], default="auto",
                       help="NHWC memory format (auto: on CUDA; published: NCHW)")
    if compile_flag:
        speed.add_argument("--compile", action="store_true",
                           help="torch.compile the model (what it cannot compile runs eagerly, with a warning)")
    faults = group(parser, "faults")
    faults.add_argument("--allow_pickle", action="store_true", help="allow legacy pickled .pth weights")
    faults.add_argument("--skip_bad_images", action="store_true",
                        help="leave out listed images that are missing or unreadable (each named in the output) "
                             "instead of stopping before the work starts")
    faults.add_argument("--debug", action="store_true", help="show the traceback behind a one-line error")


# ---------------------------------------------------------------- progress bars

_OPEN_BARS = weakref.WeakSet()  # tqdm's own list of bars is private


def progress(iterable_or_total, desc=None, enabled=True):
    """tqdm bar over an iterable, or over a count when given an int (update it by hand);
    `enabled=False` (torchrun ranks other than 0) iterates without a bar."""
    total = iterable_or_total if isinstance(iterable_or_total, int) else None
    iterable = None if total is not None else iterable_or_total
    bar = tqdm(iterable, total=total, desc=desc, mininterval=1, file=sys.stderr, disable=not enabled)
    _OPEN_BARS.add(bar)
    return bar


def close_progress_bars():
    """Close every open bar: what is printed next starts on a line of its own."""
    for bar in list(_OPEN_BARS):
        bar.close()
        _OPEN_BARS.discard(bar)


# ---------------------------------------------------------------- torchrun


def world():
    """(rank, world_size) of this process; (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main():
    return world()[0] == 0


def usable_cores():
    """The CPU cores this process may use: its affinity, shared among the torchrun ranks of the node."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def shard(items):
    """This rank's share of a list (every world_size-th item), for inference and validation under
    torchrun."""
    rank, size = world()
    return list(items)[rank::size]


def sum_over_ranks(counts, device):
    """An int64 NumPy array (confusion counts of this rank's share) summed over the torchrun
    ranks; unchanged in one process."""
    if world()[1] == 1:
        return counts
    total = torch.as_tensor(counts, dtype=torch.int64, device=device)  # NCCL reduces on the rank's GPU
    dist.all_reduce(total)
    return total.cpu().numpy()


def global_share(counts):
    """A loss normaliser (a tensor of counts over this rank's batch) -> the global batch's count
    divided by the number of ranks: dividing a rank's sum by it makes DDP's mean of the ranks'
    gradients the gradient of the whole batch's mean. Unchanged in one process."""
    if world()[1] == 1:
        return counts
    counts = counts.detach().float().clone()
    dist.all_reduce(counts)
    return counts / dist.get_world_size()


def die_with_parent(parent_pid, *_ignored):
    """Initialiser of a helper process (loader worker, CRF pool): it ignores Ctrl-C (the main
    process decides what stops), and Linux kills it when its parent ends, a kill -9 included.
    Extra arguments (a loader's worker id) are ignored, so it serves as worker_init_fn."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a pending one (tool.engine.inference.HelperPool) drops
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # another libc: no orphan guard
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl ran
        os._exit(1)


# ---------------------------------------------------------------- device and precision


def setup_device(name=None, amp="auto", fixed_shapes=False, deterministic=False):
    """This process's device (`name`, default cuda when available; cuda:LOCAL_RANK under
    torchrun, whose process group it joins: NCCL on CUDA, gloo on CPU), its precision (`amp`:
    off promises exact fp32, no TF32), cuDNN autotuning for `fixed_shapes` (training crops), and
    with `deterministic` PyTorch's deterministic algorithms."""
    device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name} but no CUDA device is available")
    torchrun = int(os.environ.get("WORLD_SIZE", 1)) > 1
    if torchrun and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda" and device.index is not None:  # the current device: checkpoints save its RNG state
        torch.cuda.set_device(device)
    if torchrun and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)  # NCCL warns of leaked resources without it
    if device.type == "cuda":
        set_precision(amp, fixed_shapes)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return device


def set_precision(amp, fixed_shapes=False):
    exact = amp == "off"
    torch.backends.cudnn.allow_tf32 = not exact
    torch.backends.cuda.matmul.allow_tf32 = False  # PyTorch's default; PCM's fp32 matmuls stay fp32
    torch.backends.cudnn.benchmark = fixed_shapes and not exact


def autocast(device, amp):
    """bf16 autocast on CUDA by default; fp32 on CPU unless asked."""
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def channels_last_enabled(device, flag):
    """`--channels_last auto|on|off`: auto = on for CUDA (Tensor Core convolutions want NHWC)."""
    return flag == "on" or (flag == "auto" and device.type == "cuda")


def to_device(model, device, channels_last):
    return model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)


def to_input(x, device, channels_last):
    """A batch on the device, asynchronously from pinned memory, in the model's memory format."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def model_forward(model, device, amp, channels_last):
    """forward(batch) of an inference script: the batch to the device in the model's memory
    format, under the precision `amp` asks for (for tool.cam's multi-scale sums)."""

    def forward(x):
        with autocast(device, amp):
            return model(to_input(x, device, channels_last))

    return forward
