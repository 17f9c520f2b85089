"""torchrun support. Without torchrun (no WORLD_SIZE in the environment) everything here is the
single process: rank 0 of 1, no process group."""
import atexit
import os

import torch
import torch.distributed as dist


def world():
    """(rank, world_size) of this process; (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main():
    return world()[0] == 0


def init_distributed(device):
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) and return this rank's device.

    `device` is the device type asked for; under torchrun each rank takes cuda:LOCAL_RANK.
    """
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return device
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(cleanup)
    return device


def usable_cores():
    """The CPU cores this process may use: its affinity, shared among the torchrun ranks of the node."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def shard(items):
    """This rank's share of a list (every world_size-th item), for inference under torchrun."""
    rank, size = world()
    return list(items)[rank::size]


def global_share(counts):
    """A loss normaliser (a tensor of counts over this rank's batch) -> the global batch's count
    divided by the number of ranks: dividing a rank's sum by it makes DDP's mean of the ranks'
    gradients the gradient of the whole batch's mean. Unchanged in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return counts
    counts = counts.detach().float().clone()
    dist.all_reduce(counts)
    return counts / dist.get_world_size()


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
