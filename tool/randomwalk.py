"""Random walk of AffinityNet: propagate CAMs over the radius-r pair affinities.

The published method builds the dense (hw x hw) transition matrix T (symmetric affinities
** beta, unit diagonal, columns normalised to 1), squares it `logt` times and multiplies the
CAM by it. Here T stays a stencil on the feature grid: (v @ T)[c] = sum_d W_d[c] * v[c + d]
over the pair offsets d (both directions and 0), held as a sparse CSR matrix and applied
2**logt times (one sparse product per step), only to the channels
present in the image (absent channels are all zero and stay zero). Same labels, O(hw * pairs)
per step instead of O((hw)^3) per squaring.
"""
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from tool.affinity import pair_offsets
from tool.cam import with_background


def transition_stencil(aff, grid_hw, radius, beta):
    """aff (n_offsets, P) pair affinities in the published order on an (h, w) grid ->
    (offsets [(dy, dx), ...] with (0, 0) first, weights (len(offsets), h, w)).

    weights[k][c] = T[c + offsets[k], c]: the walk's weight from neighbour c + d into pixel c.
    """
    h, w = grid_hw
    r = radius - 1
    ph, pw = h - r, w - 2 * r  # the source window of the pairs
    offsets = pair_offsets(radius)
    n = len(offsets)
    a = torch.zeros(2 * n + 1, h, w, dtype=aff.dtype, device=aff.device)
    a[0] = 1.0
    aff = aff.reshape(n, ph, pw)
    for k, (dy, dx) in enumerate(offsets):
        a[1 + k, :ph, r : r + pw] = aff[k]  # pixel p and its neighbour p + d
        a[1 + n + k, dy : dy + ph, r + dx : r + dx + pw] = aff[k]  # pixel p + d and its neighbour p
    a = a**beta
    weights = a / a.sum(dim=0, keepdim=True)  # column normalisation of T, per target pixel
    return [(0, 0)] + offsets + [(-dy, -dx) for dy, dx in offsets], weights


def stencil_walk(v, offsets, weights, steps):
    """Apply v <- v @ T `steps` times; v (C, h, w). The stencil is a sparse CSR matrix M (hw x hw)
    with (M @ v)[c] = sum_d W_d[c] * v[c + d] (neighbours outside the grid, of zero weight, left
    out; columns sorted within rows): one sparse product per step."""
    n, h, w = weights.shape
    device = weights.device
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    d = torch.tensor(offsets, device=device)
    ny, nx = ys[None] + d[:, 0, None, None], xs[None] + d[:, 1, None, None]  # n, h, w
    valid = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    rows = (ys * w + xs)[None].expand(n, h, w)[valid]
    cols = (ny * w + nx)[valid]
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), weights[valid], (h * w, h * w), check_invariants=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        m = coo.coalesce().to_sparse_csr()  # coalesce: sorted by row, then column
    x = v.reshape(v.shape[0], h * w).t().contiguous()  # hw, C
    for _ in range(steps):
        x = m @ x
    return x.t().reshape(v.shape)


def random_walk(cam_grid, aff, radius, beta=8, logt=6):
    """cam_grid (C, h, w) -> cam_grid @ T^(2^logt), computed on the non-zero channels only."""
    offsets, weights = transition_stencil(aff, cam_grid.shape[1:], radius, beta)
    present = cam_grid.flatten(1).abs().amax(dim=1) > 0
    out = torch.zeros_like(cam_grid)
    if present.any():
        out[present] = stencil_walk(cam_grid[present], offsets, weights, 2**logt)
    return out


def padded_size(h, w, stride=8):
    return int(np.ceil(h / stride) * stride), int(np.ceil(w / stride) * stride)


def cam_on_grid(cams, keys, alpha, num_classes, stride=8):
    """(K, H, W) fg CAMs of 0-based classes `keys` -> (num_classes, H'/8, W'/8) tensor.

    Background = (1 - max fg)**alpha at the image size; then zero-padded right/bottom to a
    multiple of 8 and 8x8 average-pooled, as published. Only the background and the K present
    channels are pooled; absent classes are zero.
    """
    cams = torch.as_tensor(np.asarray(cams, dtype=np.float32))
    h, w = cams.shape[1:]
    present = with_background(cams, alpha)
    ph, pw = padded_size(h, w, stride)
    pooled = F.avg_pool2d(F.pad(present, (0, pw - w, 0, ph - h))[None], stride, stride)[0]
    grid = torch.zeros(num_classes, *pooled.shape[1:])
    grid[torch.cat([torch.zeros(1, dtype=torch.long), torch.as_tensor(np.asarray(keys, dtype=np.int64)) + 1])] = pooled
    return grid


def scores_to_label(scores_grid, image_hw, stride=8, channels=None, as_tensor=False):
    """Walked scores (C, h, w) -> bilinear to the padded size, argmax, crop: (H, W) uint8
    (a numpy array, or a tensor on the scores' device with `as_tensor`).

    Only the background and the non-zero channels are upsampled: an all-zero channel can never
    win (walked background and foreground scores are non-negative and not all zero together),
    and background stays first so ties resolve as in the full argmax. `channels` (ascending,
    0 first): those channels, known to the caller (background and the image's classes: a walk
    keeps zero channels zero), so that the GPU need not be asked which are non-zero.
    """
    h, w = image_hw
    if channels is None:
        nonzero = scores_grid.flatten(1).abs().amax(dim=1) > 0
        nonzero[0] = True
        channels = torch.nonzero(nonzero)[:, 0]
    else:
        channels = torch.as_tensor(channels, dtype=torch.long).to(scores_grid.device, non_blocking=True)
    up = F.interpolate(scores_grid[channels][None].float(), padded_size(h, w, stride), mode="bilinear",
                       align_corners=False)
    # max(dim).indices: the same first-maximum index as argmax, which is 7-25x slower along
    # dim 0 of a (C, H, W) tensor on the CPU
    label = channels[up[0].max(dim=0).indices[:h, :w]].to(torch.uint8)
    return label if as_tensor else label.cpu().numpy()
