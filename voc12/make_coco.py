"""Prepare MS-COCO 2014 for every stage (voc12.dataset kind `coco14`), once:

    python -m voc12.make_coco --coco_root COCO [--splits train2014 val2014] [--workers N] [--overwrite]

Reads COCO/annotations/instances_<split>.json with pycocotools (the standard reader) and writes
into COCO/ (images stay where they are, in COCO/<split>/):
  classes.txt              the 80 category names in id order, spaces as underscores (class 1..80)
  SegmentationClass/<id>.png   semantic masks: 0 background, 1..80, 255 crowd regions
  train.txt, val.txt       the ids of train2014 / val2014 images with at least one annotation
                           (82,081 and 40,137 on the real set), as WSSS papers use them
  cls_labels.txt           image-level labels: the categories of an image's annotations, crowd
                           included; written last, so its presence means the preparation finished
Overlaps: instances are painted largest first, so a smaller object in front of a larger one
keeps its pixels; crowd regions become 255 only where no instance lies. Existing masks are
kept unless --overwrite (a killed run continues); the lists of the splits built are rewritten,
and the labels of images of other splits already in cls_labels.txt are kept.
"""
import argparse
import os
import sys

import numpy as np

from tool.engine.files import save_label_png
from tool.engine.inference import HelperPool
from tool.engine.runtime import progress
from voc12.labels import load_cls_labels, write_cls_labels, write_list

LIST_NAMES = {"train2014": "train", "val2014": "val"}


def category_classes(categories):
    """COCO categories -> (dict category id -> class index 1..N in id order, class names)."""
    cats = sorted(categories, key=lambda c: c["id"])
    return {c["id"]: i + 1 for i, c in enumerate(cats)}, [c["name"].replace(" ", "_") for c in cats]


def semantic_mask(height, width, anns, ann_to_mask, class_of):
    """(H, W) uint8 mask of one image's annotations: non-crowd instances painted in decreasing
    area (the smaller wins an overlap), then crowd regions as 255 where no instance is."""
    mask = np.zeros((height, width), np.uint8)
    for ann in sorted((a for a in anns if not a.get("iscrowd")), key=lambda a: -a["area"]):
        mask[ann_to_mask(ann) > 0] = class_of[ann["category_id"]]
    for ann in (a for a in anns if a.get("iscrowd")):
        mask[(ann_to_mask(ann) > 0) & (mask == 0)] = 255
    return mask


_COCO = None  # the parent's reader, shared with forked workers


def _write_mask(task):
    image_id, path, class_of = task
    info = _COCO.imgs[image_id]
    anns = _COCO.loadAnns(_COCO.getAnnIds(imgIds=image_id))
    save_label_png(path, semantic_mask(info["height"], info["width"], anns, _COCO.annToMask, class_of))


def build_split(coco_root, split, workers=1, overwrite=False):
    """Masks of one split; returns (dict id -> float32 (N,) multi-hot, in list order; class names)."""
    global _COCO
    ann_file = os.path.join(coco_root, "annotations", f"instances_{split}.json")
    if not os.path.isfile(ann_file):
        raise FileNotFoundError(f"{ann_file}: annotation file not found")
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise SystemExit("error: voc12.make_coco needs pycocotools (pip install pycocotools)") from None
    _COCO = coco = COCO(ann_file)
    class_of, names = category_classes(coco.loadCats(coco.getCatIds()))
    labels, tasks = {}, []
    for image_id in sorted(coco.imgs):
        anns = coco.imgToAnns.get(image_id, [])
        if not anns:
            continue
        name = os.path.splitext(coco.imgs[image_id]["file_name"])[0]
        labels[name] = np.zeros(len(names), np.float32)
        labels[name][[class_of[a["category_id"]] - 1 for a in anns]] = 1.0
        path = os.path.join(coco_root, "SegmentationClass", name + ".png")
        if overwrite or not os.path.isfile(path):
            tasks.append((image_id, path, class_of))
    if workers > 1 and len(tasks) > 1:
        with HelperPool(workers, "fork") as pool:
            done = pool.map(_write_mask, tasks, chunksize=64)  # forks the workers before the bar's thread starts
            with progress(len(tasks), desc=split) as bar:
                for _ in done:
                    bar.update()
    else:
        for task in progress(tasks, desc=split):
            _write_mask(task)
    return labels, names


def build(coco_root, splits=("train2014", "val2014"), workers=1, overwrite=False):
    all_labels, names = {}, None
    for split in splits:
        labels, split_names = build_split(coco_root, split, workers, overwrite)
        ids = list(labels)
        if names is not None and split_names != names:
            raise ValueError(f"{split}: its categories differ from the previous split's")
        names = split_names
        write_list(os.path.join(coco_root, LIST_NAMES.get(split, split) + ".txt"), ids)
        all_labels.update(labels)
        print(f"{split}: {len(ids)} images with annotations")
    label_file = os.path.join(coco_root, "cls_labels.txt")
    try:  # another split's labels stay; none yet, or a file of other categories: this run's splits alone
        multihot = {**load_cls_labels(label_file, names), **all_labels}
    except (FileNotFoundError, ValueError):
        multihot = all_labels
    write_list(os.path.join(coco_root, "classes.txt"), names)
    write_cls_labels(label_file, multihot, names)
    return all_labels, names


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coco_root", required=True, help="folder with annotations/ and the image folders")
    p.add_argument("--splits", nargs="+", default=("train2014", "val2014"))
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="mask-writing processes")
    p.add_argument("--overwrite", action="store_true", help="rewrite masks that exist")
    args = p.parse_args(argv)
    try:
        labels, names = build(args.coco_root, tuple(args.splits), args.workers, args.overwrite)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote masks, lists and labels of {len(labels)} images ({len(names)} classes) to {args.coco_root}")


if __name__ == "__main__":
    main()
