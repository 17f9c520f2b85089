"""The demo's claims that hold on any machine and seed, each PASS or FAIL, then the environment.

    python scripts/demo_claims.py WORK_DIR TOY_ROOT [--seeds N ...]

- SEAM's CAM scores above the plain-CAM baseline trained with the same budget;
- segmentation reaches at least 0.9x the pseudo labels it is trained on;
- every row scores at least 3x predicting background everywhere (on its own split).
With --seeds each claim is checked for each run WORK_DIR/seed_<n>. Writes WORK_DIR/claims.json;
--strict exits 1 when a claim fails.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tool.engine.files import atomic_path  # noqa: E402
from tool.engine.fingerprint import fingerprint, fingerprint_line  # noqa: E402
from tool.metrics import confusion_counts, iou_from_confusion  # noqa: E402
from tool.vis import load_label_png  # noqa: E402
from voc12.labels import load_img_id_list  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results import collect  # noqa: E402

SPLITS = {"train": "train.txt", "val": "val.txt"}


def all_background_miou(root, split, num_classes):
    """mIoU (%) of predicting background on every pixel of the split's ground truth."""
    conf = 0
    for name in load_img_id_list(os.path.join(root, SPLITS[split])):
        gt = load_label_png(os.path.join(root, "SegmentationClass", name + ".png"))
        conf = conf + confusion_counts(np.zeros_like(gt), gt, num_classes)
    return 100 * float(iou_from_confusion(conf).mean())


def claims(rows, floors):
    """[(claim, PASS/FAIL, the numbers)] for one run's results rows."""
    miou = {r["stage"]: r["miou"] for r in rows}
    split = {r["stage"]: r["split"] for r in rows}
    out = []
    seam, base = miou.get("SEAM CAM"), miou.get("baseline CAM (no ER/ECR/PCM)")
    out.append(("SEAM CAM above the plain-CAM baseline", seam is not None and base is not None and seam > base,
                f"{seam} vs {base}"))
    seg, rw = miou.get("segmentation (DeepLab)"), miou.get("random walk (pseudo labels)")
    out.append(("segmentation >= 0.9x its pseudo labels", seg is not None and rw is not None and seg >= 0.9 * rw,
                f"{seg} vs 0.9 x {rw}"))
    low = {s: m for s, m in miou.items() if m < 3 * floors[split[s]]}
    out.append(("every row >= 3x all-background", not low,
                ", ".join(f"{s} {m} < 3 x {floors[split[s]]:.2f}" for s, m in low.items())
                or f"all-background {', '.join(f'{k} {v:.2f}' for k, v in floors.items())}"))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work_dir")
    p.add_argument("toy_root", help="the demo's data folder (classes.txt, SegmentationClass, train.txt, val.txt)")
    p.add_argument("--seeds", type=int, nargs="+", default=None)
    p.add_argument("--crf_alphas", type=float, nargs=2, default=(0.5, 2.0), metavar=("LA", "HA"))
    p.add_argument("--strict", action="store_true", help="exit status 1 when a claim fails")
    args = p.parse_args(argv)
    runs = {s: os.path.join(args.work_dir, f"seed_{s}") for s in args.seeds} if args.seeds else {None: args.work_dir}
    report, ok = [], True
    for seed, run in runs.items():
        root = os.path.join(run, "toy") if args.seeds else args.toy_root
        with open(os.path.join(root, "classes.txt")) as f:
            num_classes = 1 + len(f.read().split())
        floors = {s: all_background_miou(root, s, num_classes) for s in SPLITS}
        for claim, passed, numbers in claims(collect(os.path.join(run, "results"), crf_alphas=args.crf_alphas),
                                             floors):
            ok &= passed
            report.append({"seed": seed, "claim": claim, "pass": passed, "numbers": numbers})
            where = f"seed {seed}: " if seed is not None else ""
            print(f"{'PASS' if passed else 'FAIL'}  {where}{claim} ({numbers})")
    environment = fingerprint()
    print(f"environment: {fingerprint_line(environment)}")
    with atomic_path(os.path.join(args.work_dir, "claims.json")) as tmp, open(tmp, "w") as f:
        json.dump({"claims": report, "environment": environment}, f, indent=1)
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
