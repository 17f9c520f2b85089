"""The training loop shared by every stage: device, seeding, mixed precision, deterministic
batches, resumable checkpoints, NaN guard, logging. Model- and dataset-agnostic.

Determinism: the batch order of an epoch and every item's augmentation are functions of
(seed, epoch, index) alone, so a run resumed from any checkpoint continues exactly as the
uninterrupted run would have, whatever the number of loader workers.
"""
import contextlib
import os
import random
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tool.checkpoint import load_training_state, save_state_dict, save_training_state, set_rng_state
from tool.logger import AverageMeter, progress
from tool.optim import PolyOptimizer

UNFREEZE_HELP = ("train BN (batch statistics) and conv1a/b2* too: for random initialisation only; "
                 "the published recipe freezes them under ImageNet weights")


def add_training_flags(parser, batch_size, max_epoches, lr, wt_dec=5e-4, momentum=5e-4, unfreeze_help=UNFREEZE_HELP):
    """Flags every training script has, with the stage's published defaults."""
    parser.add_argument("--batch_size", type=int, default=batch_size)
    parser.add_argument("--max_epoches", type=int, default=max_epoches)
    parser.add_argument("--max_step", type=int, default=None, help="overrides --max_epoches when given")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--wt_dec", type=float, default=wt_dec)
    parser.add_argument("--momentum", type=float, default=momentum)
    parser.add_argument("--num_workers", type=int, default=8)
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto",
                        help="mixed precision: auto = bf16 on CUDA, off on CPU")
    parser.add_argument("--resume", default=None, help="resumable checkpoint (<session>.resume.pt) to continue")
    parser.add_argument("--ckpt_interval", type=int, default=500, help="steps between resumable checkpoints")
    parser.add_argument("--log_interval", type=int, default=50, help="steps between log lines")
    parser.add_argument("--vis_interval", type=int, default=500, help="steps between tensorboard image grids")
    parser.add_argument("--tblog_dir", default="./tblog")
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier (1.0 = published)")
    parser.add_argument("--unfreeze", action="store_true", help=unfreeze_help)
    parser.add_argument("--no_dropout", action="store_true",
                        help="no dropout anywhere: for short from-scratch runs of slim networks only")


def select_device(name=None):
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device is available")
    return device


def autocast(device, amp):
    """bf16 autocast on CUDA by default; fp32 on CPU unless asked."""
    enabled = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


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
            torch.manual_seed(s)
            return self.dataset[index]


class Trainer:
    """Runs `step_fn(batch, step) -> {name: scalar tensor}` (with `loss`) for max_step steps.

    Writes `<session_name>.resume.pt` (model, optimiser, step, RNG states) every
    `ckpt_interval` steps and at each epoch end, and `<session_name>.pth` (plain state dict)
    at the end. A non-finite loss stops the run (SystemExit with one line) before the optimiser
    step, keeping the last good checkpoint.
    """

    def __init__(self, args, model, dataset, logger, collate_fn=None, lr_horizon_extra=0):
        self.args, self.model, self.logger = args, model, logger
        self.dataset = SeededItems(dataset, args.seed)
        self.collate_fn = collate_fn
        self.steps_per_epoch = len(dataset) // args.batch_size
        if self.steps_per_epoch == 0:
            raise SystemExit(f"error: --batch_size {args.batch_size} is larger than the training list ({len(dataset)})")
        self.max_step = args.max_step or self.steps_per_epoch * args.max_epoches
        self.optimizer = PolyOptimizer(
            model.get_parameter_groups(), args.lr, args.wt_dec, self.max_step, args.momentum,
            horizon=self.max_step + lr_horizon_extra,
        )
        self.resume_path = args.session_name + ".resume.pt"
        self.final_path = args.session_name + ".pth"
        self.step = 0

    def resume(self, path):
        state = load_training_state(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        set_rng_state(state["rng"])
        self.logger.info(f"resumed from {path} at step {self.step}")

    def save(self):
        save_training_state(self.resume_path, self.model, self.optimizer, self.step)

    def batches(self):
        """Batches from the current step on; an epoch's order is fixed by (seed, epoch)."""
        while self.step < self.max_step:
            epoch, offset = divmod(self.step, self.steps_per_epoch)
            plan = epoch_batches(len(self.dataset), self.args.batch_size, self.args.seed, epoch)[offset:]
            loader = DataLoader(
                self.dataset, batch_sampler=plan, num_workers=self.args.num_workers,
                collate_fn=self.collate_fn, pin_memory=torch.cuda.is_available(),
                # Items are seeded by SeededItems; a private generator keeps the loader from
                # drawing on the global RNG, which must follow the same sequence after a resume.
                generator=torch.Generator().manual_seed(self.args.seed),
            )  # fmt: skip
            for batch in loader:
                yield batch
                if self.step >= self.max_step:
                    return

    def run(self, step_fn, vis_fn=None):
        args, meter = self.args, AverageMeter()
        self.model.train()
        bar = progress(self.max_step, desc=os.path.basename(args.session_name))
        bar.update(self.step)
        t0, images = time.perf_counter(), 0
        for batch in self.batches():
            terms = step_fn(batch, self.step)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                bad = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                last = self.resume_path if os.path.exists(self.resume_path) else "none yet"
                msg = f"error: non-finite loss at step {self.step} ({bad}); last good checkpoint: {last}"
                self.logger.info(msg)
                raise SystemExit(msg)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            images += args.batch_size
            meter.add({k: v.detach() for k, v in terms.items()})
            bar.update(1)
            if self.step % args.log_interval == 0 or self.step == self.max_step:
                rate = images / (time.perf_counter() - t0)
                t0, images = time.perf_counter(), 0
                means = meter.pop()
                lr = self.optimizer.param_groups[0]["lr"]
                bar.set_postfix({**{k: f"{v:.4f}" for k, v in means.items()}, "img/s": f"{rate:.1f}"})
                self.logger.info(f"step {self.step}/{self.max_step} "
                                 + " ".join(f"{k}={v:.4f}" for k, v in means.items())
                                 + f" lr={lr:.3g} img/s={rate:.1f}")
                self.logger.scalars(self.step, {**{f"loss/{k}": v for k, v in means.items()}, "lr": lr})
            if vis_fn is not None and self.step % args.vis_interval == 0:
                vis_fn(batch, self.step)
            if self.step % args.ckpt_interval == 0 or self.step % self.steps_per_epoch == 0:
                self.save()
        bar.close()
        self.save()
        save_state_dict(self.model.state_dict(), self.final_path)
        self.logger.info(f"wrote {self.final_path}")


def build_trainer(args, model, dataset, logger, device, init_weights, lr_horizon_extra=0):
    """The set-up every training script shares: initial weights (`init_weights(model, path)`,
    returning how they were used), device, optimiser, and the resume point when asked.
    `lr_horizon_extra`: the poly schedule runs to max_step + this (see tool.optim)."""
    if args.no_dropout:
        model.disable_dropout()
    if args.weights:
        try:
            how = init_weights(model, args.weights)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
        logger.info(f"initialised from {args.weights} ({how})")
    elif not args.resume:
        logger.info("warning: no --weights: random initialisation (for synthetic data only)")
    model.to(device)
    trainer = Trainer(args, model, dataset, logger, lr_horizon_extra=lr_horizon_extra)
    if args.resume:
        try:
            trainer.resume(args.resume)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
    logger.info(f"{len(dataset)} images, {trainer.max_step} steps, device {device}")
    return trainer
