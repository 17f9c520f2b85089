"""Picture for the demo: image, ground truth, baseline CAM, SEAM CAM, random walk, segmentation.

Usage: python scripts/demo_figure.py WORK_DIR DATA_ROOT LIST [--n 4] [--out WORK_DIR/demo.png]
CAM columns show the max foreground CAM over the image; label columns use the VOC palette.
DATA_ROOT is a VOC-style folder (JPEGImages/, SegmentationClass/) of any class count.
Column titles carry each stage's mIoU from WORK_DIR/results.json (scripts/results.py) when present.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tool.camfile import load_cam  # noqa: E402
from tool.vis import colorize, load_label_png, max_cam_overlay, save_grid_png  # noqa: E402
from voc12.data import image_path, load_image  # noqa: E402
from voc12.labels import load_img_id_list  # noqa: E402

COLUMNS = ("image", "ground truth", "baseline CAM", "SEAM CAM", "random walk", "segmentation")
# the results-table row behind each column
COLUMN_ROWS = {"baseline CAM": "baseline CAM (no ER/ECR/PCM)", "SEAM CAM": "SEAM CAM",
               "random walk": "random walk (pseudo labels)", "segmentation": "segmentation (DeepLab)"}


def column_titles(work_dir):
    """COLUMNS with a second line '<mIoU> <split>' where the results table has the row."""
    path = os.path.join(work_dir, "results.json")
    if not os.path.exists(path):
        return COLUMNS
    with open(path) as f:
        rows = {r["stage"]: r for r in json.load(f)["rows"]}
    titles = []
    for col in COLUMNS:
        r = rows.get(COLUMN_ROWS.get(col))
        titles.append(f"{col}\n{r['miou']:.1f} {r['split']}" if r else col)
    return tuple(titles)


def row(work_dir, data_root, name):
    img = np.asarray(load_image(image_path(data_root, name)))
    blank = np.full_like(img, 255)
    cells = [img, colorize(load_label_png(os.path.join(data_root, "SegmentationClass", name + ".png")))]
    for cam_dir in ("cam_baseline", "cam"):
        path = os.path.join(work_dir, cam_dir, name + ".npz")
        cells.append(max_cam_overlay(img, load_cam(path)[1]) if os.path.exists(path) else blank)
    for label_dir in ("rw", "seg"):
        path = os.path.join(work_dir, label_dir, name + ".png")
        cells.append(colorize(load_label_png(path)) if os.path.exists(path) else blank)
    return cells


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work_dir")
    p.add_argument("data_root")
    p.add_argument("list")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    names = load_img_id_list(args.list)[: args.n]
    out = args.out or os.path.join(args.work_dir, "demo.png")
    save_grid_png(out, [row(args.work_dir, args.data_root, n) for n in names], labels=column_titles(args.work_dir))
    print(f"picture: {out}")


if __name__ == "__main__":
    main()
