"""Look at a run: per image its input, ground truth, CAMs, CRF map, random-walk label and
segmentation, whichever the work folder has, each titled with that image's IoU.

    python scripts/figure.py WORK_DIR --list FILE [--ids ID ...] [--out WORK_DIR/run.png]
                             [--dataset voc12|coco14|folder --data_root ROOT] [--cams cam ...]

Columns come from WORK_DIR/<cam>/ (CAM .npz, shown as the max foreground CAM; labelled at the
background threshold of WORK_DIR/results/<cam>.json, else --cam_t), the lowest-power
WORK_DIR/crf_<alpha>/, WORK_DIR/rw/ and WORK_DIR/seg/ (label PNGs). A column whose folder is
absent is left out, said in one line. The IoU of an image is the mean over the classes in its
ground truth or prediction; without ground truth there is no ground-truth column and no IoU.
"""
import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tool.cam import cams_to_label  # noqa: E402
from tool.engine.camfile import load_cam, load_crf  # noqa: E402
from tool.engine.files import save_image  # noqa: E402
from tool.engine.runtime import ArgumentParser, run_script  # noqa: E402
from tool.metrics import confusion_counts  # noqa: E402
from tool.vis import colorize, grid_image, load_label_png, max_cam_overlay  # noqa: E402
from voc12.data import load_image  # noqa: E402
from voc12.dataset import add_dataset_flags, dataset_from_args  # noqa: E402
from voc12.labels import load_img_id_list  # noqa: E402


def image_iou(pred, gt, num_classes):
    """Mean IoU (%) over the classes in `gt` or `pred` of one image (255 in gt ignored)."""
    conf = confusion_counts(pred, gt, num_classes)
    tp = np.diag(conf[:, :num_classes]).astype(np.float64)
    union = conf.sum(1) + conf[:, :num_classes].sum(0) - tp
    present = union > 0
    return 100 * float((tp[present] / union[present]).mean()) if present.any() else 100.0


def columns(work_dir, cams, cam_t):
    """[(title, kind, folder, threshold)] of what WORK_DIR holds, and the missing folder names."""
    found, missing = [], []
    for cam in cams:
        folder = os.path.join(work_dir, cam)
        if not os.path.isdir(folder):
            missing.append(cam + "/")
            continue
        t = cam_t
        result = os.path.join(work_dir, "results", cam + ".json")
        if os.path.exists(result):
            with open(result) as f:
                t = json.load(f).get("t") or cam_t
        found.append((f"{cam} (t={t:.2f})", "cam", folder, t))
    crfs = sorted(glob.glob(os.path.join(work_dir, "crf_*")), key=lambda d: float(d.rsplit("_", 1)[1]))
    if crfs:
        found.append((os.path.basename(crfs[0]), "crf", crfs[0], None))
    else:
        missing.append("crf_*/")
    for name, title in (("rw", "random walk"), ("seg", "segmentation")):
        folder = os.path.join(work_dir, name)
        if os.path.isdir(folder):
            found.append((title, "png", folder, None))
        else:
            missing.append(name + "/")
    return found, missing


def cells(data, name, cols, num_classes, with_gt):
    img = np.asarray(load_image(data.image_path(name)))
    gt = load_label_png(data.mask_path(name)) if with_gt else None
    row, captions = [img], [None]
    if gt is not None:
        row.append(colorize(gt))
        captions.append(None)
    blank = np.full_like(img, 255)
    for _, kind, folder, t in cols:
        path = os.path.join(folder, name + (".png" if kind == "png" else ".npz"))
        if not os.path.exists(path):
            row.append(blank)
            captions.append("missing")
            continue
        if kind == "cam":
            keys, maps = load_cam(path, num_classes)
            row.append(max_cam_overlay(img, maps))
            pred = cams_to_label(maps, keys, t)
        elif kind == "crf":
            keys, scores = load_crf(path, num_classes)
            pred = keys[np.argmax(scores, axis=0)].astype(np.uint8)
            row.append(colorize(pred))
        else:
            pred = load_label_png(path)
            row.append(colorize(pred))
        captions.append(f"IoU {image_iou(pred, gt, num_classes):.1f}" if gt is not None else None)
    return row, captions


def get_parser():
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work_dir")
    p.add_argument("--list", required=True, help="image list (the first --n images are drawn, or --ids)")
    p.add_argument("--ids", nargs="+", default=None, help="these images of the list")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--out", default=None, help="default WORK_DIR/run.png")
    p.add_argument("--cams", nargs="+", default=["cam"], help="CAM folders of WORK_DIR, one column each")
    p.add_argument("--cam_t", type=float, default=0.26, help="background threshold without a result file")
    add_dataset_flags(p)
    p.add_argument("--debug", action="store_true", help="show the traceback behind a one-line error")
    return p


def run(args):
    data = dataset_from_args(args)
    names = load_img_id_list(args.list)
    if args.ids:
        unknown = [i for i in args.ids if i not in names]
        if unknown:
            raise ValueError(f"--ids {unknown[0]}: not in {args.list}")
        names = args.ids
    else:
        names = names[: args.n]
    cols, missing = columns(args.work_dir, args.cams, args.cam_t)
    if missing:
        print(f"not in {args.work_dir}: {', '.join(missing)} (those columns are left out)")
    with_gt = all(os.path.exists(data.mask_path(n)) for n in names)
    if not with_gt:
        print("no ground truth for these images: no ground-truth column and no IoU")
    rows, captions = zip(*(cells(data, n, cols, data.num_classes, with_gt) for n in names))
    titles = ["image", *(["ground truth"] if with_gt else []), *(title for title, *_ in cols)]
    out = args.out or os.path.join(args.work_dir, "run.png")
    save_image(out, grid_image(rows, labels=titles, captions=captions))
    print(f"picture: {out}")


def main(argv=None):
    return run_script(get_parser(), run, argv)


if __name__ == "__main__":
    main()
