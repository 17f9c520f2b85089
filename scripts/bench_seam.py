"""Benchmark SEAM training (images/s) and multi-scale CAM inference (s/image): fp32 eager vs the
fast path (bf16 autocast + channels_last). Prints JSON lines.

CPU default: a slim network (--width 0.125) at crop 96; on CUDA: the published size (width 1,
batch 8, crop 448) with peak memory.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from network import resnet38_seam  # noqa: E402
from tool.losses import seam_losses  # noqa: E402
from tool.optim import PolyOptimizer  # noqa: E402
from tool.trainer import autocast  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_train(model, device, amp, batch, crop, steps, warmup):
    opt = PolyOptimizer(model.get_parameter_groups(), 0.01, 5e-4, max_step=10**6)
    x = torch.randn(batch, 3, crop, crop, device=device)
    labels = (torch.rand(batch, 20, device=device) < 0.15).float()
    labels[:, 0] = 1
    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        x2 = F.interpolate(x, scale_factor=0.3, mode="bilinear", align_corners=True)
        with autocast(device, amp):
            cam1, rv1 = model(x)
            cam2, rv2 = model(x2)
        loss = seam_losses(cam1.float(), rv1.float(), cam2.float(), rv2.float(), labels)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return batch * steps / (time.perf_counter() - t0)


def bench_infer(model, device, amp, size, images, warmup):
    model.eval()
    h, w = size
    x = torch.randn(1, 3, h, w)
    passes = [F.interpolate(x, (round(h * s), round(w * s)), mode="bilinear") for s in (0.5, 1.0, 1.5, 2.0)]
    passes = [torch.cat([p, p.flip(-1)]).to(device) for p in passes]
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
    p.add_argument("--width", type=float, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--crop", type=int, default=None)
    p.add_argument("--infer_size", type=int, nargs=2, default=None, help="H W of the inference image")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    width = args.width or (1.0 if gpu else 0.125)
    batch = args.batch or (8 if gpu else 4)
    crop = args.crop or (448 if gpu else 96)
    infer_size = tuple(args.infer_size or ((375, 500) if gpu else (96, 128)))
    torch.manual_seed(0)
    configs = (("fp32_eager", "off", False), ("fp32_channels_last", "off", True),
               ("fast_bf16_channels_last", "bf16", True))
    for name, amp, channels_last in configs:
        model = resnet38_seam.Net(width=width).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        ips = bench_train(model, device, amp, batch, crop, args.steps, args.warmup)
        row = {"bench": "seam_train", "impl": name, "device": str(device), "width": width, "batch": batch,
               "crop": crop, "images_per_s": round(ips, 3)}
        if gpu:
            row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        print(json.dumps(row), flush=True)
        spi = bench_infer(model, device, amp, infer_size, args.steps, args.warmup)
        row = {"bench": "seam_infer", "impl": name, "device": str(device), "width": width,
               "size": list(infer_size), "scales": [0.5, 1.0, 1.5, 2.0], "flips": True,
               "seconds_per_image": round(spi, 4)}
        print(json.dumps(row), flush=True)
        del model


if __name__ == "__main__":
    main()
