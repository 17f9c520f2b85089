"""Evaluate label maps or CAMs against ground-truth masks: per-class IoU and mIoU.

As the published evaluation computes them; VOC's 21 classes by default, another data set's with
--dataset/--data_root.

Counts are accumulated over the whole list, ignoring GT 255; mIoU is the mean over all classes.
Prediction PNGs hold class indices 0..num_classes-1; the value 255 means "no class" and counts
as a wrong prediction for its pixel. CAM files (--type npz: arrays `keys`, 0-based foreground
class ids, and `cams`, K x H x W) are turned into labels with a constant background score t;
--curve sweeps t = 0.00 .. 0.59 (--start 0, --end 60, in hundredths) reading every file once, and
with --out_json draws the curve beside the JSON (<name>.png; --no_plot skips it). CRF files of infer_seam.py
(--type crf: arrays `keys`, 0 then 1-based class ids, and `scores`) are scored by their argmax.
"""
import datetime
import json
import os
import pickle
import zipfile
from typing import NamedTuple

import numpy as np

from tool.engine.camfile import check_cam, load_cam, load_crf
from tool.engine.files import WriteError, atomic_path, save_image
from tool.engine.fingerprint import fingerprint
from tool.engine.inference import HelperPool
from tool.engine.runtime import ArgumentParser, count, group, non_negative_int, run_script
from tool.metrics import cam_threshold_confusions, confusion_counts, iou_from_confusion
from tool.vis import curve_image, load_label_png
from voc12.dataset import add_dataset_flags, open_dataset
from voc12.labels import CLASS_NAMES, load_img_id_list

CURVE_THRESHOLDS = np.arange(60) / 100  # the default --start 0 --end 60
CAM_TYPES = ("npz", "npy")
LABEL_TYPES = ("png", "crf")
# What reading one broken or foreign file can raise; reported as a one-line error naming it.
FILE_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError)


class EvalError(ValueError):
    """Bad input: the message is one line naming the file or flag."""


class EvalSource(NamedTuple):
    """Where and how to read one list's predictions (picklable for worker processes)."""

    predict_dir: str
    gt_dir: str
    pred_type: str  # png | crf | npz | npy
    thresholds: tuple  # background thresholds for CAM types; () for png
    num_classes: int


def file_error(path, exc):
    """The EvalError (one line naming `path`) for an exception reading that file."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        message = "no such file"
    return EvalError(message if path in message else f"{path}: {message}")


def load_gt(path, num_classes):
    try:
        gt = load_label_png(path)
    except FILE_ERRORS as exc:
        raise file_error(path, exc) from exc
    bad = (gt >= num_classes) & (gt != 255)
    if bad.any():
        raise EvalError(f"{path}: ground truth value {int(gt[bad][0])} outside 0..{num_classes - 1} and 255")
    return gt


def load_cam_pickled_dict(path, num_classes):
    """(keys, cams) from the published pickled {class id (0-based): H x W array} .npy file."""
    obj = np.load(path, allow_pickle=True)  # legacy published format: only reached with --allow_pickle
    is_boxed = isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ()
    cam_dict = obj.item() if is_boxed else None
    if not isinstance(cam_dict, dict):
        raise EvalError(f"{path}: expected a pickled dict {{class id: H x W array}}")
    keys = np.array(sorted(cam_dict), dtype=np.int64)
    if not keys.size:
        raise EvalError(f"{path}: empty CAM dict (no size to evaluate)")
    cams = np.stack([np.asarray(cam_dict[k], dtype=np.float32) for k in keys.tolist()])
    check_cam(path, keys, cams, num_classes)
    return keys, cams


def image_confusions(img_id, source):
    """(len(thresholds) or 1, n, n + 1) confusion counts of one image, each file read once."""
    n = source.num_classes
    gt_path = os.path.join(source.gt_dir, f"{img_id}.png")
    ext = "npz" if source.pred_type == "crf" else source.pred_type
    pred_path = os.path.join(source.predict_dir, f"{img_id}.{ext}")
    gt = load_gt(gt_path, n)
    try:
        if source.pred_type == "png":
            pred = load_label_png(pred_path)
        elif source.pred_type == "crf":
            keys, scores = load_crf(pred_path, n)
            pred = keys[np.argmax(scores, axis=0)].astype(np.uint8)  # a CRF file is scored by its argmax
        else:  # CAMs (K, H, W)
            keys, pred = (load_cam if source.pred_type == "npz" else load_cam_pickled_dict)(pred_path, n)
        if pred.shape[-2:] != gt.shape:
            raise EvalError(f"{pred_path}: size {pred.shape[-2:]} differs from ground truth {gt.shape}")
        if source.pred_type in LABEL_TYPES:
            return confusion_counts(pred, gt, n)[None]
        return cam_threshold_confusions(pred, keys, gt, source.thresholds, n)
    except FILE_ERRORS as exc:  # an EvalError (a ValueError) names the file already: file_error keeps it
        raise file_error(pred_path, exc) from exc


def _confusions_of_chunk(task):
    """Worker: summed confusions of a chunk of ids (an EvalError at the first bad file)."""
    img_ids, source = task
    return sum(image_confusions(img_id, source) for img_id in img_ids)


def evaluate_list(img_ids, source, num_workers=1, start_method=None):
    """Summed (len(thresholds) or 1, n, n + 1) confusions over `img_ids`; EvalError on bad input.

    Works with any multiprocessing start method: the worker is a top-level function and only
    plain data (an EvalError pickles as its message) crosses the process boundary.
    """
    img_ids = list(img_ids)
    if not img_ids:
        raise EvalError("empty image list")
    n_chunks = min(len(img_ids), max(1, num_workers) * 4)
    tasks = [(chunk.tolist(), source) for chunk in np.array_split(img_ids, n_chunks)]
    if num_workers <= 1:
        return sum(map(_confusions_of_chunk, tasks))
    with HelperPool(num_workers, start_method) as pool:
        # map keeps list order, so the error raised is the first one in the list.
        return sum(pool.map(_confusions_of_chunk, tasks))


def class_names_from_args(args):
    """The class names to report: the data set's (--data_root; VOC's built in), or with only
    --num_classes other than VOC's 21, class0, class1, ..."""
    if args.data_root and args.dataset != "voc12":  # VOC's names are built in: its folder is not read
        try:
            names = list(open_dataset(args.dataset, args.data_root).class_names)
        except FILE_ERRORS as exc:
            raise EvalError(str(exc)) from None
        if args.num_classes is not None and args.num_classes != len(names):
            raise EvalError(f"--num_classes {args.num_classes}: the data set at {args.data_root} has {len(names)} "
                            "classes (background included)")
        return names
    if args.dataset != "voc12":
        raise EvalError(f"--dataset {args.dataset} needs --data_root (its classes.txt names the classes)")
    if args.num_classes is None or args.num_classes == len(CLASS_NAMES):
        return list(CLASS_NAMES)
    if args.num_classes < 2:
        raise EvalError(f"--num_classes must be at least 2, got {args.num_classes}")
    return [f"class{i}" for i in range(args.num_classes)]


def summarize(confs, thresholds, mean="all"):
    """Per-threshold mIoU (percent) and the best point: dict for printing, logging and JSON.

    `mean`: "all" averages every class, those without ground truth in the list counting 0 (the
    published mean); "present" averages the classes with ground truth only.
    """
    present = np.asarray(confs[0]).sum(axis=1) > 0  # ground truth does not depend on t
    ious = np.stack([iou_from_confusion(c) for c in confs])
    mious = 100 * (ious[:, present] if mean == "present" else ious).mean(axis=1)
    best = int(np.argmax(mious))  # first (lowest t) among equal values
    return {
        "class_iou": 100 * ious[best],
        "absent": np.flatnonzero(~present).tolist(),
        "mean": mean,
        "miou": float(mious[best]),
        "t": float(thresholds[best]) if len(thresholds) else None,
        "curve": [(float(t), float(m)) for t, m in zip(thresholds, mious)] if len(thresholds) > 1 else None,
    }


def report_lines(result, names):
    """The curve (if any), the per-class table (`name:IoU ... mIoU:x`, percentages to 3 decimals;
    its mean leaves out the classes without ground truth with --mean present), which classes had no
    ground truth, the mIoU last."""
    lines = [f"t={t:.2f} mIoU={m:.3f}" for t, m in result["curve"] or []]
    left_out = result["absent"] if result["mean"] == "present" else ()
    iou = result["class_iou"] / 100  # the mean of the fractions x 100: the mean of the percentages can round apart
    cells = [f"{name}:{100 * v:.3f}" for name, v in zip(names, iou)]
    lines.append(" ".join(cells + [f"mIoU:{100 * float(np.mean(np.delete(iou, list(left_out)))):.3f}"]))
    if result["absent"]:
        n, absent = len(names), [names[i] for i in result["absent"]]
        how = (f"left out of the mean (--mean present, over {n - len(absent)} classes)" if left_out
               else f"counted as IoU 0 in the mean over all {n} (--mean present leaves them out)")
        lines.append(f"no ground truth in this list for {len(absent)} classes, {how}: {', '.join(absent)}")
    if result["curve"]:
        lines.append(f"best t={result['t']:.2f} mIoU: {result['miou']:.3f}")
    else:
        lines.append(f"mIoU: {result['miou']:.3f}")
    return lines


def plot_path(out_json):
    """Where the curve's plot goes: the JSON's path with .png for .json."""
    return out_json.removesuffix(".json") + ".png"


def thresholds_from_args(args):
    if args.type in LABEL_TYPES:
        if args.t is not None or args.curve:
            raise EvalError("--t and --curve apply to CAM types (--type npz/npy) only")
        return ()
    if args.type == "npy" and not args.allow_pickle:
        raise EvalError(
            "--type npy reads the published pickled CAM dicts; pass --allow_pickle for trusted files "
            "(or use --type npz)"
        )
    if args.curve and args.t is not None:
        raise EvalError("give either --t or --curve, not both")
    if args.curve:
        if not 0 <= args.start < args.end:
            raise EvalError(f"--start {args.start} / --end {args.end}: need 0 <= start < end")
        return tuple(i / 100 for i in range(args.start, args.end))  # integer steps: no float drift
    if args.t is None:
        raise EvalError(f"--type {args.type} needs --t (background threshold, e.g. 0.26) or --curve")
    if not np.isfinite(args.t) or args.t < 0:
        raise EvalError(f"--t must be a finite number >= 0, got {args.t}")
    return (float(args.t),)


def build_parser():
    p = ArgumentParser(description=__doc__.splitlines()[0])
    data = group(p, "data")
    data.add_argument("--list", required=True, help="image ids, bare or '/JPEGImages/x.jpg /Seg.../x.png'")
    data.add_argument("--predict_dir", required=True, help="folder of the predictions (<id>.png, .npz or .npy)")
    data.add_argument("--gt_dir", required=True, help="folder of <id>.png ground-truth palette PNGs")
    data.add_argument("--type", default="png", choices=LABEL_TYPES + CAM_TYPES,
                      help="png labels, crf maps, or npz / npy CAMs (with --t or --curve)")
    data.add_argument("--num_classes", type=int, default=None,
                      help="default: the data set's class count, background included (21 for VOC)")
    add_dataset_flags(p, root_required=False)  # whose class names and count; coco14 / folder need the root
    method = group(p, "method")
    method.add_argument("--t", type=float, default=None, help="background threshold for CAM types")
    method.add_argument("--curve", action="store_true", help="sweep t = start/100 .. (end-1)/100 and report the best")
    method.add_argument("--start", type=non_negative_int, default=0, help="first curve threshold, in hundredths")
    method.add_argument("--end", type=count, default=60, help="curve thresholds stop before end/100")
    method.add_argument("--mean", default="all", choices=("all", "present"),
                        help="mIoU over all classes (published; a class without ground truth in the list counts 0) "
                             "or over the classes with ground truth in the list")
    out = group(p, "outputs")
    out.add_argument("--logfile", default=None,
                     help="appended to; '' to skip (None: evallog.txt beside --predict_dir, in the run's folder; "
                          "published ./evallog.txt)")
    out.add_argument("--comment", default="", help="a note for the log line (published: required)")
    out.add_argument("--out_json", default=None, help="write per-class IoU, mIoU, t and curve here")
    out.add_argument("--no_plot", action="store_true",
                     help="with --curve and --out_json, do not draw the curve beside the JSON (<name>.png)")
    group(p, "speed").add_argument("--num_workers", type=non_negative_int, default=min(8, os.cpu_count() or 1),
                                   help="processes reading the files")
    faults = group(p, "faults")
    faults.add_argument("--allow_pickle", action="store_true", help="permit the pickled --type npy files")
    faults.add_argument("--debug", action="store_true", help="show the traceback behind a one-line error")
    return p


def run(args):
    """Evaluate as `args` say: print the report, append it to the log, write the JSON and the
    curve's plot; returns the summary dict. Raises EvalError on bad input."""
    thresholds = thresholds_from_args(args)
    names = class_names_from_args(args)
    source = EvalSource(args.predict_dir, args.gt_dir, args.type, thresholds, len(names))
    try:
        img_ids = load_img_id_list(args.list)
    except FILE_ERRORS as exc:
        raise file_error(args.list, exc) from exc
    confs = evaluate_list(img_ids, source, args.num_workers)
    result = summarize(confs, source.thresholds, args.mean)
    lines = report_lines(result, names)
    print("\n".join(lines))
    logfile = args.logfile
    if logfile is None:
        logfile = os.path.join(os.path.dirname(os.path.abspath(args.predict_dir)), "evallog.txt")
    if logfile:
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        if result["curve"]:
            threshold = "curve " + " ".join(f"{t:.2f}:{m:.3f}" for t, m in result["curve"])
        else:
            threshold = "none" if result["t"] is None else f"{result['t']:.2f}"
        entry = [
            f"=== {stamp} comment: {args.comment}",
            f"list: {args.list} ({len(img_ids)} images) predict_dir: {args.predict_dir} gt_dir: {args.gt_dir}",
            f"type: {args.type} t: {threshold}",
            *lines[len(result["curve"] or []):],
            "",
        ]
        try:
            os.makedirs(os.path.dirname(os.path.abspath(logfile)), exist_ok=True)
            with open(logfile, "a") as f:
                f.write("\n".join(entry) + "\n")
        except OSError as e:
            raise WriteError(f"{logfile}: cannot write: {e.strerror}") from None
    if args.out_json:
        payload = {
            "comment": args.comment,
            "list": args.list,
            "predict_dir": args.predict_dir,
            "gt_dir": args.gt_dir,
            "type": args.type,
            "num_images": len(img_ids),
            "units": "percent",
            "class_iou": {name: float(v) for name, v in zip(names, result["class_iou"])},
            "miou": result["miou"],
            "mean": result["mean"],
            "absent_classes": [names[i] for i in result["absent"]],
            "t": result["t"],
            "curve": [{"t": t, "miou": m} for t, m in result["curve"]] if result["curve"] else None,
            "environment": fingerprint(precision_used="reads files (the maps' precision is their run's)"),
        }
        with atomic_path(args.out_json) as tmp, open(tmp, "w") as f:
            json.dump(payload, f, indent=1)
            f.write("\n")
        if result["curve"] and not args.no_plot:
            name = args.comment or os.path.basename(os.path.normpath(args.predict_dir))
            title = f"{name}: {os.path.basename(args.list)} ({len(img_ids)} images)"
            save_image(plot_path(args.out_json), curve_image(result["curve"], result["t"], title))
    return result


def main(argv=None):
    return run_script(build_parser(), run, argv, status=2)


if __name__ == "__main__":
    main()
