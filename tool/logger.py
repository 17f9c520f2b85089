"""Run logging for the training scripts: text log, optional TensorBoard, progress bars, loss meters."""
import os
import sys
import time
import weakref

from tqdm import tqdm

try:
    from tensorboardX import SummaryWriter
except ImportError:  # optional: the text log is enough to follow a run
    SummaryWriter = None


class RunLogger:
    """Text log `<log_dir>/<session_name>.log` (appended) plus TensorBoard events in
    `<log_dir>/<session_name>/` when tensorboardX is installed and `tensorboard` is True.

    The log starts with a timestamp and every flag of `flags` (a dict), one per line, so a run
    can be repeated from its log alone.
    """

    def __init__(self, log_dir, session_name, flags=None, tensorboard=True, enabled=True):
        self._file, self.writer, self.enabled = None, None, enabled
        if not enabled:  # the other ranks of a torchrun job: rank 0 alone logs
            return
        os.makedirs(log_dir, exist_ok=True)
        self.log_path = os.path.join(log_dir, f"{session_name}.log")
        self._file = open(self.log_path, "a", buffering=1)  # line-buffered: readable while training
        self._file.write(f"=== {session_name} started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        for name, value in sorted((flags or {}).items()):
            self._file.write(f"{name}: {value}\n")
        self.writer = None
        if tensorboard:
            if SummaryWriter is None:
                self.info("warning: tensorboardX is not installed; logging to text only")
            else:
                self.writer = SummaryWriter(os.path.join(log_dir, session_name))

    def info(self, msg):
        """Print `msg` and append it to the text log."""
        if not self.enabled:
            return
        print(msg, flush=True)
        if self._file is not None:
            self._file.write(f"{msg}\n")

    def record(self, msg):
        """Append `msg` to the text log only (long machine-readable lines)."""
        if self.enabled and self._file is not None:
            self._file.write(f"{msg}\n")

    def scalars(self, step, values):
        """Log a dict {tag: number} at `step` to TensorBoard (no-op without it)."""
        if self.writer is None:
            return
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), step)

    def images(self, step, tag, tensor_nchw):
        """Log a batch of (N, C, H, W) images in [0, 1] as one grid (no-op without TensorBoard)."""
        if self.writer is None:
            return
        from torchvision.utils import make_grid

        grid = make_grid(tensor_nchw.detach().float().cpu(), nrow=min(8, tensor_nchw.shape[0]))
        self.writer.add_image(tag, grid.clamp(0, 1), step)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False


_OPEN_BARS = weakref.WeakSet()


def progress(iterable_or_total, desc=None, enabled=True):
    """tqdm bar over an iterable, or over a count when given an int (update it by hand);
    `enabled=False` (torchrun ranks other than 0) iterates without a bar."""
    if isinstance(iterable_or_total, int):
        bar = tqdm(total=iterable_or_total, desc=desc, mininterval=1, file=sys.stderr, disable=not enabled)
    else:
        bar = tqdm(iterable_or_total, desc=desc, mininterval=1, file=sys.stderr, disable=not enabled)
    _OPEN_BARS.add(bar)
    return bar


def close_progress_bars():
    """Close every bar `progress` opened that is still open: what is printed next starts on a
    line of its own, and no bar is redrawn after it."""
    for bar in list(_OPEN_BARS):
        bar.close()
        _OPEN_BARS.discard(bar)


class AverageMeter:
    """Running means of named values (loss terms), e.g. averaged between two log lines."""

    def __init__(self):
        self._sums = {}
        self._counts = {}

    def add(self, values):
        """Add one observation per name; values may be numbers or 0-d tensors. Tensors are
        summed where they are (no GPU synchronisation) and read only by get / pop."""
        for name, value in values.items():
            value = value.detach().float() if hasattr(value, "detach") else float(value)
            self._sums[name] = self._sums.get(name, 0.0) + value
            self._counts[name] = self._counts.get(name, 0) + 1

    def pop(self):
        """Return {name: mean} for every name and start over."""
        means = {n: float(self._sums[n]) / self._counts[n] for n in self._sums}
        self._sums.clear()
        self._counts.clear()
        return means
