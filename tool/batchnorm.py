"""Batch-statistics BN as a multi-GPU DataParallel run computes it, on one device."""
import contextlib

import torch
from torch import nn


@contextlib.contextmanager
def running_stats_frozen(model):
    """BN layers of `model` normalise with batch statistics as usual but leave their running
    statistics (and batch counters) untouched inside the block."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, (momentum, count) in zip(bns, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


class BNGroups(nn.Module):
    """`net(x)` with the batch split into `groups` chunks (as DataParallel scatters it over that
    many GPUs): BN statistics per chunk, running statistics updated from the first chunk only
    (DataParallel keeps the first replica's). groups=1 is a plain forward. A module, so that DDP
    and torch.compile wrap one call."""

    def __init__(self, net, groups):
        super().__init__()
        self.net, self.groups = net, groups

    def forward(self, x):
        chunks = x.chunk(self.groups)
        outputs = [self.net(chunks[0])]
        with running_stats_frozen(self.net):
            outputs += [self.net(c) for c in chunks[1:]]
        return torch.cat(outputs)
