"""The ablation's table and plot from its cells' evaluation JSONs (scripts/ablation.sh).

Usage: python scripts/ablation_table.py WORK_DIR --settings S ... --seeds N ... [--paper seam=55.41] [--title T]
Reads WORK_DIR/<setting>/seed_<n>/cam.json (evaluation.py --curve --out_json) and writes, in WORK_DIR:
  ablation.md    setting | mIoU mean +- std | per seed | best background threshold per seed | paper
  ablation.json  the same rows, each seed's per-class IoU and curve, and the environment fingerprint
  ablation.png   mIoU per setting: each seed a dot, the mean a bar
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tool.engine.files import atomic_path, save_image  # noqa: E402
from tool.engine.fingerprint import fingerprint, fingerprint_line  # noqa: E402

WHAT = {"baseline": "one branch, classification only", "er": "+ ER", "pcm": "+ PCM (min-pool term)",
        "er_pcm": "+ ER + PCM", "seam": "ER + PCM + ECR, rescale 0.3 (published)", "flip": "SEAM, flip",
        "rotate": "SEAM, rotate -15..15", "translate": "SEAM, translate -0.1..0.1", "rescale_0.5": "SEAM, rescale 0.5",
        "rescale_0.7": "SEAM, rescale 0.7", "rescale_0.5+flip": "SEAM, rescale 0.5 + flip"}


def collect(work_dir, settings, seeds):
    """Rows {setting, what, mean, std, per_seed {seed: miou}, t {seed: t}, class_iou, curve}; a
    missing cell is an error naming its file."""
    rows = []
    for setting in settings:
        cells = {}
        for seed in seeds:
            path = os.path.join(work_dir, setting, f"seed_{seed}", "cam.json")
            if not os.path.isfile(path):
                raise SystemExit(f"error: {path}: not found (the cell has not finished: run scripts/ablation.sh)")
            with open(path) as f:
                cells[seed] = json.load(f)
        mious = np.array([c["miou"] for c in cells.values()])
        rows.append({
            "setting": setting, "what": WHAT.get(setting, setting), "mean": round(float(mious.mean()), 2),
            "std": round(float(mious.std()), 2), "per_seed": {s: round(c["miou"], 2) for s, c in cells.items()},
            "t": {s: c["t"] for s, c in cells.items()}, "class_iou": {s: c["class_iou"] for s, c in cells.items()},
            "curve": {s: c["curve"] for s, c in cells.items()},
        })  # fmt: skip
    return rows


def markdown(rows, title, paper, environment):
    lines = [f"# {title}", "", "| setting | what | mIoU (%) mean +- std | per seed | best t per seed | paper |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        seeds = ", ".join(f"{s}: {v:.2f}" for s, v in r["per_seed"].items())
        ts = ", ".join(f"{s}: {t:.2f}" for s, t in r["t"].items())
        lines.append(f"| {r['setting']} | {r['what']} | {r['mean']:.2f} +- {r['std']:.2f} | {seeds} | {ts} | "
                     f"{paper.get(r['setting'], '-')} |")
    lines += ["", f"std: over the {len(rows[0]['per_seed'])} seeds (population). Environment: "
              f"{fingerprint_line(environment)}", ""]
    return "\n".join(lines)


def plot(rows, title, width=720, row_h=26, left=250, margin=20):
    """mIoU per setting on one axis: a grey bar to the mean, a dot per seed."""
    values = [v for r in rows for v in r["per_seed"].values()]
    lo, hi = np.floor(min(values) / 5) * 5 - 5, np.ceil(max(values) / 5) * 5 + 5
    top = 40
    img = Image.new("RGB", (width, top + row_h * len(rows) + 40), "white")
    draw = ImageDraw.Draw(img)

    def x(v):
        return left + (v - lo) / (hi - lo) * (width - left - margin)

    draw.text((margin, 10), title, fill="black")
    for tick in np.arange(lo, hi + 1e-6, 5):
        draw.line([(x(tick), top - 4), (x(tick), top + row_h * len(rows))], fill=(225, 225, 225))
        draw.text((x(tick) - 8, top + row_h * len(rows) + 6), f"{tick:g}", fill="black")
    for i, r in enumerate(rows):
        y = top + i * row_h + row_h / 2
        draw.text((margin, y - 6), f"{r['setting']}  {r['mean']:.1f}", fill="black")
        draw.rectangle([x(lo), y - 6, x(r["mean"]), y + 6], fill=(190, 190, 210))
        for v in r["per_seed"].values():
            draw.ellipse([x(v) - 4, y - 4, x(v) + 4, y + 4], fill=(200, 40, 40))
    draw.text((left, top + row_h * len(rows) + 22), "CAM mIoU (%): bar = mean, dots = seeds", fill="black")
    return img


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work_dir")
    p.add_argument("--settings", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, required=True)
    p.add_argument("--paper", nargs="*", default=[], help="setting=figure: a published figure for that row")
    p.add_argument("--title", default="SEAM stage-1 ablation")
    args = p.parse_args(argv)
    paper = dict(item.split("=", 1) for item in args.paper)
    rows = collect(args.work_dir, args.settings, args.seeds)
    environment = fingerprint()
    text = markdown(rows, args.title, paper, environment)
    with atomic_path(os.path.join(args.work_dir, "ablation.md")) as tmp, open(tmp, "w") as f:
        f.write(text)
    with atomic_path(os.path.join(args.work_dir, "ablation.json")) as tmp, open(tmp, "w") as f:
        json.dump({"title": args.title, "rows": rows, "paper": paper, "environment": environment}, f, indent=1)
    save_image(os.path.join(args.work_dir, "ablation.png"), plot(rows, args.title))
    print(text)
    return 0


if __name__ == "__main__":
    main()
