"""Benchmark the stage-1 data loader alone (images/s): the published augmentation (random
long side 448-768 bicubic, flip, colour jitter, normalise, crop 448) through the training
loop's seeded batches, for several worker counts. Compare with bench_seam.py's step rate: a
loader slower than the step starves the GPU. Prints JSON lines.

    python scripts/bench_loader.py --voc12_root VOC2012 [--workers 4 8 16]
(without --voc12_root, a synthetic VOC-style set of 320-pixel images is generated first)
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from tool.engine.training import SeededItems, step_batches  # noqa: E402
from voc12.data import ClsDataset, TrainClsTransform  # noqa: E402
from voc12.toy import generate_toy_voc  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voc12_root", default=None)
    p.add_argument("--train_list", default=None, help="default: <voc12_root>/train_aug.txt or voc12/train_aug.txt")
    p.add_argument("--cls_labels", default=None)
    p.add_argument("--workers", type=int, nargs="+", default=[4, 8])
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--crop_size", type=int, default=448)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.voc12_root
        if root is None:
            root = tmp
            generate_toy_voc(root, n_train_aug=160, n_train=8, n_val=8, size=320, seed=0)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        train_list = args.train_list or next(
            f for f in (os.path.join(root, "train_aug.txt"), os.path.join(here, "voc12", "train_aug.txt"))
            if os.path.isfile(f))
        cls_labels = args.cls_labels or next(
            f for f in (os.path.join(root, "cls_labels.txt"), os.path.join(here, "voc12", "cls_labels.txt"))
            if os.path.isfile(f))
        transform = TrainClsTransform(args.crop_size, (448, 768))
        dataset = ClsDataset(train_list, root, cls_labels, transform=transform)
        for workers in args.workers:
            plan = step_batches(len(dataset), args.batch_size, 0, 0, args.batches + 5)
            loader = DataLoader(SeededItems(dataset, seed=0), batch_sampler=plan, num_workers=workers,
                                pin_memory=torch.cuda.is_available(), prefetch_factor=4 if workers else None)
            t0, seen = None, 0
            for i, _ in enumerate(loader):
                if i == 5:  # the workers' start-up and first batches are not the steady state
                    t0 = time.perf_counter()
                elif i > 5:
                    seen += args.batch_size
            rate = seen / (time.perf_counter() - t0)
            print(json.dumps({"bench": "loader_stage1", "workers": workers, "batch": args.batch_size,
                              "crop": args.crop_size, "images_per_s": round(rate, 1),
                              "cpus": len(os.sched_getaffinity(0))}), flush=True)


if __name__ == "__main__":
    main()
