"""Stage 2's CAM and CRF-map files, written, read and checked in this one place (pickle-free npz).

CAM file `<id>.npz`: `keys` (K,) int64, the image's 0-based foreground class ids, ascending,
and `cams` (K, H, W), each present class's normalised CAM (values in [0, 1]).
CRF file `<id>.npz`: `keys` (K,) int64, 0 (background) then the 1-based ids of the image's
classes, ascending, and `scores` (K, H, W), probabilities.
Only the image's classes are stored. The map dtype is the writer's choice (`STORAGE`):
float32 (exact), float16 (absolute error <= 2^-12 on [0, 1]) or uint8 (quantised: value =
q / 255, absolute error <= 1/510); readers return float32 whatever was stored.
Readers raise FileNotFoundError or ValueError, with the file's path first; with `num_classes`
they also check the keys against the class count.
"""
import os
import zipfile
import zlib

import numpy as np

from tool.engine.files import save_npz

STORAGE = ("float32", "float16", "uint8")
STORAGE_ERROR = {"float32": 0.0, "float16": 2.0**-12, "uint8": 1 / 510}  # worst case on [0, 1]


def encode(maps, storage="float32"):
    """[0, 1] maps -> the stored array of `storage` (uint8: round(x * 255), clipped)."""
    if storage not in STORAGE:
        raise ValueError(f"storage {storage!r}: choose one of {', '.join(STORAGE)}")
    maps = np.asarray(maps, np.float32)
    if storage == "uint8":
        return np.round(np.clip(maps, 0.0, 1.0) * 255).astype(np.uint8)
    return maps.astype(storage)


def decode(stored):
    """A stored map array -> float32 values (uint8 as q / 255)."""
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / 255
    return stored.astype(np.float32, copy=False)


def save_cam(path, keys, cams, storage="float32"):
    save_npz(path, keys=np.asarray(keys, np.int64), cams=encode(cams, storage))


def save_crf(path, keys, scores, storage="float32"):
    save_npz(path, keys=np.asarray(keys, np.int64), scores=encode(scores, storage))


def load_cam(path, num_classes=None):
    """CAM file -> (keys int64 (K,), cams float32 (K, H, W))."""
    keys, cams = _read(path, CAM_ARRAYS)
    check_cam(path, keys, cams, num_classes)
    return keys.astype(np.int64), decode(cams)


def load_crf(path, num_classes=None):
    """CRF file -> (keys int64 (K,), scores float32 (K, H, W)); keys[0] is background 0."""
    keys, scores = _read(path, CRF_ARRAYS)
    _check(path, keys, scores, "scores", num_classes and num_classes - 1, "0, then 1-based class ids")
    if keys.size == 0 or keys[0] != 0:
        raise ValueError(f"{path}: keys must start with background 0, got {keys.tolist()}")
    return keys.astype(np.int64), decode(scores)


def check_cam(path, keys, cams, num_classes=None):
    """The checks of a CAM file's arrays, for CAMs read from elsewhere too (the published .npy)."""
    _check(path, keys, cams, "cams", num_classes and num_classes - 2, "0-based foreground ids")


def _read(path, names):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not an npz archive")
        with data:
            missing = [name for name in names if name not in data.files]
            if missing:
                raise ValueError(f"{path}: missing array(s) {', '.join(missing)}")
            return tuple(data[name] for name in names)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # cut short, overwritten, not whole
        if isinstance(e, ValueError) and str(e).startswith(str(path)):  # ours above, naming the file
            raise
        raise ValueError(f"{path}: {_damaged(e)}") from None


def _check(path, keys, maps, name, max_key, what):
    if keys.ndim != 1 or keys.dtype.kind not in "iu":
        raise ValueError(f"{path}: keys must be a 1-D integer array, got {keys.dtype} {keys.shape}")
    if maps.ndim != 3 or maps.shape[0] != keys.shape[0] or not (maps.dtype.kind == "f" or maps.dtype == np.uint8):
        raise ValueError(f"{path}: {name} must be float or uint8 (K={keys.shape[0]}, H, W), got {maps.dtype} "
                         f"{maps.shape}")
    if keys.size and keys.min() < 0:
        raise ValueError(f"{path}: keys {keys.tolist()} must be >= 0 ({what})")
    if keys.size and max_key is not None and keys.max() > max_key:
        raise ValueError(f"{path}: keys {keys.tolist()} outside 0..{max_key} ({what})")
    if np.any(np.diff(keys) <= 0):
        raise ValueError(f"{path}: keys must be ascending, got {keys.tolist()}")


def _damaged(e):
    """Why a map file cannot be read, in one line, for the readers and map_file_problem alike."""
    return f"damaged map file ({type(e).__name__}: {(str(e).splitlines() or [''])[0]})"


def map_file_problem(path, names):
    """Why the map file at `path` cannot be read (missing arrays, cut short: its zip directory,
    at the end of the file, is unreadable), else None. Reads the directory only: a list of
    thousands is checked in seconds, before the work starts."""
    try:
        with zipfile.ZipFile(path) as archive:
            stored = {name.removesuffix(".npy") for name in archive.namelist()}
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        return _damaged(e)
    missing = [name for name in names if name not in stored]
    return f"damaged map file (no {', '.join(missing)})" if missing else None


CAM_ARRAYS, CRF_ARRAYS = ("keys", "cams"), ("keys", "scores")


def map_bytes(n_maps, height, width, storage):
    """Bytes of `n_maps` maps of one image before compression: what a file holds at most."""
    return n_maps * height * width * np.dtype(storage).itemsize
