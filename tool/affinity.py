"""Pixel pairs within a radius on a feature grid and their AffinityNet labels (published order)."""
import numpy as np


def pair_offsets(radius):
    """(dy, dx) offsets: (0, x) for x in 1..r-1, then (y, x), y in 1..r-1, |x| < r, x^2+y^2 < r^2."""
    offsets = [(0, x) for x in range(1, radius)]
    for y in range(1, radius):
        for x in range(-radius + 1, radius):
            if x * x + y * y < radius * radius:
                offsets.append((y, x))
    return offsets


def effective_radius(radius, size):
    """The published network shrinks the radius on grids whose shorter side is < 2*radius+1."""
    min_edge = min(size)
    return (min_edge - 1) // 2 if min_edge < 2 * radius + 1 else radius


def _shifted_views(grid, radius):
    """The source window of `grid` (r-1 rows dropped at the bottom and r-1 columns on each side)
    and, per offset, the window of pair targets."""
    h, w = grid.shape[:2]
    r = radius - 1
    ch, cw = h - r, w - 2 * r
    if ch <= 0 or cw <= 0:
        raise ValueError(f"grid {h}x{w} too small for radius {radius}")
    source = grid[:ch, r:r + cw]
    targets = [grid[dy:dy + ch, r + dx:r + dx + cw] for dy, dx in pair_offsets(radius)]
    return source, targets


def get_indices_of_pairs(radius, size):
    """(ind_from (P,), ind_to (n_offsets * P,)) int64 flat indices on an (H, W) grid, offset-major."""
    h, w = size
    full = np.arange(h * w, dtype=np.int64).reshape(h, w)
    source, targets = _shifted_views(full, radius)
    ind_to = np.concatenate([t.reshape(-1) for t in targets]) if targets else np.zeros(0, np.int64)
    return source.reshape(-1).copy(), ind_to


def affinity_labels_in_radius(label, radius=5):
    """Pair labels (bg_pos, fg_pos, neg), each float32 (n_offsets, P), from an (H, W) label map.

    255 = ignore. A pair is valid when neither end is ignored; bg_pos: both ends 0;
    fg_pos: equal non-zero classes; neg: different classes.
    """
    label = np.asarray(label)
    source, targets = _shifted_views(label, radius)
    frm = source.reshape(1, -1)
    to = np.stack([t.reshape(-1) for t in targets]) if targets else np.zeros((0, frm.shape[1]), label.dtype)
    valid = (frm < 255) & (to < 255)
    same = frm == to
    bg_pos = same & (frm == 0)
    fg_pos = same & (frm != 0) & valid
    neg = ~same & valid
    return bg_pos.astype(np.float32), fg_pos.astype(np.float32), neg.astype(np.float32)


def label_on_grid(label, stride=8, ignore=255):
    """(H, W) label map -> (ceil(H/8), ceil(W/8)) uint8: per cell its most frequent label other
    than `ignore` (ties: the lowest), `ignore` where a cell has none. The map is padded with
    `ignore` at the right and bottom, as the walk pads the CAM."""
    label = np.asarray(label)
    h, w = label.shape
    gh, gw = -(-h // stride), -(-w // stride)
    padded = np.full((gh * stride, gw * stride), ignore, np.int64)
    padded[:h, :w] = label
    cells = padded.reshape(gh, stride, gw, stride).transpose(0, 2, 1, 3).reshape(gh, gw, -1)
    n_labels = int(padded[padded != ignore].max(initial=0)) + 1
    counts = np.stack([(cells == k).sum(-1) for k in range(n_labels)], -1)
    grid = counts.argmax(-1).astype(np.uint8)
    grid[counts.max(-1) == 0] = ignore
    return grid


def ground_truth_affinity(label_grid, radius):
    """Affinities (n_offsets, P) float32 in the order of the network's output: 1 for a pair of
    cells with one class (background included), 0 across classes or where an end is ignored."""
    bg_pos, fg_pos, _ = affinity_labels_in_radius(label_grid, radius)
    return bg_pos + fg_pos


def confident_label_from_scores(la_scores, ha_scores, keys=None):
    """Per-pixel labels from low-alpha / high-alpha CRF scores (K, H, W), background first.

    Foreground where the la argmax is foreground, background where the ha argmax is background,
    255 elsewhere and where no channel has any score (crop padding). `keys` maps channel index
    to class id (defaults to the channel index; pair labels only need 0 = background).
    """
    la_scores = np.asarray(la_scores)
    ha_scores = np.asarray(ha_scores)
    if la_scores.shape != ha_scores.shape:
        raise ValueError(f"la scores {la_scores.shape} and ha scores {ha_scores.shape} differ in shape")
    la = np.argmax(la_scores, axis=0)
    ha = np.argmax(ha_scores, axis=0)
    if keys is not None:
        keys = np.asarray(keys)
        la, ha = keys[la], keys[ha]
    label = la.astype(np.uint8)
    label[la == 0] = 255
    label[ha == 0] = 0
    no_score = np.maximum(la_scores.max(axis=0), ha_scores.max(axis=0)) < 1e-5
    label[no_score] = 255
    return label
