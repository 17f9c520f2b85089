"""Segmentation metrics accumulated over a whole data set, as the published evaluation does.

Confusion matrices have shape (num_classes, num_classes + 1): rows are ground-truth classes,
columns predicted classes, and the extra last column counts pixels whose prediction is the
"no class" value 255. Such a pixel is wrong for its GT class (it counts in T) but adds to no
class's P. Pixels whose GT is `ignore` are dropped together with their predictions.
Summing the matrices of all images gives the data-set-level counts the published IoU uses.
"""
import numpy as np

NO_CLASS = 255  # prediction value meaning "no class assigned"


def _check_label_values(label, num_classes, allowed_extra, what):
    bad = (label >= num_classes) & (label != allowed_extra)
    if label.dtype.kind == "i":
        bad |= label < 0
    if bad.any():
        value = int(label[bad].flat[0])
        raise ValueError(f"{what} value {value} outside 0..{num_classes - 1} and {allowed_extra}")


def confusion_counts(pred, gt, num_classes, ignore=255):
    """(num_classes, num_classes + 1) int64 counts of (GT class, predicted class) pixel pairs.

    `pred` values must be in 0..num_classes-1 or 255 (no class); `gt` values in
    0..num_classes-1 or `ignore`. Raises ValueError on a shape mismatch or other values.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    _check_label_values(pred, num_classes, NO_CLASS, "prediction")
    _check_label_values(gt, num_classes, ignore, "ground truth")
    valid = gt != ignore
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    p[p == NO_CLASS] = num_classes
    counts = np.bincount(g * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def iou_from_confusion(conf):
    """Per-class IoU = TP / (T + P - TP + 1e-10), as a float64 array (fraction, not percent).

    A class absent from both GT and prediction gets 0, which the published mean includes.
    Accepts (n, n) or (n, n + 1) matrices.
    """
    conf = np.asarray(conf, dtype=np.float64)
    n = conf.shape[0]
    if conf.ndim != 2 or conf.shape[1] not in (n, n + 1):
        raise ValueError(f"confusion matrix must be (n, n) or (n, n + 1), got {conf.shape}")
    tp = np.diag(conf[:, :n])
    gt_total = conf.sum(axis=1)
    pred_total = conf[:, :n].sum(axis=0)
    return tp / (gt_total + pred_total - tp + 1e-10)


def miou(conf):
    """Mean IoU over all classes (fraction), absent classes included as 0."""
    return float(iou_from_confusion(conf).mean())


def cam_threshold_confusions(cams, keys, gt, thresholds, num_classes, ignore=255):
    """Confusion matrices of one image's CAM for every background threshold, in one pass.

    cams: (K, H, W) float scores of the foreground classes `keys` (0-based, so class keys[i] + 1
    in the num_classes-way map). The published rule stacks a constant background plane t before the CAMs
    and takes the argmax, the first channel winning ties; so a pixel is predicted as its best
    foreground class c (lowest class id among equal scores) if its best score m > t, else
    background. Scores and thresholds are compared in float32 as in the published code.

    Returns (len(thresholds), num_classes, num_classes + 1) int64, in the order of `thresholds`.
    """
    cams = np.asarray(cams)
    keys = np.asarray(keys)
    gt = np.asarray(gt)
    thresholds = np.asarray(thresholds, dtype=np.float32).reshape(-1)
    if cams.ndim != 3:
        raise ValueError(f"cams must be (K, H, W), got shape {cams.shape}")
    if keys.ndim != 1 or keys.shape[0] != cams.shape[0] or (keys.size and keys.dtype.kind not in "iu"):
        raise ValueError(f"keys must be {cams.shape[0]} integer class ids, got {keys.dtype} {keys.shape}")
    if keys.size and (keys.min() < 0 or keys.max() > num_classes - 2):
        raise ValueError(f"keys must be foreground ids in 0..{num_classes - 2}, got {keys.tolist()}")
    if len(np.unique(keys)) != keys.size:
        raise ValueError(f"keys must be distinct, got {keys.tolist()}")
    if cams.shape[1:] != gt.shape:
        raise ValueError(f"CAM size {cams.shape[1:]} differs from ground truth shape {gt.shape}")
    _check_label_values(gt, num_classes, ignore, "ground truth")

    valid = gt != ignore
    g = gt[valid].astype(np.int64)
    n, n_thr = num_classes, thresholds.size
    if keys.size == 0:
        best_score = np.full(g.shape, -np.inf, np.float32)
        best_class = np.zeros(g.shape, np.int64)
    else:
        # Ascending class order makes argmax pick the lowest class id on ties, as the
        # published (num_classes)-channel tensor does.
        order = np.argsort(keys, kind="stable")
        fg = cams[order][:, valid].astype(np.float32, copy=False)
        if np.isnan(fg).any():
            raise ValueError("cams contain NaN")
        best_idx = fg.argmax(axis=0)
        best_score = np.take_along_axis(fg, best_idx[None], axis=0)[0]
        best_class = keys[order].astype(np.int64)[best_idx] + 1

    # bucket b = number of thresholds strictly below the pixel's score: the pixel is foreground
    # exactly for the b lowest thresholds. Counting (bucket, gt, fg class) once and taking
    # cumulative sums over buckets yields every threshold's matrix.
    sort_idx = np.argsort(thresholds, kind="stable")
    bucket = np.searchsorted(thresholds[sort_idx], best_score, side="left")
    counts = np.bincount((bucket * n + g) * n + best_class, minlength=(n_thr + 1) * n * n)
    counts = counts.reshape(n_thr + 1, n, n)
    # fg_at[j] = pixels with bucket > j (foreground at sorted threshold j)
    fg_at = np.cumsum(counts[::-1], axis=0)[::-1][1:]
    # pixels with bucket <= j fall back to background, whatever their fg class
    bg_at = np.cumsum(counts.sum(axis=2), axis=0)[:-1]

    conf_sorted = np.zeros((n_thr, n, n + 1), np.int64)
    conf_sorted[:, :, :n] = fg_at
    conf_sorted[:, :, 0] += bg_at
    conf = np.empty_like(conf_sorted)
    conf[sort_idx] = conf_sorted
    return conf
