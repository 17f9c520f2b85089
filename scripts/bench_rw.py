"""Time the stage-4 random walk per image: the published dense walk vs our sparse stencil walk.

For a 375x500 image (47x63 feature grid, radius 5, 34 offsets), with realistic affinities
(exp(-mean|f_to - f_from|) of a smooth embedding with region edges, as the network gives) and
smooth CAMs, time everything after the network, per image:
  dense:  cam_on_grid -> dense_random_walk (dense hw x hw matrix, beta, normalise, logt squarings)
          -> scores_to_label;
  sparse: cam_on_grid -> random_walk (stencil, 2^logt steps on the present channels) -> scores_to_label.
Cases: 2 foreground classes (VOC has ~1.5 per image) and the worst case, all 20. The labels of the
two must agree; pixels whose two best scores tie to float32 precision are counted apart. Prints JSON
lines (the median over --repeats, the load average of the machine, and the sparse walk's stages).

    PYTHONPATH=. python scripts/bench_rw.py [--device cpu|cuda] [--repeats 5] [--size 375 500]
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tool.affinity import effective_radius, get_indices_of_pairs  # noqa: E402
from tool.randomwalk import (  # noqa: E402
    cam_on_grid,
    padded_size,
    random_walk,
    scores_to_label,
    stencil_walk,
    transition_stencil,
)
from voc12.labels import NUM_CLASSES  # noqa: E402

TIE_MARGIN = 1e-5  # relative gap of the two best scores below which float32 summation order decides



def dense_random_walk(cam_grid, aff, ind_from, ind_to, beta=8, logt=6):
    """The published dense computation: reference for the benchmark (O((hw)^3) per squaring)."""
    c, h, w = cam_grid.shape
    area = h * w
    frm = ind_from.repeat(aff.shape[0])
    diag = torch.arange(area, device=aff.device)
    dense = torch.zeros(area, area, dtype=aff.dtype, device=aff.device)
    dense[torch.cat([frm, ind_to, diag]), torch.cat([ind_to, frm, diag])] = torch.cat(
        [aff.reshape(-1), aff.reshape(-1), torch.ones(area, dtype=aff.dtype, device=aff.device)]
    )
    trans = dense**beta
    trans = trans / trans.sum(dim=0, keepdim=True)
    for _ in range(logt):
        trans = trans @ trans
    return (cam_grid.reshape(c, area) @ trans).reshape(c, h, w)

def smooth_field(rng, channels, out_hw, coarse_hw):
    coarse = torch.from_numpy(rng.standard_normal((1, channels) + tuple(coarse_hw)).astype(np.float32))
    return F.interpolate(coarse, tuple(out_hw), mode="bilinear", align_corners=False)[0]


def make_inputs(seed, image_hw, n_classes, radius, dim=16):
    """Smooth peaked CAMs of `n_classes` classes and the pair affinities of a region-structured embedding."""
    rng = np.random.default_rng(seed)
    h, w = image_hw
    ph, pw = padded_size(h, w)
    grid_hw = (ph // 8, pw // 8)
    keys = np.sort(rng.choice(NUM_CLASSES - 1, size=n_classes, replace=False)).astype(np.int64)
    field = smooth_field(rng, n_classes, image_hw, (4, 5)).numpy()
    lo, hi = field.min(axis=(1, 2), keepdims=True), field.max(axis=(1, 2), keepdims=True)
    cams = (((field - lo) / (hi - lo)) ** 2).astype(np.float32)
    feat = 0.5 * smooth_field(rng, dim, grid_hw, (6, 8))
    yy, xx = np.mgrid[: grid_hw[0], : grid_hw[1]]
    region = np.zeros(grid_hw, np.int64)
    for _ in range(3):  # three random straight edges -> up to 8 regions
        cy, cx, slope = rng.uniform(0, grid_hw[0]), rng.uniform(0, grid_hw[1]), rng.uniform(-1, 1)
        region = 2 * region + ((yy - cy) > slope * (xx - cx))
    codes = rng.standard_normal((region.max() + 1, dim)).astype(np.float32) * 1.5
    feat = feat + torch.from_numpy(codes[region].transpose(2, 0, 1).copy())
    ind_from, ind_to = (torch.from_numpy(i) for i in get_indices_of_pairs(effective_radius(radius, grid_hw), grid_hw))
    f = feat.reshape(dim, -1)
    aff = torch.exp(-(f[:, ind_to].view(dim, -1, ind_from.numel()) - f[:, ind_from].unsqueeze(1)).abs().mean(0))
    return keys, cams, aff, ind_from, ind_to


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dense_label(cams, keys, aff, ind_from, ind_to, image_hw, args, device):
    grid = cam_on_grid(cams, keys, args.alpha, NUM_CLASSES).to(device)
    walked = dense_random_walk(grid, aff, ind_from, ind_to, args.beta, args.logt)
    return scores_to_label(walked, image_hw), walked


def sparse_label(cams, keys, aff, image_hw, args, device):
    grid = cam_on_grid(cams, keys, args.alpha, NUM_CLASSES).to(device)
    walked = random_walk(grid, aff, effective_radius(args.radius, grid.shape[1:]), args.beta, args.logt)
    return scores_to_label(walked, image_hw), walked


def timed(fn, repeats, device):
    """(median seconds, last result) over `repeats` calls, one untimed warm-up call first."""
    result = fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def sparse_stages(cams, keys, aff, args, device, repeats):
    """Median seconds of the sparse path's stages: CAM grid, transition stencil, walk, upsample + argmax."""
    stages = {"cam_on_grid": [], "transition": [], "walk": [], "label": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        grid = cam_on_grid(cams, keys, args.alpha, NUM_CLASSES).to(device)
        sync(device)
        t1 = time.perf_counter()
        offsets, weights = transition_stencil(
            aff, grid.shape[1:], effective_radius(args.radius, grid.shape[1:]), args.beta
        )
        sync(device)
        t2 = time.perf_counter()
        present = grid.flatten(1).abs().amax(dim=1) > 0
        walked = torch.zeros_like(grid)
        walked[present] = stencil_walk(grid[present], offsets, weights, 2**args.logt)
        sync(device)
        t3 = time.perf_counter()
        scores_to_label(walked, tuple(args.size))
        t4 = time.perf_counter()
        for name, t in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            stages[name].append(t)
    return {name: round(statistics.median(t), 5) for name, t in stages.items()}, len(offsets)


def tie_pixels(walked, image_hw):
    """Pixels whose two best upsampled scores differ by less than TIE_MARGIN (relative)."""
    h, w = image_hw
    up = F.interpolate(walked[None].double().cpu(), padded_size(h, w), mode="bilinear", align_corners=False)[0]
    top = torch.topk(up, 2, dim=0).values[:, :h, :w]
    return ((top[0] - top[1]) / top[0].abs().clamp_min(1e-30)).numpy() < TIE_MARGIN


def bench_case(n_classes, args, device):
    image_hw = tuple(args.size)
    keys, cams, aff, ind_from, ind_to = make_inputs(args.seed, image_hw, n_classes, args.radius)
    aff, ind_from, ind_to = aff.to(device), ind_from.to(device), ind_to.to(device)
    grid_hw = [padded_size(*image_hw)[0] // 8, padded_size(*image_hw)[1] // 8]
    common = {
        "bench": "random_walk",
        "device": str(device),
        "grid": grid_hw,
        "fg_classes": n_classes,
        "image": list(image_hw),
        "threads": torch.get_num_threads(),
    }
    lines = []
    with torch.no_grad():
        dense_s, (dense_lab, dense_walked) = timed(
            lambda: dense_label(cams, keys, aff, ind_from, ind_to, image_hw, args, device), args.repeats, device
        )
        lines.append({**common, "impl": "dense", "seconds": round(dense_s, 5), "loadavg": os.getloadavg()[0]})
        sparse_s, (sparse_lab, sparse_walked) = timed(
            lambda: sparse_label(cams, keys, aff, image_hw, args, device), args.repeats, device
        )
        stages, n_stencil = sparse_stages(cams, keys, aff, args, device, args.repeats)
        lines.append(
            {
                **common,
                "impl": "sparse",
                "seconds": round(sparse_s, 5),
                "stages": stages,
                "stencil_offsets": n_stencil,
                "loadavg": os.getloadavg()[0],
            }
        )
    differ = dense_lab != sparse_lab
    ties = tie_pixels(dense_walked, image_hw)
    scale = float(dense_walked.abs().max())
    lines.append(
        {
            **common,
            "ratio": round(dense_s / sparse_s, 1),
            "labels_equal": bool(not differ.any()),
            "n_label_diff": int(differ.sum()),
            "n_label_diff_not_tie": int((differ & ~ties).sum()),
            "max_score_diff_rel": float((sparse_walked - dense_walked).abs().max()) / scale,
            "aff_mean": round(float(aff.mean()), 3),
            "classes_in_labels": len(np.unique(dense_lab)),
            "offsets": int(ind_to.numel() // ind_from.numel()),
            "loadavg": os.getloadavg()[0],
        }
    )
    return lines


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per method (median reported)")
    p.add_argument("--size", type=int, nargs=2, default=[375, 500], metavar=("H", "W"))
    p.add_argument("--classes", type=int, nargs="+", default=[2, NUM_CLASSES - 1], help="foreground classes per case")
    p.add_argument("--alpha", type=float, default=6)
    p.add_argument("--beta", type=float, default=8)
    p.add_argument("--logt", type=int, default=6)
    p.add_argument("--radius", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: CUDA is not available")
    if args.repeats < 1 or not all(1 <= k < NUM_CLASSES for k in args.classes):
        raise SystemExit(f"error: --repeats must be >= 1 and --classes within 1..{NUM_CLASSES - 1}")
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for n_classes in args.classes:
        for line in bench_case(n_classes, args, device):
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
