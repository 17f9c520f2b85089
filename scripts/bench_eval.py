"""Time the CAM threshold curve (60 thresholds): evaluation.py's one pass vs re-reading per threshold.

Generates synthetic CAM npz files and GT PNGs (smooth random CAMs, GT derived from them with
noise and 255 borders), then times
  seam:     evaluation.evaluate_list, every file read once, all thresholds at once;
  baseline: the published structure: for every threshold, read every file again, stack a
            background plane, argmax, count (bincount confusion);
both with the same number of worker processes. The two curves must agree exactly.
Prints JSON lines.

    PYTHONPATH=. python scripts/bench_eval.py [--n_images 1464] [--size 250 333] [--num_workers N]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import evaluation  # noqa: E402
from tool.engine.files import (
    save_label_png,  # noqa: E402
    save_npz,  # noqa: E402
)
from tool.engine.inference import HelperPool  # noqa: E402
from tool.metrics import confusion_counts  # noqa: E402
from tool.vis import load_label_png  # noqa: E402
from voc12.labels import NUM_CLASSES  # noqa: E402


def make_pair(task):
    """Write one synthetic CAM npz and its GT PNG (seeded by the image index)."""
    index, cam_dir, gt_dir, (h, w) = task
    rng = np.random.default_rng(index)
    img_id = f"img_{index:05d}"
    keys = np.sort(rng.choice(NUM_CLASSES - 1, size=rng.integers(1, 4), replace=False)).astype(np.int64)
    coarse = rng.random((len(keys), max(2, h // 32), max(2, w // 32))).astype(np.float32)
    cams = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in coarse])
    cams = (cams - cams.min()) / (cams.max() - cams.min() + 1e-5)
    # GT: the "true" threshold varies per image, plus label noise and an ignore band
    t_true = rng.uniform(0.2, 0.45)
    gt = np.where(cams.max(0) > t_true, keys[cams.argmax(0)] + 1, 0).astype(np.uint8)
    noise = rng.random((h, w)) < 0.05
    gt[noise] = rng.integers(0, NUM_CLASSES, size=int(noise.sum()))
    edges = cv2.morphologyEx(gt, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    gt[edges] = 255
    save_npz(os.path.join(cam_dir, f"{img_id}.npz"), keys=keys, cams=cams.astype(np.float32))
    save_label_png(os.path.join(gt_dir, f"{img_id}.png"), gt)
    return img_id


def baseline_chunk(task):
    """Confusion of a chunk of images at ONE threshold, reading the files (published structure)."""
    img_ids, cam_dir, gt_dir, t = task
    total = np.zeros((NUM_CLASSES, NUM_CLASSES + 1), np.int64)
    for img_id in img_ids:
        with np.load(os.path.join(cam_dir, f"{img_id}.npz"), allow_pickle=False) as data:
            keys, cams = data["keys"], data["cams"]
        tensor = np.zeros((NUM_CLASSES,) + cams.shape[1:], np.float32)
        tensor[keys + 1] = cams
        tensor[0] = t
        pred = tensor.argmax(axis=0)
        total += confusion_counts(pred, load_label_png(os.path.join(gt_dir, f"{img_id}.png")), NUM_CLASSES)
    return total


def chunks(items, n):
    bounds = np.linspace(0, len(items), n + 1).astype(int)
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def baseline_curve(img_ids, cam_dir, gt_dir, thresholds, num_workers):
    parts = chunks(img_ids, max(1, num_workers) * 4)
    curve = []
    with HelperPool(num_workers) as pool:
        for t in thresholds:
            curve.append(sum(pool.map(baseline_chunk, [(p, cam_dir, gt_dir, t) for p in parts])))
    return np.stack(curve)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n_images", type=int, default=1464)
    p.add_argument("--size", type=int, nargs=2, default=[250, 333], metavar=("H", "W"))
    p.add_argument("--num_workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--work_dir", default=None, help="keep the synthetic files here (default: temp dir)")
    args = p.parse_args(argv)
    if args.n_images < 1 or min(args.size) < 8 or args.num_workers < 1:
        raise SystemExit("error: need --n_images >= 1, --size >= 8 8, --num_workers >= 1")

    with tempfile.TemporaryDirectory() as tmp:
        root = args.work_dir or tmp
        cam_dir, gt_dir = os.path.join(root, "cam"), os.path.join(root, "gt")
        os.makedirs(cam_dir, exist_ok=True)
        os.makedirs(gt_dir, exist_ok=True)
        start = time.perf_counter()
        tasks = [(i, cam_dir, gt_dir, tuple(args.size)) for i in range(args.n_images)]
        with HelperPool(args.num_workers) as pool:
            img_ids = list(pool.map(make_pair, tasks, chunksize=16))
        print(f"generated {len(img_ids)} pairs in {time.perf_counter() - start:.1f}s", file=sys.stderr)

        thresholds = evaluation.CURVE_THRESHOLDS
        common = {"bench": "eval_curve", "images": len(img_ids), "size": list(args.size),
                  "workers": args.num_workers, "thresholds": len(thresholds)}

        source = evaluation.EvalSource(cam_dir, gt_dir, "npz", tuple(float(t) for t in thresholds), NUM_CLASSES)
        start = time.perf_counter()
        seam = evaluation.evaluate_list(img_ids, source, args.num_workers)
        seam_s = time.perf_counter() - start
        print(json.dumps({**common, "impl": "seam", "seconds": round(seam_s, 3)}), flush=True)

        start = time.perf_counter()
        base = baseline_curve(img_ids, cam_dir, gt_dir, thresholds, args.num_workers)
        base_s = time.perf_counter() - start
        print(json.dumps({**common, "impl": "baseline", "seconds": round(base_s, 3)}), flush=True)

        np.testing.assert_array_equal(seam, base)  # identical confusions -> identical mIoU curve
        best = int(np.argmax([evaluation.iou_from_confusion(c).mean() for c in seam]))
        print(json.dumps({"bench": "eval_curve", "ratio": round(base_s / seam_s, 2),
                          "curves_equal": True, "best_t": float(thresholds[best])}), flush=True)


if __name__ == "__main__":
    main()
