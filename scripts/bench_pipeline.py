"""Project the whole VOC run (stages 1-5) from measured throughputs on this machine.

Each stage runs at the published size (full width, crop 448, VOC-sized 375x500 images) on
synthetic data for a bounded number of steps or images; its rate times the VOC run's work gives
its projected time:

| stage | work of the VOC run |
|---|---|
| 1 train SEAM | 8 epochs of train_aug (10,582) at batch 8: 10,576 steps |
| 2 CAMs | 10,582 images x 4 scales x flip; dense CRF at 2 powers on the CPU cores beside it |
| 3 train AffinityNet | 8 epochs at batch 8: 10,576 steps |
| 4 walk | 10,582 images: AffinityNet features + the random walk |
| 5 train DeepLab | 20,000 steps at batch 10; val (1,449) x 6 scales x flip + CRF |

Stage 2's CRF runs on worker processes while the device computes CAMs, so the stage takes the
longer of the two; the CRF's per-core rate is measured on one process and divided over
--crf_cores (default: the usable cores less one for the loader). Prints a JSON line per stage,
then a table with the total and the machine's fingerprint. `--tiny` (a slim network on small
images, one step each) runs in seconds; the projection arithmetic is the same.

    PYTHONPATH=. python scripts/bench_pipeline.py [--device cuda] [--steps 5] [--tiny]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from network import build_network  # noqa: E402
from tool.cam import multiscale_cam, multiscale_probs  # noqa: E402
from tool.engine.fingerprint import fingerprint, fingerprint_line, precision  # noqa: E402
from tool.engine.runtime import (  # noqa: E402
    autocast,
    channels_last_enabled,
    model_forward,
    set_precision,
    to_device,
    to_input,
    usable_cores,
)
from tool.losses import seam_losses, segmentation_loss  # noqa: E402
from tool.optim import PolyOptimizer  # noqa: E402
from tool.randomwalk import cam_on_grid, random_walk, scores_to_label  # noqa: E402

TRAIN_AUG, VAL = 10582, 1449
# (stage, what one unit is, units in the VOC run)
WORK = {
    "1 train SEAM": ("step", 8 * (TRAIN_AUG // 8)),
    "2 CAMs": ("image", TRAIN_AUG),
    "2 CRF (2 powers)": ("image", TRAIN_AUG),
    "3 train AffinityNet": ("step", 8 * (TRAIN_AUG // 8)),
    "4 walk": ("image", TRAIN_AUG),
    "5 train DeepLab": ("step", 20000),
    "5 segment val": ("image", VAL),
    "5 CRF of val": ("image", VAL),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, n, warmup, device):
    """Seconds per call of fn() over n calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n


def train_step(model, forward, loss_fn, batch, crop, device, amp, channels_last):
    opt = PolyOptimizer(model.get_parameter_groups(), 0.01, 5e-4, max_step=10**6, fused=device.type == "cuda")
    x = to_input(torch.randn(batch, 3, crop, crop), device, channels_last)
    model.train()

    def step():
        with autocast(device, amp):
            out = forward(x)
        loss = loss_fn(out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def flip_scales(img, scales):
    h, w = img.shape[2:]
    out = []
    for s in scales:
        x = F.interpolate(img, (round(h * s), round(w * s)), mode="bilinear", align_corners=False)
        out.append(torch.cat([x, x.flip(-1)]))  # to the device (and memory format) in model_forward
    return out


def crf_seconds(size, n_labels, t, powers):
    """One process's seconds per image of the dense CRF (None without pydensecrf)."""
    from tool.crf import crf_inference, dcrf

    if dcrf is None:
        return None
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    probs = rng.random((n_labels, *size)).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(powers):
        crf_inference(img, probs / probs.sum(0), t=t)
    return time.perf_counter() - t0


def measure(args, device):
    """{stage: seconds per unit} on this machine."""
    width, crop, size = (0.0625, 64, (48, 64)) if args.tiny else (1.0, 448, (375, 500))
    n, warmup = (1, 0) if args.tiny else (args.steps, args.warmup)
    labels = torch.zeros(8, 20, device=device)
    labels[:, 0] = 1
    per_unit = {}

    from tool.transforms import Rescale
    from train_seam import TwoBranch

    channels_last = channels_last_enabled(device, "auto")  # the memory format the stage scripts run in
    seam = to_device(build_network("seam", width=width), device, channels_last)
    two = TwoBranch(seam)
    step = train_step(seam, lambda x: two(x, Rescale(0.3)),
                      lambda out: seam_losses(*(o.float() for o in out), labels)["loss"], 8, crop, device, args.amp,
                      channels_last)
    per_unit["1 train SEAM"] = timed(step, n, warmup, device)
    seam.eval()
    img = torch.randn(1, 3, *size)
    passes = flip_scales(img, (0.5, 1.0, 1.5, 2.0))
    label = labels[0, :]
    seam_forward = model_forward(seam, device, args.amp, channels_last)
    per_unit["2 CAMs"] = timed(lambda: multiscale_cam(seam_forward, passes, label, size).cpu(), n, warmup, device)
    per_unit["2 CRF (2 powers)"] = crf_seconds(size, 2, 10, 2)

    aff = to_device(build_network("aff", width=width), device, channels_last)
    step = train_step(aff, aff, lambda out: out.float().mean(), 8, crop, device, args.amp, channels_last)
    per_unit["3 train AffinityNet"] = timed(step, n, warmup, device)
    aff.eval()
    ph, pw = 8 * -(-size[0] // 8), 8 * -(-size[1] // 8)
    x = to_input(torch.randn(1, 3, ph, pw), device, channels_last)
    cams = np.random.default_rng(0).random((2, *size)).astype(np.float32)

    def walk():
        with torch.no_grad(), autocast(device, args.amp):
            a = aff(x)[0].float()
        grid = cam_on_grid(cams, np.array([0, 14]), 6, 21).to(device)
        scores_to_label(random_walk(grid, a, 5 if not args.tiny else 2, 8, 6), size, channels=[0, 1, 15])

    per_unit["4 walk"] = timed(walk, n, warmup, device)

    seg = to_device(build_network("seg", width=width, frozen=False), device, channels_last)
    target = torch.randint(0, 21, (10, crop, crop), device=device)
    step = train_step(seg, seg, lambda out: segmentation_loss(out.float(), target, check_labels=False), 10, crop,
                      device, args.amp, channels_last)
    per_unit["5 train DeepLab"] = timed(step, n, warmup, device)
    seg.eval()
    passes = flip_scales(img, (0.5, 0.75, 1.0, 1.25, 1.5, 1.75))
    seg_forward = model_forward(seg, device, args.amp, channels_last)
    per_unit["5 segment val"] = timed(lambda: multiscale_probs(seg_forward, passes, size).cpu(), n, warmup, device)
    per_unit["5 CRF of val"] = crf_seconds(size, 21, 1, 1)
    return per_unit


def _crf_job(seed):
    from tool.crf import crf_with_alpha

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)
    cams = rng.random((2, 375, 500)).astype(np.float32)
    for alpha in (4.0, 24.0):
        crf_with_alpha(img, cams, alpha)


def crf_scaling(images):
    """Images/s of stage 2's CRF pool (both powers per image) with 1 .. usable-core processes."""
    from tool.crf import dcrf
    from tool.engine.inference import HelperPool

    if dcrf is None:
        raise SystemExit("error: the CRF needs pydensecrf (pip install pydensecrf2)")
    base = None
    for workers in range(1, usable_cores() + 1):
        with HelperPool(workers, "spawn") as pool:
            pool.submit(_crf_job, 0).result()  # the processes are up before the clock starts
            t0 = time.perf_counter()
            for _ in pool.map(_crf_job, range(images)):
                pass
            rate = images / (time.perf_counter() - t0)
        base = base or rate
        print(json.dumps({"bench": "crf_pool", "processes": workers, "images": images, "images_per_s": round(rate, 3),
                          "speedup": round(rate / base, 2), "loadavg": os.getloadavg()[0]}), flush=True)


def project(per_unit, crf_cores):
    """[{stage, unit, seconds_per_unit, units, projected_s}], the total in seconds. The CRF rows
    are spread over `crf_cores` processes and overlap their stage's device work."""
    rows = []
    for stage, (unit, units) in WORK.items():
        s = per_unit.get(stage)
        cores = crf_cores if "CRF" in stage else 1
        rows.append({"stage": stage, "unit": unit, "seconds_per_unit": s, "units": units,
                     "processes": cores, "projected_s": None if s is None else s * units / cores})

    def total_of(prefix):
        return [r["projected_s"] or 0.0 for r in rows if r["stage"].startswith(prefix)]

    total = 0.0
    for prefix in ("1", "3", "4"):
        total += sum(total_of(prefix))
    stage2 = total_of("2")
    total += max(stage2)  # the CRF runs while the device computes CAMs
    segment, crf = (r["projected_s"] or 0.0 for r in rows if r["stage"] in ("5 segment val", "5 CRF of val"))
    total += sum(total_of("5 train")) + max(segment, crf)
    return rows, total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto")
    p.add_argument("--steps", type=int, default=5, help="timed steps / images per stage")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (cuDNN autotuning, allocator)")
    p.add_argument("--crf_cores", type=int, default=None, help="CRF processes (default: the usable cores less one)")
    p.add_argument("--crf_scaling", type=int, default=0, metavar="IMAGES",
                   help="instead: stage 2's CRF pool throughput with 1, 2, ... usable processes on this many "
                        "VOC-sized images each")
    p.add_argument("--tiny", action="store_true", help="a slim network on small images, one step each (seconds)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.crf_scaling:
        return crf_scaling(args.crf_scaling)
    if device.type == "cuda":
        set_precision(args.amp, fixed_shapes=True)
    torch.manual_seed(0)
    crf_cores = args.crf_cores or max(1, usable_cores() - 1)
    rows, total = project(measure(args, device), crf_cores)
    environment = fingerprint(precision(device, args.amp))
    for r in rows:
        print(json.dumps({"bench": "pipeline", "tiny": args.tiny, **r}), flush=True)
    print(json.dumps({"bench": "pipeline", "tiny": args.tiny, "stage": "total", "projected_s": total,
                      "environment": environment}))
    print("\n| stage | measured | VOC run | projected |\n|---|---|---|---|")
    for r in rows:
        s = "n/a" if r["seconds_per_unit"] is None else f"{r['seconds_per_unit']:.4f} s/{r['unit']}"
        proj = "n/a" if r["projected_s"] is None else f"{r['projected_s'] / 60:.1f} min"
        print(f"| {r['stage']} | {s} | {r['units']} {r['unit']}s / {r['processes']} | {proj} |")
    print(f"| total (stage 2 and val overlapped) | | | {total / 60:.1f} min |")
    print(f"\nEnvironment: {fingerprint_line(environment)}")


if __name__ == "__main__":
    main()
