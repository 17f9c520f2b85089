"""Helpers a training script calls around its step: flags, seeded batches, the session (lock,
log, resume, checkpoints, NaN guard, signals, validation), DDP. The step itself is written in
each script.

    with TrainingRun(args, model, dataset, device, skipped) as run:
        optimizer = PolyOptimizer(model.get_parameter_groups(), ..., run.max_step, ...)
        run.resume(optimizer)                    # <session>.resume.pt, when there is one
        forward = run.wrap(model)                # DDP under torchrun, --compile
        for batch in run.batches():
            ...forward, losses, backward, optimizer.step()...
            run.log_step(terms)                  # step count, NaN guard, log line
            run.checkpoint()                     # every --ckpt_interval and epoch; on a signal, then exit
        run.finish()                             # <session>.pth, read back; the resume files go

Determinism: the batch order of an epoch and every item's augmentation are functions of
(seed, epoch, index) alone, so a run resumed from any checkpoint continues exactly as the
uninterrupted run would have, whatever the number of loader workers (bit-exact on CPU; CUDA
kernels such as bilinear upsampling's backward are not deterministic).

Under torchrun every rank takes its contiguous share of the same global batch (as DataParallel
scattered it), so --batch_size stays the paper's global batch; rank 0 alone logs and saves.
"""
import contextlib
import fcntl
import functools
import json
import os
import random
import signal
import socket
import threading
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from network import backbone_names
from network.weights import in_model_layout, load_pretrained, load_state_dict_file, state_dict_mismatch
from tool.engine.checkpoint import (
    BackgroundSaver,
    load_training_state,
    rng_state,
    save_state_dict,
    set_rng_state,
    training_state,
)
from tool.engine.files import atomic_path, remove_temporaries, require_writable
from tool.engine.fingerprint import fingerprint, fingerprint_line, precision
from tool.engine.runtime import (
    add_run_flags,
    channels_last_enabled,
    count,
    die_with_parent,
    group,
    model_forward,
    non_negative,
    non_negative_int,
    positive,
    progress,
    to_device,
    usable_cores,
    world,
)

try:
    from tensorboardX import SummaryWriter
except ImportError:  # optional: the text log is enough to follow a run
    SummaryWriter = None

NO_BAD_STEP = torch.iinfo(torch.long).max  # the device-side "first non-finite step" before there is one
UNFREEZE_HELP = ("train BN (batch statistics) and conv1a/b2* too: for random initialisation only; "
                 "the published recipe freezes them under ImageNet weights")
WEIGHTS_HELP = ("ImageNet weights (ResNet-38: the MXNet .params; torchvision backbones: imagenet), a .pth (the "
                "backbone's own state dict, or another stage's checkpoint: its backbone), or none (random init)")


def add_training_flags(parser, network, batch_size, lr, max_epoches=None, max_step=None, momentum=5e-4, workers=8,
                       images=True, unfreeze_help=UNFREEZE_HELP, weights_help=WEIGHTS_HELP):
    """Flags every training script has, with the stage's published defaults (`network`: its
    published --network spelling; the length in `max_epoches`, or in `max_step` where the
    published recipe counts iterations; `workers`: its loader processes; `images`: whether the
    script draws tensorboard images)."""
    opt = group(parser, "optimisation")
    opt.add_argument("--batch_size", type=count, default=batch_size,
                     help="global batch: under torchrun each of N processes takes batch_size / N")
    if max_step is None:
        opt.add_argument("--max_epoches", type=count, default=max_epoches, help="epochs over the training list")
        opt.add_argument("--max_step", type=count, default=None, help="overrides --max_epoches when given")
    else:  # one of the two: argparse refuses both
        length = opt.add_mutually_exclusive_group()
        length.add_argument("--max_step", type=count, default=max_step, help="training steps (the published length)")
        length.add_argument("--max_epoches", type=count, default=None,
                            help="train this many epochs over the training list instead of --max_step steps")
    opt.add_argument("--lr", type=positive, default=lr,
                     help="base learning rate (backbone x1, biases x2, heads x10 / x20), poly decay to 0")
    opt.add_argument("--wt_dec", type=non_negative, default=5e-4, help="weight decay (weights only)")
    opt.add_argument("--momentum", type=non_negative, default=momentum,
                     help="SGD momentum (stages 1 and 3: the published code's effective 5e-4)")
    opt.add_argument("--seed", type=int, default=0, help="seed of the batch order, augmentation and dropout")
    net = group(parser, "network and weights")
    net.add_argument("--network", default=network,
                     help="the stage's network: its published spelling, or seam / aff / seg")
    net.add_argument("--backbone", default=None,
                     help=f"{' | '.join(backbone_names())} or an import path package.module:Class "
                          "(default: resnet38d, the published ResNet-38)")
    net.add_argument("--weights", required=True, help=weights_help)
    net.add_argument("--width", type=positive, default=1.0, help="channel width multiplier (1.0 = published)")
    net.add_argument("--unfreeze", action="store_true", help=unfreeze_help)
    net.add_argument("--no_dropout", action="store_true",
                     help="no dropout anywhere: for short from-scratch runs of slim networks only")
    out = group(parser, "outputs")
    out.add_argument("--resume", default=None,
                     help="resumable checkpoint to continue (default: <session_name>.resume.pt when it exists)")
    out.add_argument("--restart", action="store_true",
                     help="start from step 0 even when <session_name>.resume.pt exists (it is overwritten)")
    out.add_argument("--keep_resume", action="store_true",
                     help="keep <session_name>.resume.pt once the run is finished (it is removed once the final "
                          ".pth is written and read back)")
    out.add_argument("--ckpt_interval", type=count, default=500,
                     help="steps between resumable checkpoints (written on a background thread)")
    out.add_argument("--log_interval", type=count, default=50,
                     help="steps between log lines (loss values are read from the GPU only then)")
    if images:
        out.add_argument("--vis_interval", type=count, default=500, help="steps between tensorboard image grids")
    out.add_argument("--tblog_dir", default=None,
                     help="log and tensorboard folder (default: tblog/ beside --session_name, so ./tblog for "
                          "the published default session)")
    speed = group(parser, "speed")
    speed.add_argument("--num_workers", type=non_negative_int, default=None,
                       help="data loader processes per rank (None: the usable cores, at "
                            f"most 16; published {workers})")
    speed.add_argument("--deterministic", action="store_true",
                       help="PyTorch's deterministic algorithms on CUDA (a warning, not a failure, where an op has "
                            "none); slower, and still not equal across GPU models or library versions")
    add_run_flags(parser, "mixed precision: auto = bf16 on CUDA, off on CPU (off: exact fp32, no TF32)")


def add_validation_flags(parser, what, namesake=False):
    """--val_list / --val_interval: `what` the training script scores there (`namesake`: the
    published script had a --val_list of its own)."""
    group(parser, "data").add_argument(
        "--val_list", default=None,
        help=f"held-out list with ground-truth masks: {what} every --val_interval steps and at the end (log, "
             "tensorboard val/*, <session_name>.val.json); training is unchanged by it"
             + ("; not the published --val_list (voc12/val.txt there, never read)" if namesake else ""))
    group(parser, "outputs").add_argument("--val_interval", type=count, default=1000, help="steps between validations")


# ---------------------------------------------------------------- seeded batches


def _item_seed(seed, epoch, index):
    return (seed * 1_000_003 + epoch * 10_007 + index) % (2**31)


class SeededItems(Dataset):
    """Wraps a dataset so that item (epoch, index) sees global RNGs seeded from (seed, epoch, index)."""

    def __init__(self, dataset, seed):
        self.dataset, self.seed = dataset, seed

    def __getitem__(self, key):
        epoch, index = key
        s = _item_seed(self.seed, epoch, index + 1)
        random.seed(s)
        np.random.seed(s)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(s)  # the CPU generator only: CUDA's drives dropout
            return self.dataset[index]


def step_batches(n, batch_size, seed, start, max_step, rank=0, world_size=1):
    """The batch sampler of the steps [start, max_step), as lists of (epoch, index) keys: epoch e
    is a shuffle seeded from (seed, e) cut into batches, the last partial one dropped; rank r of N
    takes the r-th contiguous 1/N of each. One loader iterates it for the whole run, so its
    workers start once (a generator: one pass, no len())."""
    share = batch_size // world_size
    for step in range(start, max_step):
        epoch, offset = divmod(step, n // batch_size)
        if step == start or offset == 0:  # the epoch's shuffle, once
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_item_seed(seed, epoch, 0))).tolist()
        batch = order[offset * batch_size : (offset + 1) * batch_size]
        yield [(epoch, i) for i in batch[rank * share : (rank + 1) * share]]


# ---------------------------------------------------------------- log and lock


class RunLogger:
    """Text log `<log_dir>/<name>.log` (appended: it starts with the time and every flag, so a
    run can be repeated from its log alone), and TensorBoard events in `<log_dir>/<name>/` when
    tensorboardX is installed. `enabled=False` (torchrun ranks other than 0) writes nothing."""

    def __init__(self, log_dir, name, flags=None, tensorboard=True, enabled=True):
        self._file = self.writer = None
        if not enabled:
            return
        os.makedirs(log_dir, exist_ok=True)
        self._file = open(os.path.join(log_dir, f"{name}.log"), "a", buffering=1)  # line-buffered: readable mid-run
        self._file.write(f"=== {name} started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        self._file.writelines(f"{k}: {v}\n" for k, v in sorted((flags or {}).items()))
        if tensorboard and SummaryWriter is None:
            self.info("warning: tensorboardX is not installed; logging to text only")
        elif tensorboard:
            self.writer = SummaryWriter(os.path.join(log_dir, name))

    def info(self, msg):
        """Print `msg` and append it to the text log."""
        if self._file is not None:
            print(msg, flush=True)
            self.record(msg)

    def record(self, msg):
        """Append `msg` to the text log only (long machine-readable lines)."""
        if self._file is not None:
            self._file.write(f"{msg}\n")

    def scalars(self, step, values):
        for tag, value in values.items() if self.writer is not None else ():
            self.writer.add_scalar(tag, float(value), step)

    def images(self, step, tag, tensor_nchw):
        """(N, C, H, W) images in [0, 1] as one grid (no-op without TensorBoard)."""
        if self.writer is not None:
            from torchvision.utils import make_grid

            grid = make_grid(tensor_nchw.detach().float().cpu(), nrow=min(8, tensor_nchw.shape[0]))
            self.writer.add_image(tag, grid.clamp(0, 1), step)

    def close(self):
        for handle in (self.writer, self._file):
            if handle is not None:
                handle.close()
        self.writer = self._file = None


@contextlib.contextmanager
def session_lock(path):
    """One writer per session: an exclusive flock on `path` (naming its holder), which the kernel
    releases when the holder ends, however it ends (a kill -9 included); removed at the end. On
    a file system without flock (some Lustre, FUSE or CIFS mounts) the run goes on unlocked,
    after a warning; NFS mounted with local locks locks each host on its own."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    while True:
        try:
            f = open(path, "a+")
        except OSError as e:
            raise ValueError(f"{path}: cannot open the session lock ({e.strerror})") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another run"
            f.close()
            raise ValueError(f"{path}: the session is being written by {holder}; wait for that run to end") from None
        except OSError as e:
            print(f"warning: {path}: this file system cannot lock ({e.strerror}): nothing stops a second run of "
                 "this session")
            with f:
                yield
            return
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.stat(path), os.fstat(f.fileno())):
                break  # not a file its last holder removed while this run opened it
        f.close()
    with f:
        f.truncate(0)
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        try:
            yield
        finally:
            os.remove(path)  # still held: a run that opens it now finds it gone and tries again


# ---------------------------------------------------------------- the session


class TrainingRun(contextlib.ExitStack):
    """One training session `<session_name>` on `dataset` (a map-style dataset whose items are
    batched as they are): the checks before anything is written, the lock, log and environment
    line, the resume point, batches, log lines, checkpoints and the final weights. Made, it has
    checked everything; entered, it holds the lock and the log (an ExitStack of what the run
    holds, released as its with block ends).

    Writes `<session_name>.resume.pt` (model, optimiser, step, RNG states; on a background thread)
    every --ckpt_interval steps and at each epoch end, and `<session_name>.pth` (plain CPU state
    dict) at the end; once that is read back, the resume files go (--keep_resume keeps the last).
    Losses stay on the device between log lines; a non-finite loss, found at the next log line or
    checkpoint, stops the run with one line naming the first bad step and the last checkpoint
    written before it (no checkpoint is written after a non-finite loss or with non-finite weights).
    SIGINT / SIGTERM finish the step, checkpoint and exit in one line; a second one stops at once.
    """

    def __init__(self, args, model, dataset, device, skipped=()):
        super().__init__()
        self.args, self.model, self.dataset, self.device, self.skipped = args, model, dataset, device, skipped
        self.rank, self.world_size = world()
        self.is_main = self.rank == 0
        name = args.session_name
        self.resume_path, self.previous_path = name + ".resume.pt", name + ".resume.prev.pt"
        self.final_path = name + ".pth"
        self.log_dir = args.tblog_dir or os.path.join(os.path.dirname(name) or ".", "tblog")
        if args.batch_size % self.world_size:
            raise SystemExit(f"error: --batch_size {args.batch_size} is not divisible by the {self.world_size} "
                             "torchrun processes")
        self.steps_per_epoch = len(dataset) // args.batch_size
        if self.steps_per_epoch == 0:
            raise SystemExit(f"error: --batch_size {args.batch_size} is larger than the training list ({len(dataset)})")
        self.max_step = args.max_step or self.steps_per_epoch * args.max_epoches
        self.channels_last = channels_last_enabled(device, args.channels_last)
        self.step, self.optimizer, self._saved_step, self._last_saved, self._signal = 0, None, None, None, None
        self._first_bad = torch.full((), NO_BAD_STEP, dtype=torch.long, device=device)
        self.saver = BackgroundSaver()
        # --weights into the model and every check, before anything is written
        if args.no_dropout:
            model.disable_dropout()
        self.initialised = "random initialisation (--weights none)"
        if args.weights != "none":
            how = load_pretrained(model, args.weights, allow_pickle=args.allow_pickle)
            self.initialised = f"initialised from {args.weights} ({how})"
        # The resume point: --resume, else the session's own resume file (the same command run
        # again after a kill continues), unless --restart.
        if args.resume and args.restart:
            raise SystemExit("error: --resume and --restart contradict each other")
        self.source = args.resume
        if not (args.resume or args.restart) and os.path.isfile(self.resume_path):
            self.source = self.resume_path
        require_writable([os.path.dirname(os.path.abspath(name)), self.log_dir])
        if self.source is None and not args.restart and os.path.exists(self.final_path):
            raise ValueError(f"{self.final_path}: this session is finished; --restart trains it again (or give "
                             "another --session_name)")
        if self.source is not None:  # read memory-mapped: names and shapes only
            try:
                state = load_training_state(self.source, mmap=True)["model"]
            except (KeyError, TypeError):
                raise ValueError(f"{self.source}: not a resumable checkpoint of this project (no model state)"
                                 ) from None
            problems = state_dict_mismatch(model.state_dict(), in_model_layout(model, state))
            if problems:
                raise ValueError(f"{self.source}: not a checkpoint of this network ({problems})")

    def __enter__(self):
        """Every check has passed: from here on the run writes, the lock first. What this takes is
        released as the with block ends (at once on an error here)."""
        args, name = self.args, self.args.session_name
        with contextlib.ExitStack() as stack:
            if self.is_main:
                stack.enter_context(session_lock(name + ".lock"))
            self.logger = stack.enter_context(contextlib.closing(
                RunLogger(self.log_dir, name.replace("/", "_"), vars(args), enabled=self.is_main)))
            environment = fingerprint(precision(self.device, args.amp), self.world_size, args.seed, args.deterministic)
            self.logger.record("environment: " + json.dumps(environment))
            self.logger.info(f"environment: {fingerprint_line(environment)}")
            for path in (self.final_path, self.resume_path, self.previous_path) if self.is_main else ():
                for stale in remove_temporaries(os.path.dirname(os.path.abspath(path)), of=path):
                    self.logger.info(f"removed {stale}, left by an interrupted checkpoint write")
            if self.source and not args.resume:
                self.logger.info(f"found {self.source}: continuing from it (--restart starts over)")
            if not self.source:
                self.logger.info(self.initialised)
            to_device(self.model, self.device, self.channels_last)  # before the optimiser is built
            self.enter_context(stack.pop_all())  # the lock, the log: released when the with block ends
        return super().__enter__()

    def resume(self, optimizer):
        """Continue from the resume point, if there is one: weights, `optimizer` (the one this run
        steps, kept for its checkpoints), step and RNG states."""
        self.optimizer = optimizer
        if self.source is None:
            return
        path, state = self.source, load_training_state(self.source)
        self.model.load_state_dict(in_model_layout(self.model, state["model"]))
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (KeyError, ValueError) as e:  # e.g. a run of the --no_pcm ablation: other trainable parameters
            raise ValueError(f"{path}: its optimiser state does not fit this run ({str(e).strip() or 'no optimiser'})"
                             ) from None
        for group_ in optimizer.param_groups:  # the fused flag travels in the state: this device's
            group_["fused"] = self.device.type == "cuda" or None
        self.step = self._saved_step = int(state["step"])
        self._last_saved = path
        ranks = state.get("rng_ranks")
        if ranks is not None and len(ranks) == self.world_size:
            set_rng_state(ranks[self.rank])  # each process its own dropout stream
        else:
            set_rng_state(state["rng"])
            if self.world_size > 1:  # another process count
                torch.manual_seed(self.args.seed + 7919 * self.rank + self.step)
        self.logger.info(f"resumed from {path} at step {self.step}")

    def wrap(self, module):
        """`module` (the model, or a wrapper that runs both SEAM branches or the BN groups in one
        call) as the step calls it: in DDP under torchrun (once the weights are final: it
        broadcasts rank 0's), then compiled with --compile."""
        if self.world_size > 1:
            module = DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda"
                                             else None)
            if self.source is None and self.rank > 0:  # rank 0's weights are everyone's now: own dropout masks
                torch.manual_seed(self.args.seed + 7919 * self.rank)
        if self.args.compile:
            torch._dynamo.config.suppress_errors = True  # what it cannot compile runs eagerly, with its warning
            module = torch.compile(module)
        return module

    def batches(self):
        """The loader over the remaining steps (pinned batches, workers started once, prefetching);
        the model in training mode."""
        for line in self.skipped:
            self.logger.info(f"skipped {line}")
        procs = f", {self.world_size} processes" if self.world_size > 1 else ""
        self.logger.info(f"{len(self.dataset)} images, {self.max_step} steps, device {self.device}{procs}")
        # SIGINT / SIGTERM from here on end the step and checkpoint (before: they stop at once);
        # the handlers go back once the last checkpoint being written is complete.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.callback(signal.signal, sig, signal.signal(sig, self._on_signal))
        self.callback(self.saver.wait)  # checkpoints are written only from here on: complete before all else
        args = self.args
        workers = min(16, usable_cores()) if args.num_workers is None else args.num_workers
        self.model.train()
        self.bar = progress(self.max_step, desc=os.path.basename(args.session_name), enabled=self.is_main)
        self.bar.update(self.step)
        self._t0, self._steps, self._sums = time.perf_counter(), 0, {}
        return DataLoader(
            SeededItems(self.dataset, args.seed), num_workers=workers, pin_memory=self.device.type == "cuda",
            batch_sampler=step_batches(len(self.dataset), args.batch_size, args.seed, self.step, self.max_step,
                                       self.rank, self.world_size),
            prefetch_factor=4 if workers else None, worker_init_fn=functools.partial(die_with_parent, os.getpid()),
            # Items are seeded by SeededItems; a private generator keeps the loader from
            # drawing on the global RNG, which must follow the same sequence after a resume.
            generator=torch.Generator().manual_seed(args.seed),
        )  # fmt: skip

    def due(self, interval):
        """Whether the step just taken is one of every `interval`, or the last."""
        return self.step % interval == 0 or self.step == self.max_step

    def log_step(self, terms):
        """After optimizer.step(): count the step, keep its loss terms (a dict of scalar tensors
        with `loss`), and at --log_interval write the means since the last line."""
        # Recorded on the device, read at the next log line or checkpoint: no sync per step.
        self._first_bad = torch.where(torch.isfinite(terms["loss"].detach()), self._first_bad,
                                      self._first_bad.clamp(max=self.step))
        self.step += 1
        self._steps += 1
        for name, value in terms.items():  # every step has the same terms
            self._sums[name] = self._sums.get(name, 0.0) + value.detach().float()
        self.bar.update(1)
        if not self.due(self.args.log_interval):
            return
        self.check_finite()
        rate = self._steps * self.args.batch_size / (time.perf_counter() - self._t0)
        means = {name: float(total) / self._steps for name, total in self._sums.items()}
        self._t0, self._steps, self._sums = time.perf_counter(), 0, {}
        lr = self.optimizer.param_groups[0]["lr"]
        self.bar.set_postfix({**{k: f"{v:.4f}" for k, v in means.items()}, "img/s": f"{rate:.1f}"})
        self.logger.info(f"step {self.step}/{self.max_step} " + " ".join(f"{k}={v:.4f}" for k, v in means.items())
                         + f" lr={lr:.3g} img/s={rate:.1f}")
        self.logger.scalars(self.step, {**{f"loss/{k}": v for k, v in means.items()}, "lr": lr})

    def check_finite(self):
        """Stop (SystemExit, one line) if a loss since the start was non-finite, on any rank: one GPU sync."""
        first_bad = self._first_bad.clone()
        if self.world_size > 1:  # every rank stops together, or the others would wait forever
            torch.distributed.all_reduce(first_bad, op=torch.distributed.ReduceOp.MIN)
        bad = int(first_bad)
        if bad == NO_BAD_STEP:
            return
        msg = f"error: non-finite loss at step {bad}; last good checkpoint: {self._last_saved or 'none written'}"
        if bad == self._saved_step and os.path.exists(self.previous_path):
            # The loss of step `bad` came from the weights of the last checkpoint (finite, but
            # perhaps 1e28): resuming from them would fail at once, so the one before comes back.
            if self.is_main:
                self.saver.wait()
                os.replace(self.previous_path, self.resume_path)
            msg = (f"error: non-finite loss at step {bad}, computed from the step-{bad} checkpoint's weights; "
                   f"{self.resume_path} is the checkpoint before it again")
        self.logger.info(msg)
        raise SystemExit(msg)

    def validate(self, score, dataset, data, *extra):
        """Every --val_interval steps and at the end, given a held-out `dataset` (None: never):
        `score(forward, dataset, data, device, *extra)` -> {name: {"miou": ..., ...}} with the inference
        forward (runtime.model_forward), on every rank (each scores its shard and the confusions are
        summed: no rank waits for the whole list), in eval mode, without changing training: every RNG
        stream, the BN statistics and the loader order stay as they are, and the model is in training
        mode again after. Logs a line, tensorboard val/<name>_miou, and appends to <session_name>.val.json."""
        if dataset is None or not self.due(self.args.val_interval):
            return
        forward = model_forward(self.model, self.device, self.args.amp, self.channels_last)
        states = rng_state()  # every stream, as a checkpoint keeps them: put back after
        # Each held-out image has its own size: no cuDNN autotuning per shape, and the algorithms
        # infer_seam.py / infer_seg.py run with (they never autotune), so the scores agree.
        autotune, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
        self.model.eval()
        try:
            scores = score(forward, dataset, data, self.device, *extra)
        finally:
            self.model.train()
            set_rng_state(states)
            torch.backends.cudnn.benchmark = autotune
        if not self.is_main:
            return
        self.logger.info(f"val step {self.step}: " + ", ".join(
            f"{name} mIoU {s['miou']:.2f}" + (f" (t={s['t']:.2f})" if s.get("t") is not None else "")
            for name, s in scores.items()))
        self.logger.scalars(self.step, {f"val/{name}_miou": s["miou"] for name, s in scores.items()})
        path, history = self.args.session_name + ".val.json", []
        if os.path.exists(path):
            with open(path) as f:
                history = [h for h in json.load(f) if h["step"] < self.step]  # a resumed run rewrites what follows
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            json.dump(history + [{"step": self.step, **scores}], f, indent=1)

    def _on_signal(self, signum, frame):
        if self._signal is not None:
            raise KeyboardInterrupt
        self._signal = signum

    def _interrupted(self):
        """Whether a signal asked to stop (on any rank: under torchrun the ranks agree at log lines)."""
        if self.world_size == 1:
            return self._signal is not None
        if self.step % self.args.log_interval:
            return False
        flag = torch.tensor(int(self._signal is not None), device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag)

    def checkpoint(self):
        """At the end of a step: the resumable checkpoint every --ckpt_interval steps and at each
        epoch end; after SIGINT / SIGTERM, one (if not just written), then a one-line exit."""
        if self.step % self.args.ckpt_interval == 0 or self.step % self.steps_per_epoch == 0:
            self._save()
        if self.step < self.max_step and self._interrupted():
            if self._saved_step != self.step:
                self._save()
            self.saver.wait()
            self.bar.close()
            msg = (f"interrupted by {signal.Signals(self._signal or signal.SIGTERM).name} at step {self.step}: "
                   f"wrote {self.resume_path}; run the same command to continue")
            self.logger.info(msg)
            raise SystemExit(msg)

    def _save(self):
        self.check_finite()
        if not bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()):
            msg = f"error: non-finite weights at step {self.step}; last good checkpoint: {self._last_saved}"
            self.logger.info(msg)
            raise SystemExit(msg)
        rng_ranks = None
        if self.world_size > 1:  # every rank's RNG states, so that each resumes its own dropout stream
            rng_ranks = [None] * self.world_size
            torch.distributed.all_gather_object(rng_ranks, rng_state())
        if self.is_main:
            state = training_state(self.model, self.optimizer, self.step)
            if rng_ranks is not None:
                state["rng_ranks"] = rng_ranks
            self.saver.save(state, self.resume_path, previous=self.previous_path)
            self._last_saved = self.resume_path
        self._saved_step = self.step

    def finish(self):
        """The final `<session_name>.pth`, read back whole before the resume files go."""
        self.bar.close()
        if self._saved_step != self.step:
            self._save()
        if self.is_main:
            save_state_dict(self.model.state_dict(), self.final_path)
            self.saver.wait()
            load_state_dict_file(self.final_path)
            for path in [self.previous_path] + ([] if self.args.keep_resume else [self.resume_path]):
                if os.path.exists(path):  # only a failure or a longer run needs them
                    os.remove(path)
            self.logger.info(f"wrote {self.final_path}")
