"""What the inference scripts share: their flags, output folders checked first, the loader, the
GPU-to-host overlap, a bounded pool for the per-image outputs (CRF, files), and a stop on
SIGINT / SIGTERM that leaves every written file whole.

Helper processes end with the process that started them, a kill -9 included
(tool.engine.runtime.die_with_parent): no orphans holding memory after a killed run.
"""
import concurrent.futures as cf
import contextlib
import functools
import multiprocessing
import os
import signal
import threading
import time

import torch
from torch.utils.data import DataLoader

from tool.engine.files import remove_temporaries, require_writable
from tool.engine.runtime import (
    add_run_flags,
    die_with_parent,
    group,
    is_main,
    non_negative_int,
    progress,
    shard,
    usable_cores,
)


def add_inference_flags(parser, weights_help, network, infer_list_help, amp_help, published_workers=None):
    """Flags every inference script has (the data set's come from voc12.dataset; `published_workers`:
    the published loader processes, where they were not 8)."""
    weights = group(parser, "network and weights")
    weights.add_argument("--weights", required=True, help=weights_help)
    weights.add_argument("--network", default=network,
                         help="the stage's network, as the published command lines give it; the network built "
                              "(backbone, width, classes) is the one the checkpoint records")
    group(parser, "data").add_argument("--infer_list", default=None, help=infer_list_help)
    speed = group(parser, "speed")
    speed.add_argument("--num_workers", type=non_negative_int, default=8, help="data loader workers" + (
        f" (published: {published_workers})" if published_workers else ""))
    speed.add_argument("--crf_workers", type=non_negative_int, default=None,
                       help="CRF processes, where a CRF runs (default: the cores this process may use, less the loader "
                            "workers)")
    group(parser, "outputs").add_argument("--overwrite", action="store_true",
                                          help="recompute images whose outputs exist")
    add_run_flags(parser, amp_help, compile_flag=False)


def prepare_outputs(folders):
    """Before the work: the output folders can be written (one line if not), and the write
    temporaries a killed run left there go (older than a minute, so not those another torchrun
    rank is writing now)."""
    require_writable(folders)
    for folder in folders:
        for path in remove_temporaries(folder, before=time.time() - 60):
            print(f"removed {path}, left by an interrupted write")


def images_to_do(listed, complete, overwrite):
    """This rank's share of `listed`, less the images `complete` says are written (none with
    `overwrite`). Under torchrun each rank takes every N-th image of the whole list, then skips
    what exists: filtering first would let ranks that list at different moments disagree on the
    shares."""
    todo = [name for name in shard(listed) if overwrite or not complete(name)]
    print(f"{len(todo)} of {len(listed)} images to process")
    return todo


def infer_all(dataset, outputs_on_device, args, device, crf, desc, listed, complete, folder):
    """The loop of an inference script over `dataset` (one item at a time, pinned for the GPU,
    loader workers that end with this process): `outputs_on_device(items)` yields per image
    ((writer, *arguments), device tensor), and writer(*arguments, host array) writes the image's
    files on the output pool: CRF processes when `crf` (--crf_workers, default: the cores this
    process may use, less the loader's), else one thread that writes files, while the GPU
    computes the next image. SIGINT / SIGTERM stop it after the image at hand, in one line
    counting the `listed` images that are `complete` (Interruption.stop)."""
    loader = DataLoader(dataset, batch_size=None, num_workers=args.num_workers, pin_memory=device.type == "cuda",
                        worker_init_fn=functools.partial(die_with_parent, os.getpid()))
    workers = max(1, usable_cores() - args.num_workers) if args.crf_workers is None else args.crf_workers
    with Interruption() as interruption:  # still on while the written images are counted
        with (OutputPool(workers) if crf else OutputPool(1, threads=True)) as pool:
            items = progress(loader, desc=desc, enabled=is_main())
            for (writer, *arguments), host in lagged_to_host(outputs_on_device(items), device):
                pool.submit(writer, *arguments, host.numpy())
                if interruption.signal:
                    break
        interruption.stop(sum(map(complete, listed)), len(listed), folder)


def lagged_to_host(items, device):
    """(meta, device tensor) pairs -> (meta, CPU tensor) pairs, one item late: each copy to the
    host starts asynchronously and is collected after the next item's GPU work is queued, so
    the GPU computes image i+1 while the host post-processes and writes image i."""
    pending = None
    for meta, tensor in items:
        done = None
        if device.type == "cuda":
            tensor = tensor.to("cpu", non_blocking=True)  # pinned, asynchronous
            done = torch.cuda.Event()
            done.record()
        if pending is not None:
            yield _collect(*pending)
        pending = (meta, tensor, done)
    if pending is not None:
        yield _collect(*pending)


def _collect(meta, host, done):
    if done is not None:
        done.synchronize()
    return meta, host


class HelperPool(cf.ProcessPoolExecutor):
    """A process pool of `workers` helpers that end with this process and leave Ctrl-C to it
    ("spawn" is safe after CUDA started; None is the platform's default). Helpers start (inside
    `submit`) with Ctrl-C blocked, and die_with_parent ignores it before unblocking: one pressed
    while a spawned interpreter starts up (seconds) would otherwise kill it half-started and break
    the pool."""

    def __init__(self, workers, start_method=None):
        super().__init__(workers, multiprocessing.get_context(start_method), die_with_parent, (os.getpid(),))

    def submit(self, fn, /, *args, **kwargs):
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return super().submit(fn, *args, **kwargs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def __exit__(self, exc_type, *exc):
        self.shutdown(wait=True, cancel_futures=exc_type is not None)  # fail fast: the waiting jobs go


class OutputPool(contextlib.AbstractContextManager):
    """Where an inference script hands each image's outputs: `workers` helper processes (the
    CRF; spawned, as is safe after CUDA started), threads with `threads=True` (file writes
    release the GIL), or inline with 0.

    `submit` blocks while 2 jobs per worker are pending, so memory stays bounded when a fast
    producer (the GPU) feeds slow consumers (the CRF). A job that raised raises at the next
    `submit` or on leaving the block; running jobs always finish (no helper is killed while it
    writes), waiting ones are dropped after an error.
    """

    def __init__(self, workers, threads=False):
        self.limit, self.pending = 2 * max(1, workers), set()
        self.executor = None
        if workers:
            self.executor = cf.ThreadPoolExecutor(workers) if threads else HelperPool(workers, "spawn")

    def submit(self, fn, *args):
        if self.executor is None:
            return fn(*args)
        full = len(self.pending) >= self.limit  # then wait for a job to end, else only collect those that did
        done, self.pending = cf.wait(self.pending, timeout=None if full else 0, return_when=cf.FIRST_COMPLETED)
        for future in done:
            future.result()  # a failed job's exception
        self.pending.add(self.executor.submit(fn, *args))

    def __exit__(self, exc_type, *exc):
        if self.executor is None:
            return
        try:
            if exc_type is None:
                for future in cf.wait(self.pending).done:
                    future.result()  # a failed job's exception
        finally:
            self.executor.shutdown(wait=True, cancel_futures=True)


class Interruption:
    """SIGINT / SIGTERM during an inference loop: the loop checks `signal` (None until one came)
    after each image and stops; what was handed to the writers is finished (every file atomic,
    none partial), the rest is left for the same command run again. A second signal acts as it
    would have."""

    def __init__(self):
        self.signal, self._previous = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum, frame):
        self.signal = signum
        self.__exit__()

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def stop(self, written, total, folder):
        """After the writers are done: the one-line exit of an interrupted run (nothing if none)."""
        if self.signal is not None:
            raise SystemExit(f"interrupted by {signal.Signals(self.signal).name}: {written} of {total} images "
                             f"written to {folder}; run the same command to continue")
