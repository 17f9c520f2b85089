"""The training loop shared by every stage: device, seeding, mixed precision, deterministic
batches, resumable checkpoints, NaN guard, logging, torchrun DDP. Model- and dataset-agnostic.

Determinism: the batch order of an epoch and every item's augmentation are functions of
(seed, epoch, index) alone, so a run resumed from any checkpoint continues exactly as the
uninterrupted run would have, whatever the number of loader workers (bit-exact on CPU; CUDA
kernels such as bilinear upsampling's backward are not deterministic).

Under torchrun every rank takes its contiguous share of the same global batch (as DataParallel
scattered it), so --batch_size stays the paper's global batch; rank 0 alone logs and saves.
"""
import contextlib
import dataclasses
import functools
import json
import os
import random
import signal
import threading
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from tool.checkpoint import (
    BackgroundSaver,
    in_model_layout,
    load_state_dict_file,
    load_training_state,
    rng_state,
    save_state_dict,
    set_rng_state,
    state_dict_mismatch,
    training_state,
)
from tool.cli import add_debug_flag, count, non_negative, non_negative_int, positive
from tool.distributed import world
from tool.fileio import atomic_path, remove_temporaries, require_writable
from tool.fingerprint import fingerprint, fingerprint_line, precision
from tool.lock import session_lock
from tool.logger import AverageMeter, RunLogger, progress
from tool.optim import PolyOptimizer
from tool.procs import die_with_parent
from tool.runtime import (
    SKIP_BAD_HELP,
    add_speed_flags,
    channels_last_enabled,
    default_loader_workers,
    to_device,
)

NO_BAD_STEP = torch.iinfo(torch.long).max  # the device-side "first non-finite step" before there is one
UNFREEZE_HELP = ("train BN (batch statistics) and conv1a/b2* too: for random initialisation only; "
                 "the published recipe freezes them under ImageNet weights")


WEIGHTS_HELP = ("ImageNet weights (ResNet-38: the MXNet .params; torchvision backbones: imagenet), a .pth (the "
                "backbone's own state dict, or another stage's checkpoint: its backbone), or none (random init)")


def add_validation_flags(parser, what):
    """--val_list / --val_interval: `what` the training script scores there."""
    parser.add_argument("--val_list", default=None,
                        help=f"held-out list with ground-truth masks: {what} every --val_interval steps and at the "
                             "end (log, tensorboard val/*, <session_name>.val.json); training is unchanged by it")
    parser.add_argument("--val_interval", type=count, default=1000, help="steps between validations")


def add_training_flags(parser, batch_size, max_epoches, lr, wt_dec=5e-4, momentum=5e-4, unfreeze_help=UNFREEZE_HELP,
                       weights_help=WEIGHTS_HELP):
    """Flags every training script has, with the stage's published defaults."""
    parser.add_argument("--batch_size", type=count, default=batch_size,
                        help="global batch: under torchrun each of N processes takes batch_size / N")
    parser.add_argument("--max_epoches", type=count, default=max_epoches, help="epochs over the training list")
    parser.add_argument("--max_step", type=count, default=None, help="overrides --max_epoches when given")
    parser.add_argument("--lr", type=positive, default=lr,
                        help="base learning rate (backbone x1, biases x2, heads x10 / x20), poly decay to 0")
    parser.add_argument("--wt_dec", type=non_negative, default=wt_dec, help="weight decay (weights only)")
    parser.add_argument("--momentum", type=non_negative, default=momentum,
                        help="SGD momentum (stages 1 and 3: the published code's effective 5e-4)")
    parser.add_argument("--num_workers", type=non_negative_int, default=None,
                        help="data loader processes per rank (None: the usable cores, at most 16; published 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batch order, augmentation and dropout")
    parser.add_argument("--deterministic", action="store_true",
                        help="PyTorch's deterministic algorithms on CUDA (a warning, not a failure, where an op has "
                             "none); slower, and still not equal across GPU models or library versions")
    add_speed_flags(parser)
    parser.add_argument("--resume", default=None,
                        help="resumable checkpoint to continue (default: <session_name>.resume.pt when it exists)")
    parser.add_argument("--restart", action="store_true",
                        help="start from step 0 even when <session_name>.resume.pt exists (it is overwritten)")
    parser.add_argument("--keep_resume", action="store_true",
                        help="keep <session_name>.resume.pt once the run is finished (it is removed once the final "
                             ".pth is written and read back)")
    parser.add_argument("--ckpt_interval", type=count, default=500,
                        help="steps between resumable checkpoints (written on a background thread)")
    parser.add_argument("--log_interval", type=count, default=50,
                        help="steps between log lines (loss values are read from the GPU only then)")
    parser.add_argument("--vis_interval", type=count, default=500, help="steps between tensorboard image grids")
    parser.add_argument("--tblog_dir", default=None,
                        help="log and tensorboard folder (default: tblog/ beside --session_name, so ./tblog for "
                             "the published default session)")
    parser.add_argument("--width", type=positive, default=1.0, help="channel width multiplier (1.0 = published)")
    parser.add_argument("--unfreeze", action="store_true", help=unfreeze_help)
    parser.add_argument("--no_dropout", action="store_true",
                        help="no dropout anywhere: for short from-scratch runs of slim networks only")
    parser.add_argument("--weights", required=True, help=weights_help)
    parser.add_argument("--allow_pickle", action="store_true", help="allow legacy pickled .pth weights")
    parser.add_argument("--skip_bad_images", action="store_true", help=SKIP_BAD_HELP)
    add_debug_flag(parser)


def _item_seed(seed, epoch, index):
    return (seed * 1_000_003 + epoch * 10_007 + index) % (2**31)


def epoch_batches(n, batch_size, seed, epoch):
    """The epoch's batches of (epoch, index) keys: a seeded shuffle, last partial batch dropped."""
    g = torch.Generator().manual_seed(_item_seed(seed, epoch, 0))
    order = torch.randperm(n, generator=g).tolist()
    return [[(epoch, i) for i in order[b * batch_size : (b + 1) * batch_size]] for b in range(n // batch_size)]


class SeededItems(Dataset):
    """Wraps a dataset so that item (epoch, index) sees global RNGs seeded from (seed, epoch, index)."""

    def __init__(self, dataset, seed):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        s = _item_seed(self.seed, epoch, index + 1)
        random.seed(s)
        np.random.seed(s)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(s)  # the CPU generator only: CUDA's drives dropout
            return self.dataset[index]


class StepBatches:
    """Batch sampler over the steps [start, max_step): epoch e's batches are
    epoch_batches(n, batch_size, seed, e); rank r of N takes the r-th contiguous 1/N of each.
    One loader iterates it for the whole run, so its workers start once."""

    def __init__(self, n, batch_size, seed, start, max_step, rank=0, world_size=1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.max_step = start, max_step
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = n // batch_size

    def __len__(self):
        return max(0, self.max_step - self.start)

    def __iter__(self):
        step, share = self.start, self.batch_size // self.world_size
        while step < self.max_step:
            epoch, offset = divmod(step, self.steps_per_epoch)
            for batch in epoch_batches(self.n, self.batch_size, self.seed, epoch)[offset:]:
                if step >= self.max_step:
                    return
                yield batch[self.rank * share : (self.rank + 1) * share]
                step += 1


@dataclasses.dataclass
class TrainConfig:
    """What the training loop needs, from a training script's flags (tool.cli.from_flags): the
    loop reads no argparse namespace. `flags` (every flag, for the log head) is informational."""

    session_name: str
    batch_size: int
    max_epoches: int
    max_step: int | None
    lr: float
    wt_dec: float
    momentum: float
    seed: int
    weights: str
    num_workers: int | None = None
    resume: str | None = None
    restart: bool = False
    keep_resume: bool = False
    ckpt_interval: int = 500
    log_interval: int = 50
    vis_interval: int = 500
    val_interval: int = 1000
    tblog_dir: str | None = None
    compile: bool = False
    channels_last: str = "auto"
    amp: str = "auto"
    deterministic: bool = False
    no_dropout: bool = False
    allow_pickle: bool = False
    flags: dict = dataclasses.field(default_factory=dict)

    @property
    def resume_path(self):
        return self.session_name + ".resume.pt"

    @property
    def previous_path(self):  # the resume checkpoint before the last
        return self.session_name + ".resume.prev.pt"

    @property
    def final_path(self):
        return self.session_name + ".pth"

    @property
    def log_dir(self):
        """--tblog_dir, else tblog/ in the session's folder: a run writes under its own work directory."""
        return self.tblog_dir or os.path.join(os.path.dirname(self.session_name) or ".", "tblog")

    @property
    def log_name(self):
        return self.session_name.replace("/", "_")

    def resume_source(self):
        """The checkpoint this run continues from: --resume, else the session's own resume file
        (the same command run again after a kill continues), unless --restart."""
        if self.resume and self.restart:
            raise SystemExit("error: --resume and --restart contradict each other")
        if self.resume or self.restart or not os.path.isfile(self.resume_path):
            return self.resume
        return self.resume_path


class Trainer:
    """Runs `step_fn(batch, draw) -> (terms, drawn)` for max_step steps: `terms` a dict of
    scalar loss tensors with `loss`; when `draw` is true (a step whose outputs are drawn to
    tensorboard), `drawn` holds what `vis_fn(step, drawn)` needs, else None.

    `forward`: the module the step calls (the model, or a wrapper running both SEAM branches or
    the BN groups in one call); the Trainer wraps it in DDP under torchrun and compiles it with
    --compile. The step reaches it as `trainer.forward`.

    Writes `<session_name>.resume.pt` (model, optimiser, step, RNG states; on a background thread)
    every `ckpt_interval` steps and at each epoch end, and `<session_name>.pth` (plain CPU state
    dict) at the end; once that is read back, the resume files go (--keep_resume keeps the last).
    Losses stay on the device between log lines; a non-finite loss, found at the next log line or
    checkpoint, stops the run with one line naming the first bad step and the last checkpoint
    written before it (no checkpoint is written after a non-finite loss or with non-finite weights).
    """

    def __init__(self, config, model, dataset, logger, device, forward=None, lr_horizon_extra=0):
        self.config, self.model, self.logger, self.device = config, model, logger, device
        self.channels_last = channels_last_enabled(device, config.channels_last)
        self.rank, self.world_size = world()
        self.is_main = self.rank == 0
        if config.batch_size % self.world_size:
            raise SystemExit(f"error: --batch_size {config.batch_size} is not divisible by the {self.world_size} "
                             "torchrun processes")
        self.dataset = SeededItems(dataset, config.seed)
        self.steps_per_epoch = len(dataset) // config.batch_size
        if self.steps_per_epoch == 0:
            raise SystemExit(f"error: --batch_size {config.batch_size} is larger than the training list "
                             f"({len(dataset)})")
        self.max_step = config.max_step or self.steps_per_epoch * config.max_epoches
        self.optimizer = PolyOptimizer(
            model.get_parameter_groups(), config.lr, config.wt_dec, self.max_step, config.momentum,
            horizon=self.max_step + lr_horizon_extra, fused=device.type == "cuda",
        )
        self.resume_path, self.previous_path = config.resume_path, config.previous_path
        self.final_path = config.final_path
        self.step = 0
        self.forward = forward if forward is not None else model
        self.saver = BackgroundSaver()
        self._last_saved = None
        self._saved_step = None
        self.resumed = False
        self._signal = None
        self._first_bad = torch.full((), NO_BAD_STEP, dtype=torch.long, device=device)

    def resume(self, path):
        state = load_training_state(path)
        problems = state_dict_mismatch(self.model.state_dict(), in_model_layout(self.model, state.get("model", {})))
        if problems:
            raise ValueError(f"{path}: not a checkpoint of this network ({problems})")
        self.model.load_state_dict(in_model_layout(self.model, state["model"]))
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, ValueError) as e:  # e.g. a run of the --no_pcm ablation: other trainable parameters
            raise ValueError(f"{path}: its optimiser state does not fit this run ({str(e).strip() or 'no optimiser'})"
                             ) from None
        self.step = int(state["step"])
        ranks = state.get("rng_ranks")
        if ranks is not None and len(ranks) == self.world_size:
            set_rng_state(ranks[self.rank])  # each process its own dropout stream
        else:
            set_rng_state(state["rng"])
            if self.world_size > 1:
                torch.manual_seed(self.config.seed + 7919 * self.rank + self.step)  # another process count
        # the optimiser's fused flag travels in its state: keep the one for this device
        for group in self.optimizer.param_groups:
            group["fused"] = self.device.type == "cuda" or None
        self.resumed = True
        self._last_saved = path
        self._saved_step = self.step
        self.logger.info(f"resumed from {path} at step {self.step}")

    def wrap(self, compile_model=False):
        """DDP under torchrun (after the weights are final: it broadcasts rank 0's), then compile."""
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.forward, device_ids=ids)
            if not self.resumed and self.rank > 0:  # rank 0's weights are everyone's now: own dropout masks
                torch.manual_seed(self.config.seed + 7919 * self.rank)
        if compile_model:
            # torch.compile's own fallback: code it cannot compile runs eagerly, with its warning
            torch._dynamo.config.suppress_errors = True
            self.forward = torch.compile(self.forward)

    def check_finite(self):
        """Stop (SystemExit, one line) if a loss since the start was non-finite, on any rank: one GPU sync."""
        first_bad = self._first_bad.clone()
        if self.world_size > 1:  # every rank stops together, or the others would wait forever
            torch.distributed.all_reduce(first_bad, op=torch.distributed.ReduceOp.MIN)
        bad = int(first_bad)
        if bad == NO_BAD_STEP:
            return
        last = self._last_saved or "none written"
        msg = f"error: non-finite loss at step {bad}; last good checkpoint: {last}"
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

    def save(self):
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

    def loader(self):
        """One loader for the remaining steps: pinned batches, workers started once, prefetching."""
        plan = StepBatches(len(self.dataset), self.config.batch_size, self.config.seed, self.step, self.max_step,
                           self.rank, self.world_size)
        workers = default_loader_workers() if self.config.num_workers is None else self.config.num_workers
        return DataLoader(
            self.dataset, batch_sampler=plan, num_workers=workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None, worker_init_fn=functools.partial(die_with_parent, os.getpid()),
            # Items are seeded by SeededItems; a private generator keeps the loader from
            # drawing on the global RNG, which must follow the same sequence after a resume.
            generator=torch.Generator().manual_seed(self.config.seed),
        )  # fmt: skip

    def run(self, step_fn, vis_fn=None, val_fn=None):
        """`val_fn()` (with --val_interval): {name: {"miou": ..., ...}} on the held-out list, run in
        eval mode every --val_interval steps and at the end, leaving training as it was."""
        self.val_fn = val_fn
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            self._run(step_fn, vis_fn)
        finally:
            self.saver.wait()  # a checkpoint being written is complete before anything else happens
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def validate(self):
        """Score `val_fn` (rank 0) without changing training: the RNG streams (every one), BN
        statistics (eval mode) and the loader order stay as they are; the model is in training
        mode again after. Logs a line, tensorboard scalars val/<name>, and appends the scores to
        <session_name>.val.json."""
        if not self.is_main:
            return
        states = random.getstate(), np.random.get_state()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            self.model.eval()
            try:
                scores = self.val_fn()
            finally:
                self.model.train()
                random.setstate(states[0])
                np.random.set_state(states[1])
        self.logger.info(f"val step {self.step}: " + ", ".join(
            f"{name} mIoU {s['miou']:.2f}" + (f" (t={s['t']:.2f})" if s.get("t") is not None else "")
            for name, s in scores.items()))
        self.logger.scalars(self.step, {f"val/{name}_miou": s["miou"] for name, s in scores.items()})
        path = self.config.session_name + ".val.json"
        history = []
        if os.path.exists(path):
            with open(path) as f:
                history = [h for h in json.load(f) if h["step"] < self.step]  # a resumed run rewrites what follows
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            json.dump(history + [{"step": self.step, **scores}], f, indent=1)

    def _on_signal(self, signum, frame):
        """SIGINT / SIGTERM: finish the step, checkpoint, exit; a second one stops at once."""
        if self._signal is not None:
            raise KeyboardInterrupt
        self._signal = signum

    def _interrupted(self):
        """Whether a signal asked to stop (on any rank: under torchrun the ranks agree at log lines)."""
        if self.world_size == 1:
            return self._signal is not None
        if self.step % self.config.log_interval:
            return False
        flag = torch.tensor(int(self._signal is not None), device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag)

    def _run(self, step_fn, vis_fn):
        config, meter = self.config, AverageMeter()
        self.model.train()
        bar = progress(self.max_step, desc=os.path.basename(config.session_name), enabled=self.is_main)
        bar.update(self.step)
        t0, images = time.perf_counter(), 0
        for batch in self.loader():
            draw = vis_fn is not None and self.is_main and (self.step + 1) % config.vis_interval == 0
            terms, drawn = step_fn(batch, draw)
            loss = terms["loss"]
            # Recorded on the device, read at the next log line or checkpoint: no sync per step.
            self._first_bad = torch.where(torch.isfinite(loss.detach()), self._first_bad,
                                          self._first_bad.clamp(max=self.step))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            images += config.batch_size
            meter.add(terms)
            bar.update(1)
            if self.step % config.log_interval == 0 or self.step == self.max_step:
                self.check_finite()
                rate = images / (time.perf_counter() - t0)
                t0, images = time.perf_counter(), 0
                means = meter.pop()
                lr = self.optimizer.param_groups[0]["lr"]
                bar.set_postfix({**{k: f"{v:.4f}" for k, v in means.items()}, "img/s": f"{rate:.1f}"})
                self.logger.info(f"step {self.step}/{self.max_step} "
                                 + " ".join(f"{k}={v:.4f}" for k, v in means.items())
                                 + f" lr={lr:.3g} img/s={rate:.1f}")
                self.logger.scalars(self.step, {**{f"loss/{k}": v for k, v in means.items()}, "lr": lr})
            if draw:
                vis_fn(self.step, drawn)
            if self.val_fn is not None and (self.step % config.val_interval == 0 or self.step == self.max_step):
                self.validate()
            if self.step % config.ckpt_interval == 0 or self.step % self.steps_per_epoch == 0:
                self.save()
            if self.step < self.max_step and self._interrupted():
                if self._saved_step != self.step:
                    self.save()
                self.saver.wait()
                bar.close()
                name = signal.Signals(self._signal or signal.SIGTERM).name
                msg = (f"interrupted by {name} at step {self.step}: wrote {self.resume_path}; "
                       "run the same command to continue")
                self.logger.info(msg)
                raise SystemExit(msg)
        bar.close()
        if self._saved_step != self.step:
            self.save()
        if self.is_main:
            save_state_dict(self.model.state_dict(), self.final_path)
            self.saver.wait()
            load_state_dict_file(self.final_path)  # read back whole before the resume files go
            done_with = [self.previous_path] if self.config.keep_resume else [self.resume_path, self.previous_path]
            for path in done_with:  # only a failure or a longer run needs them
                if os.path.exists(path):
                    os.remove(path)
            self.logger.info(f"wrote {self.final_path}")



def check_before_writing(config, model):
    """What the run will touch, before it writes anything: the checkpoint and log folders can be
    written, and the checkpoint it would resume from fits the model (read memory-mapped: cheap)."""
    require_writable([os.path.dirname(os.path.abspath(config.session_name)), config.log_dir])
    path = config.resume_source()
    if path is None and not config.restart and os.path.exists(config.final_path):
        raise ValueError(f"{config.final_path}: this session is finished; --restart trains it again (or give "
                         "another --session_name)")
    if path is None:
        return
    try:
        state = load_training_state(path, mmap=True)["model"]
    except (KeyError, TypeError):
        raise ValueError(f"{path}: not a resumable checkpoint of this project (no model state)") from None
    problems = state_dict_mismatch(model.state_dict(), in_model_layout(model, state))
    if problems:
        raise ValueError(f"{path}: not a checkpoint of this network ({problems})")


def initial_weights(config, model, init_weights):
    """--weights into the model with `init_weights(model, path, allow_pickle=)` (returning how they
    were used), before anything is written: a bad file is one line. Returns the log line."""
    if config.no_dropout:
        model.disable_dropout()
    if config.weights == "none":
        return "random initialisation (--weights none)"
    how = init_weights(model, config.weights, allow_pickle=config.allow_pickle)
    return f"initialised from {config.weights} ({how})"


@contextlib.contextmanager
def training(config, model, dataset, device, init_weights, forward=None, lr_horizon_extra=0, skipped=()):
    """The set-up every training script shares, as one block yielding the Trainer: --weights
    into the model (`init_weights`, see initial_weights), the checks before anything is
    written, the session lock and log, the environment line, the resume point, memory format,
    optimiser, DDP and compilation of `forward` (default: the model).
    `lr_horizon_extra`: the poly schedule runs to max_step + this (see tool.optim); `skipped`:
    the lines of the images the dataset's check left out, for the log."""
    initialised = initial_weights(config, model, init_weights)
    check_before_writing(config, model)
    rank, world_size = world()
    with session_lock(config.session_name + ".lock", enabled=rank == 0), \
            RunLogger(config.log_dir, config.log_name, config.flags, enabled=rank == 0) as logger:
        environment = fingerprint(precision(device, config.amp), world_size, config.seed, config.deterministic)
        logger.record("environment: " + json.dumps(environment))
        logger.info(f"environment: {fingerprint_line(environment)}")
        if rank == 0:
            for path in (config.final_path, config.resume_path, config.previous_path):
                for stale in remove_temporaries(os.path.dirname(os.path.abspath(path)), of=path):
                    logger.info(f"removed {stale}, left by an interrupted checkpoint write")
        resume = config.resume_source()
        if resume and not config.resume:
            logger.info(f"found {resume}: continuing from it (--restart starts over)")
        if not resume:
            logger.info(initialised)
        to_device(model, device, channels_last_enabled(device, config.channels_last))  # before the optimiser
        trainer = Trainer(config, model, dataset, logger, device, forward=forward, lr_horizon_extra=lr_horizon_extra)
        if resume:
            trainer.resume(resume)
        trainer.wrap(compile_model=config.compile)
        for line in skipped:
            logger.info(f"skipped {line}")
        procs = f", {trainer.world_size} processes" if trainer.world_size > 1 else ""
        logger.info(f"{len(dataset)} images, {trainer.max_step} steps, device {device}{procs}")
        yield trainer
