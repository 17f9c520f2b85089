"""Stage 2's CAM and CRF-map files, written, read and checked in this one place (pickle-free npz).

CAM file `<id>.npz`: `keys` (K,) int64, the image's 0-based foreground class ids, ascending,
and `cams` (K, H, W) float32, each class's normalised CAM.
CRF file `<id>.npz`: `keys` (K,) int64, 0 (background) then the 1-based ids of the image's
classes, ascending, and `scores` (K, H, W) float32.
Readers raise FileNotFoundError or ValueError, with the file's path first.
"""
import os

import numpy as np

from tool.fileio import save_npz


def save_cam(path, keys, cams):
    save_npz(path, keys=np.asarray(keys, np.int64), cams=np.asarray(cams, np.float32))


def save_crf(path, keys, scores):
    save_npz(path, keys=np.asarray(keys, np.int64), scores=np.asarray(scores, np.float32))


def load_cam(path, num_classes=21):
    """CAM file -> (keys int64 (K,), cams float32 (K, H, W))."""
    keys, cams = _read(path, ("keys", "cams"))
    check_cam(path, keys, cams, num_classes)
    return keys.astype(np.int64), cams.astype(np.float32, copy=False)


def load_crf(path, num_classes=21):
    """CRF file -> (keys int64 (K,), scores float32 (K, H, W)); keys[0] is background 0."""
    keys, scores = _read(path, ("keys", "scores"))
    _check(path, keys, scores, "scores", num_classes - 1, "0, then 1-based class ids")
    if keys.size == 0 or keys[0] != 0:
        raise ValueError(f"{path}: keys must start with background 0, got {keys.tolist()}")
    return keys.astype(np.int64), scores.astype(np.float32, copy=False)


def check_cam(path, keys, cams, num_classes=21):
    """The checks of a CAM file's arrays, for CAMs read from elsewhere too (the published .npy)."""
    _check(path, keys, cams, "cams", num_classes - 2, "0-based foreground ids")


def _read(path, names):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not an npz archive")
    with data:
        missing = [name for name in names if name not in data.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {', '.join(missing)}")
        return tuple(data[name] for name in names)


def _check(path, keys, maps, name, max_key, what):
    if keys.ndim != 1 or keys.dtype.kind not in "iu":
        raise ValueError(f"{path}: keys must be a 1-D integer array, got {keys.dtype} {keys.shape}")
    if maps.ndim != 3 or maps.shape[0] != keys.shape[0] or maps.dtype.kind != "f":
        raise ValueError(f"{path}: {name} must be float (K={keys.shape[0]}, H, W), got {maps.dtype} {maps.shape}")
    if keys.size and (keys.min() < 0 or keys.max() > max_key):
        raise ValueError(f"{path}: keys {keys.tolist()} outside 0..{max_key} ({what})")
    if np.any(np.diff(keys) <= 0):
        raise ValueError(f"{path}: keys must be ascending, got {keys.tolist()}")
