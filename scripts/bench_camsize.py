"""Disk use of infer_seam.py's CAM and CRF files per storage dtype (tool.engine.camfile.STORAGE).

    python scripts/bench_camsize.py [--images 12] [--size 448]

Writes the files of `--images` synthetic images (voc12.toy at --size; CAMs: each present
object's mask, blurred on the 1/8 grid and upsampled as the network's are; the two CRF maps:
the real dense CRF of infer_seam.py at alpha 4 and 24) with each storage dtype, and prints one
JSON line per dtype: the measured bytes per image and per class map per megapixel, and the disk
use per 1,000 images this predicts for VOC (500 x 375, the 1.56 classes per train_aug image of
voc12/cls_labels.txt) and COCO (640 x 480, the COCO paper's 3.5 categories per image). A file
holds K CAM maps and each CRF file K + 1, so bytes scale with pixels x maps.
"""
import argparse
import json
import os
import sys
import tempfile

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tool.cam import normalize_cams  # noqa: E402
from tool.crf import crf_with_alpha, require_densecrf  # noqa: E402
from tool.engine import camfile  # noqa: E402
from voc12.toy import make_sample  # noqa: E402

SETS = {"voc12": (500 * 375, 1.56), "coco14": (640 * 480, 3.5)}  # pixels, classes per image


def cam_like(instances, classes, rng):
    """(K, H, W) normalised maps shaped like CAMs: blurred masks on the stride-8 grid, upsampled."""
    h, w = instances.shape
    maps = []
    for k in sorted(set(classes)):
        mask = np.isin(instances, [i + 1 for i, c in enumerate(classes) if c == k]).astype(np.float32)
        grid = cv2.resize(mask, (w // 8, h // 8), interpolation=cv2.INTER_AREA)
        grid = cv2.GaussianBlur(grid, (0, 0), 1.5) + rng.normal(0, 0.03, grid.shape).astype(np.float32)
        maps.append(cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR))
    return normalize_cams(np.stack(maps))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--size", type=int, default=448)
    args = p.parse_args(argv)
    require_densecrf()
    samples = []
    for i in range(args.images):
        rng = np.random.default_rng([0, 7, i])
        img, instances, classes = make_sample(rng, args.size)
        cams = cam_like(instances, classes, rng)
        samples.append((cams, [crf_with_alpha(img, cams, a) for a in (4.0, 24.0)]))
    with tempfile.TemporaryDirectory() as tmp:
        for storage in camfile.STORAGE:
            cam_bytes = crf_bytes = maps = 0
            for i, (cams, crfs) in enumerate(samples):
                keys = np.arange(len(cams))
                camfile.save_cam(os.path.join(tmp, f"{storage}_{i}_cam.npz"), keys, cams, storage)
                cam_bytes += os.path.getsize(os.path.join(tmp, f"{storage}_{i}_cam.npz"))
                for j, scores in enumerate(crfs):
                    path = os.path.join(tmp, f"{storage}_{i}_crf{j}.npz")
                    camfile.save_crf(path, np.arange(len(scores)), scores, storage)
                    crf_bytes += os.path.getsize(path)
                maps += len(cams) + sum(len(s) for s in crfs)
            per_map_mpx = (cam_bytes + crf_bytes) / maps / (args.size**2 / 1e6)
            line = {"storage": storage, "images": args.images, "size": args.size,
                    "cam_bytes_per_image": round(cam_bytes / args.images),
                    "crf_bytes_per_image": round(crf_bytes / args.images),
                    "bytes_per_map_per_megapixel": round(per_map_mpx)}
            for name, (pixels, k) in SETS.items():
                maps_per_image = k + 2 * (k + 1)  # the CAM file and the two CRF files
                line[f"{name}_gb_per_1000_images"] = round(per_map_mpx * maps_per_image * pixels / 1e6 * 1000 / 1e9, 3)
            print(json.dumps(line))


if __name__ == "__main__":
    main()
