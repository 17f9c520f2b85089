"""CAM arithmetic shared by the stages: multi-scale + flip aggregation, the published
normalisation, the background map, hard labels."""
import numpy as np
import torch
import torch.nn.functional as F


def flip_scale_sum(forward, images, size, align_corners=False):
    """Sum over scales of forward(pair) at `size`, the flipped half flipped back: (C, H, W).

    images: per scale a (2, 3, h, w) batch, the image and its horizontal flip (one forward
    pass per scale); forward(batch) -> (2, C, h', w') maps, upsampled bilinearly to `size`
    before summing (align_corners=False in SEAM's CAM inference, True in the authors'
    segmentation test).
    """
    total = None
    with torch.no_grad():
        for pair in images:
            maps = F.interpolate(forward(pair).float(), tuple(size), mode="bilinear", align_corners=align_corners)
            maps = maps[0] + maps[1].flip(-1)
            total = maps if total is None else total + maps
    return total


def multiscale_cam(forward, images, label, size, output=1):
    """Sum over scales and flips of the label-masked foreground CAM at the image size (C - 1, H, W):
    output `output` of forward(batch) (SEAM: 0 the fc8 CAM, 1 cam_rv, the PCM output)."""
    return flip_scale_sum(lambda pair: forward(pair)[output][:, 1:], images, size) * label.view(-1, 1, 1)


def multiscale_probs(forward, images, size):
    """Softmax of the mean logits of forward(batch) over scales and flips, at the image size:
    (C, H, W) float32 tensor. `images`: per scale a (2, 3, h, w) batch of the image and its flip.
    """
    total = flip_scale_sum(forward, images, size, align_corners=True)
    return torch.softmax(total / (2 * len(images)), dim=0)


def with_background(fg, alpha=1.0, dim=0):
    """Stack background = (1 - max over the foreground maps)^alpha before the foreground maps,
    along the class axis `dim`: numpy arrays (float32) or tensors. No foreground: background 1.

    (PCM's input, which also zeroes every foreground map below the pixel's maximum, is
    network.pcm.pcm_input_cam.)
    """
    if isinstance(fg, torch.Tensor):
        fg_max = fg.amax(dim, keepdim=True) if fg.shape[dim] else torch.zeros_like(fg.sum(dim, keepdim=True))
        return torch.cat([(1 - fg_max) ** alpha, fg], dim)
    fg = np.asarray(fg, dtype=np.float32)
    fg_max = fg.max(axis=dim, keepdims=True) if fg.shape[dim] else np.zeros_like(fg.sum(axis=dim, keepdims=True))
    return np.concatenate([np.power(1.0 - fg_max, alpha, dtype=np.float32), fg], axis=dim)


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
