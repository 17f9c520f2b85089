"""CAM post-processing shared by inference and evaluation: published normalisation, hard labels."""
import numpy as np


def normalize_cams(sum_cam):
    """The published per-class normalisation of a summed multi-scale CAM (C, H, W).

    Negatives -> 0; values below min + 1e-5 -> 0; then (x - min - 1e-5) / (max - min + 1e-5).
    (Zeroed pixels end slightly below 0, exactly as published.)
    """
    cam = np.maximum(np.asarray(sum_cam, dtype=np.float32), 0)
    cam_max = cam.max(axis=(1, 2), keepdims=True)
    cam_min = cam.min(axis=(1, 2), keepdims=True)
    cam = np.where(cam < cam_min + 1e-5, np.float32(0), cam)
    return ((cam - cam_min - 1e-5) / (cam_max - cam_min + 1e-5)).astype(np.float32)


def cams_to_label(cams, keys, bg_score):
    """(K, H, W) foreground CAMs of 0-based classes `keys` -> (H, W) uint8 label map (0 = background).

    A constant background plane comes first, so background wins ties.
    """
    cams = np.asarray(cams, dtype=np.float32)
    scores = np.concatenate([np.full((1, *cams.shape[1:]), bg_score, np.float32), cams], axis=0)
    lut = np.concatenate([[0], np.asarray(keys, dtype=np.int64) + 1]).astype(np.uint8)
    return lut[np.argmax(scores, axis=0)]
