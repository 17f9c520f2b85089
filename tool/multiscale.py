"""Multi-scale + flip test-time aggregation, shared by CAM and segmentation inference."""
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
