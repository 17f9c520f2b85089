"""Benchmark SEAM training (images/s) and multi-scale CAM inference (s/image): fp32 eager vs the
fast path (bf16 autocast + channels_last + fused SGD, then + torch.compile), on any backbone
(--backbone). Prints JSON lines.
fp32_eager is PyTorch's default precision (TF32 convolutions allowed); fp32_exact is --amp off.

CPU default: a slim network (--width 0.125) at crop 96; on CUDA: the published size (width 1,
batch 8, crop 448) with peak memory, model FLOP utilisation (training FLOPs counted once by
torch.utils.flop_counter, over the card's dense bf16 peak) and the projected time of stage 1's
10,576 steps (8 epochs of train_aug at batch 8).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from network import build_network  # noqa: E402
from tool.engine.runtime import autocast, set_precision  # noqa: E402
from tool.losses import seam_losses  # noqa: E402
from tool.optim import PolyOptimizer  # noqa: E402
from voc12.labels import NUM_CLASSES  # noqa: E402

STAGE1_STEPS = 10576
# dense bf16 Tensor Core peaks (TFLOP/s) by device-name fragment
BF16_PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1}
CONFIGS = {  # name: (amp, channels_last, compile, fused SGD, precision flags)
    # PyTorch's defaults (cuDNN may use TF32 for fp32 convolutions; no autotuning): the usual baseline
    "fp32_eager": ("off", False, False, False, "pytorch_default"),
    # what --amp off gives: TF32 off, exact fp32
    "fp32_exact": ("off", False, False, False, "ours"),
    # the stage scripts' CUDA default, then with --compile
    "bf16_channels_last": ("bf16", True, False, True, "ours"),
    "bf16_channels_last_compile": ("bf16", True, True, True, "ours"),
}


def apply_precision(device, amp, flags, fixed_shapes):
    if flags == "ours":
        if device.type == "cuda":
            set_precision(amp, fixed_shapes)
    elif device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = False


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(forward, opt, x, labels, device, amp):
    with autocast(device, amp):
        cam1, rv1, cam2, rv2 = forward(x)
    loss = seam_losses(cam1.float(), rv1.float(), cam2.float(), rv2.float(), labels)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench_train(model, device, amp, batch, crop, steps, warmup, compile_model=False, fused=False):
    """images/s of the stage-1 step (both branches, every loss, backward, SGD) on fixed data."""
    from tool.transforms import Rescale
    from train_seam import TwoBranch

    opt = PolyOptimizer(model.get_parameter_groups(), 0.01, 5e-4, max_step=10**6, fused=fused)
    two, published = TwoBranch(model), Rescale(0.3)

    def forward(x):
        return two(x, published)

    if compile_model:
        forward = torch.compile(forward)
    x = torch.randn(batch, 3, crop, crop, device=device)
    if next(model.parameters()).is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    labels = (torch.rand(batch, NUM_CLASSES - 1, device=device) < 0.15).float()
    labels[:, 0] = 1
    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        train_step(forward, opt, x, labels, device, amp)
    sync(device)
    return batch * steps / (time.perf_counter() - t0)


def seam_net(backbone, width, frozen=True):
    return build_network("seam", backbone=backbone, width=width, frozen=frozen, num_classes=NUM_CLASSES)


def train_flops(backbone, width, frozen, device, batch, crop):
    """FLOPs of one stage-1 training step (forward and backward), counted on the device."""
    from torch.utils.flop_counter import FlopCounterMode

    from tool.transforms import Rescale
    from train_seam import TwoBranch

    model = seam_net(backbone, width, frozen).to(device).train()
    x = torch.randn(batch, 3, crop, crop, device=device)
    labels = torch.zeros(batch, NUM_CLASSES - 1, device=device)
    labels[:, 0] = 1
    with FlopCounterMode(display=False) as counter:
        cam1, rv1, cam2, rv2 = TwoBranch(model)(x, Rescale(0.3))
        seam_losses(cam1, rv1, cam2, rv2, labels)["loss"].backward()
    return counter.get_total_flops()


def bf16_peak(device):
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v * 1e12 for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def bench_infer(model, device, amp, size, images, warmup):
    model.eval()
    h, w = size
    x = torch.randn(1, 3, h, w)
    channels_last = next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
    passes = [F.interpolate(x, (round(h * s), round(w * s)), mode="bilinear") for s in (0.5, 1.0, 1.5, 2.0)]
    passes = [torch.cat([p, p.flip(-1)]).to(device) for p in passes]
    if channels_last:
        passes = [p.contiguous(memory_format=torch.channels_last) for p in passes]
    for i in range(warmup + images):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        total = 0
        with torch.no_grad(), autocast(device, amp):
            for p in passes:
                _, rv = model(p)
                cam = F.interpolate(rv[:, 1:].float(), (h, w), mode="bilinear", align_corners=False)
                total = total + cam[0] + cam[1].flip(-1)
        total.cpu()
    sync(device)
    return (time.perf_counter() - t0) / images


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backbone", default="resnet38d", help="resnet38d (published), resnet50, resnet101, ...")
    p.add_argument("--width", type=float, default=None)
    p.add_argument("--unfreeze", action="store_true", help="train BN and the first layers too (the demo's setting)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--crop", type=int, default=None)
    p.add_argument("--infer_size", type=int, nargs=2, default=None, help="H W of the inference image")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens there)")
    p.add_argument("--impls", nargs="+", default=["fp32_eager", "bf16_channels_last", "bf16_channels_last_compile"],
                   choices=list(CONFIGS))
    p.add_argument("--no_infer", action="store_true", help="training only")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    width = args.width or (1.0 if gpu else 0.125)
    batch = args.batch or (8 if gpu else 4)
    crop = args.crop or (448 if gpu else 96)
    infer_size = tuple(args.infer_size or ((375, 500) if gpu else (96, 128)))
    torch.manual_seed(0)
    peak = bf16_peak(device)
    flops = train_flops(args.backbone, width, not args.unfreeze, device, batch, crop) if gpu else None
    base = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if gpu else "cpu",
            "torch": torch.__version__, "backbone": args.backbone, "width": width, "frozen": not args.unfreeze,
            "threads": torch.get_num_threads()}
    for name in args.impls:
        amp, channels_last, compile_model, fused, flags = CONFIGS[name]
        apply_precision(device, amp, flags, fixed_shapes=True)
        fused = fused and gpu
        model = seam_net(args.backbone, width, frozen=not args.unfreeze).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        ips = bench_train(model, device, amp, batch, crop, args.steps, args.warmup, compile_model, fused)
        row = {"bench": "seam_train", "impl": name, **base, "batch": batch, "crop": crop,
               "images_per_s": round(ips, 2), "wall_s": round(time.perf_counter() - t0, 1),
               "stage1_minutes": round(STAGE1_STEPS * batch / ips / 60, 1)}
        if gpu:
            row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            row["train_tflop_per_step"] = round(flops / 1e12, 3)
            if peak:
                row["mfu_bf16"] = round(flops * ips / batch / peak, 4)
        print(json.dumps(row), flush=True)
        if not args.no_infer and not compile_model:  # inference shapes vary per image: no compile there
            apply_precision(device, amp, flags, fixed_shapes=False)
            spi = bench_infer(model, device, amp, infer_size, args.steps, args.warmup)
            row = {"bench": "seam_infer", "impl": name, **base, "size": list(infer_size),
                   "scales": [0.5, 1.0, 1.5, 2.0], "flips": True, "seconds_per_image": round(spi, 4)}
            print(json.dumps(row), flush=True)
        del model
        if gpu:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
