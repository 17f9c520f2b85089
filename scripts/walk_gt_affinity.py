"""The random walk of infer_aff.py with AffinityNet's affinities replaced by the ground truth's
(1 between grid cells of one class, 0 across), beside the CAM pooled onto the walk's grid
without a walk: a reference for what affinities can add to these CAMs. Prints one JSON line of
mIoU (%).

    python scripts/walk_gt_affinity.py --dataset folder --data_root DIR --list train.txt \\
        --cam_dir WORK/cam --gt_dir DIR/SegmentationClass [--alpha 6 --beta 8 --logt 6 --radius 5]

Not a strict bound: hard affinities give every 8x8 cell its majority class, so boundaries finer
than a cell can score a little under the pooled CAM (the ground truth itself as the CAM: 94.2
pooled, 91.2 walked on the demo's 96-pixel images). A walk with ground-truth affinities that
adds little to `pooled_cam_miou` says the CAM's errors are whole regions, not affinities.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import evaluation  # noqa: E402
from tool.affinity import effective_radius, ground_truth_affinity, label_on_grid  # noqa: E402
from tool.engine.camfile import load_cam  # noqa: E402
from tool.metrics import confusion_counts, iou_from_confusion  # noqa: E402
from tool.randomwalk import cam_on_grid, random_walk, scores_to_label  # noqa: E402
from voc12.dataset import add_dataset_flags, dataset_from_args  # noqa: E402
from voc12.labels import load_img_id_list  # noqa: E402


def read_cam(path, num_classes):
    try:
        return load_cam(path, num_classes)
    except evaluation.FILE_ERRORS as exc:
        raise evaluation.file_error(path, exc) from exc


def gt_affinity_labels(cams, keys, gt, num_classes, alpha, beta, logt, radius):
    """(walked label, pooled label), each (H, W) uint8, for one image's CAMs and ground truth."""
    grid = cam_on_grid(cams, keys, alpha, num_classes)
    r = effective_radius(radius, grid.shape[1:])
    aff = torch.from_numpy(ground_truth_affinity(label_on_grid(gt), r))
    channels = np.concatenate([[0], np.asarray(keys) + 1])
    walked = random_walk(grid, aff, r, beta, logt)
    return (scores_to_label(walked, gt.shape, channels=channels),
            scores_to_label(grid, gt.shape, channels=channels))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--list", required=True, help="image ids to score (e.g. train.txt)")
    p.add_argument("--cam_dir", required=True, help="infer_seam.py's CAM files (<id>.npz)")
    p.add_argument("--gt_dir", required=True, help="ground-truth palette PNGs (<id>.png)")
    # infer_aff.py's defaults (the published walk); the demo passes its own, as to infer_aff.sh
    p.add_argument("--alpha", type=float, default=6, help="background power of the CAM")
    p.add_argument("--beta", type=float, default=8, help="power of the affinities")
    p.add_argument("--logt", type=int, default=6, choices=range(0, 16), metavar="0..15",
                   help="the walk takes 2^logt steps")
    p.add_argument("--radius", type=int, default=5)
    add_dataset_flags(p)
    args = p.parse_args(argv)
    try:
        data = dataset_from_args(args)
        ids = load_img_id_list(args.list)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    if not ids:
        raise SystemExit(f"error: {args.list}: no image ids")
    n = data.num_classes
    conf_walk = conf_pooled = 0
    for name in ids:
        cam_path, gt_path = os.path.join(args.cam_dir, name + ".npz"), os.path.join(args.gt_dir, name + ".png")
        try:
            keys, cams = read_cam(cam_path, n)
            gt = evaluation.load_gt(gt_path, n)
        except evaluation.EvalError as e:
            raise SystemExit(f"error: {e}") from None
        if cams.shape[1:] != gt.shape:
            raise SystemExit(f"error: {cam_path}: CAM is {cams.shape[1:]}, ground truth is {gt.shape}")
        walked, pooled = gt_affinity_labels(cams, keys, gt, n, args.alpha, args.beta, args.logt, args.radius)
        conf_walk = conf_walk + confusion_counts(walked, gt, n)
        conf_pooled = conf_pooled + confusion_counts(pooled, gt, n)
    print(json.dumps({"images": len(ids),
                      "walk_gt_affinity_miou": round(float(iou_from_confusion(conf_walk).mean()) * 100, 2),
                      "pooled_cam_miou": round(float(iou_from_confusion(conf_pooled).mean()) * 100, 2)}))


if __name__ == "__main__":
    main()
