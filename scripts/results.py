"""Collect the evaluation JSONs of a work folder into the results table (Markdown + JSON).

Usage: python scripts/results.py WORK_DIR [--title TITLE] [--reference voc12|coco14] [--crf_alphas LA HA]
                                 [--seeds N ...]
With --seeds, the runs are WORK_DIR/seed_<n>, and each row shows the mean +- std over the seeds
beside each seed's value. Under the table, a second one gives each row's per-class IoU (class x
row; with --seeds the mean over the seeds). results.json holds the rows and the environment
fingerprint.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tool.engine.files import atomic_path  # noqa: E402
from tool.engine.fingerprint import fingerprint, fingerprint_line  # noqa: E402

# (row, result files (best of them is reported), split, published figure on VOC, on COCO): the
# SEAM paper's CAM and random-walk figures and the published README's 64.5; no published source
# gives the baseline's or CAM + CRF's.
# COCO: the SEAM authors published none; 31.9 val is a third-party re-implementation's (docs/datasets.md).
ROWS = [
    ("baseline CAM (no ER/ECR/PCM)", ["cam_baseline.json"], "train", "-", "-"),
    ("SEAM CAM", ["cam.json"], "train", "55.41", "-"),
    ("SEAM CAM + CRF", None, "train", "-", "-"),  # the maps of the two --crf_alphas
    ("random walk (pseudo labels)", ["rw.json"], "train", "63.61", "-"),
    ("segmentation (DeepLab)", ["seg.json"], "val", "64.5", "about 31.9 (third-party)"),
]
REFERENCES = {"voc12": 0, "coco14": 1}


def collect(results_dir, reference="voc12", crf_alphas=(4.0, 24.0)):
    rows = []
    for name, files, split, *papers in ROWS:
        paper = papers[REFERENCES[reference]]
        files = files or [f"crf_{float(a)!r}.json" for a in crf_alphas]  # named as infer_seam.py names the folders
        found = []
        for f in files:
            path = os.path.join(results_dir, f)
            if os.path.exists(path):
                with open(path) as fh:
                    found.append((json.load(fh), f))
        if not found:
            continue
        best, source = max(found, key=lambda r: r[0]["miou"])
        note = source[:-5]
        if best.get("t") is not None:
            note += f", background t={best['t']:.2f}"
        absent = set(best.get("absent_classes") or ())  # no ground truth in the list: no IoU to show
        class_iou = best.get("class_iou")
        if class_iou is not None:
            class_iou = {c: None if c in absent else v for c, v in class_iou.items()}
        rows.append({"stage": name, "miou": round(best["miou"], 2), "split": split, "images": best.get("num_images"),
                     "paper": paper, "source": note, "class_iou": class_iou})
    return rows


def over_seeds(per_seed):
    """{seed: rows} -> rows with `miou` the mean over the seeds that have the row, `std` (population,
    0 for one seed) and `per_seed` {seed: miou}."""
    merged = {}
    for seed, rows in per_seed.items():
        for r in rows:
            m = merged.setdefault(r["stage"], {**r, "per_seed": {}})
            m["per_seed"][str(seed)] = r["miou"]
    for m in merged.values():
        values = np.array(list(m["per_seed"].values()))
        m["miou"], m["std"] = round(float(values.mean()), 2), round(float(values.std()), 2)
        m["class_iou"] = mean_class_iou([r["class_iou"] for rows in per_seed.values() for r in rows
                                         if r["stage"] == m["stage"] and r.get("class_iou")])
    order = [name for name, *_ in ROWS]
    return sorted(merged.values(), key=lambda r: order.index(r["stage"]))


def markdown(rows, title, reference="voc12", environment=None):
    seeds = sorted({s for r in rows for s in r.get("per_seed", {})}, key=int)
    ref = "VOC" if reference == "voc12" else "COCO"
    if seeds:
        header = f"| stage | mIoU (%) mean +- std | {' | '.join(f'seed {s}' for s in seeds)} | split | images | " \
                 f"reference ({ref}) | from |"
    else:
        header = f"| stage | mIoU (%) | split | images | reference ({ref}) | from |"
    lines = [f"### {title}", "", header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        if seeds:
            cells = (r["stage"], f"{r['miou']:.2f} +- {r['std']:.2f}",
                     *(f"{r['per_seed'][s]:.2f}" if s in r["per_seed"] else "-" for s in seeds),
                     r["split"], r["images"], r["paper"], r["source"])
        else:
            cells = (r["stage"], f"{r['miou']:.2f}", r["split"], r["images"], r["paper"], r["source"])
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += class_table(rows, bool(seeds))
    if environment is not None:
        lines += ["", f"Environment: {fingerprint_line(environment)}"]
    return "\n".join(lines) + "\n"


def mean_class_iou(per_seed):
    """{class: mean IoU} over the seeds' {class: IoU}; None for a class without ground truth in
    some seed; None overall unless every seed gives the same classes."""
    if not per_seed or any(set(ious) != set(per_seed[0]) for ious in per_seed):
        return None
    return {c: None if any(ious[c] is None for ious in per_seed) else float(np.mean([ious[c] for ious in per_seed]))
            for c in per_seed[0]}


def class_table(rows, over_seeds=False):
    """Markdown lines of the per-class IoU: a line per class, a column per row that has them."""
    rows = [r for r in rows if r.get("class_iou")]
    if not rows:
        return []
    classes = list(dict.fromkeys(c for r in rows for c in r["class_iou"]))
    mean = " (mean over the seeds)" if over_seeds else ""
    lines = ["", f"Per-class IoU (%){mean}:", "", "| class | " + " | ".join(r["stage"] for r in rows) + " |",
             "|---|" + "---|" * len(rows)]
    for c in classes:
        cells = ("-" if r["class_iou"].get(c) is None else f"{r['class_iou'][c]:.2f}" for r in rows)
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    if any(v is None for r in rows for v in r["class_iou"].values()):
        lines += ["", "-: the row's list has no ground truth of that class (its mean counts it as 0)."]
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work_dir")
    p.add_argument("--title", default="Results")
    p.add_argument("--reference", default="voc12", choices=tuple(REFERENCES), help="whose published figures")
    p.add_argument("--crf_alphas", type=float, nargs=2, default=(4.0, 24.0), metavar=("LA", "HA"),
                   help="the CRF powers whose maps eval_cam.sh scored (a work folder may hold older ones)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="runs in WORK_DIR/seed_<n>: mean +- std over them beside each seed's value")
    args = p.parse_args(argv)
    if args.seeds:
        per_seed = {}
        for seed in args.seeds:
            results_dir = os.path.join(args.work_dir, f"seed_{seed}", "results")
            per_seed[seed] = collect(results_dir, args.reference, args.crf_alphas)
            if not per_seed[seed]:
                raise SystemExit(f"error: {results_dir}: no evaluation results found")
        rows = over_seeds(per_seed)
    else:
        results_dir = os.path.join(args.work_dir, "results")
        rows = collect(results_dir, args.reference, args.crf_alphas)
        if not rows:
            raise SystemExit(f"error: {results_dir}: no evaluation results found")
    environment = fingerprint()
    text = markdown(rows, args.title, args.reference, environment)
    with atomic_path(os.path.join(args.work_dir, "results.md")) as tmp, open(tmp, "w") as f:
        f.write(text)
    with atomic_path(os.path.join(args.work_dir, "results.json")) as tmp, open(tmp, "w") as f:
        json.dump({"rows": rows, "seeds": args.seeds, "environment": environment}, f, indent=1)
    print(text)
    print(f"written: {os.path.join(args.work_dir, 'results.md')} and results.json")


if __name__ == "__main__":
    main()
