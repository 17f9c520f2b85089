"""The sparse stencil walk (tool/randomwalk.py, as infer_aff.py composes it) gives the labels of the
published dense walk (infer_aff.py of the SEAM code).

The reference below re-implements the published infer_aff.py end to end (pair indices, the
network's `to_dense` sparse COO matrix, beta power, column normalisation, logt squarings,
bilinear upsampling, argmax, crop) without using tool/randomwalk.py.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from network import resnet38_aff
from tool.affinity import effective_radius, get_indices_of_pairs
from tool.randomwalk import cam_on_grid, random_walk, scores_to_label

RADIUS = 5
TIE_MARGIN = 1e-5  # relative gap between the two best upsampled scores below which float32 order decides


# ---------------------------------------------------------------- published reference


def published_indices_of_pairs(radius, size):
    """pyutils.get_indices_of_pairs of the published code (numpy slicing with negative ends)."""
    search_dst = [(0, x) for x in range(1, radius)]
    for y in range(1, radius):
        for x in range(-radius + 1, radius):
            if x * x + y * y < radius * radius:
                search_dst.append((y, x))
    rf = radius - 1
    full = np.arange(size[0] * size[1], dtype=np.int64).reshape(size)
    ch, cw = size[0] - rf, size[1] - 2 * rf
    ind_from = full[:-rf, rf:-rf].reshape(-1)
    ind_to = np.concatenate([full[dy : dy + ch, rf + dx : rf + dx + cw].reshape(-1) for dy, dx in search_dst])
    return torch.from_numpy(ind_from), torch.from_numpy(ind_to)


def published_radius(radius, grid_hw):
    """The published AffinityNet shrinks the radius on grids whose shorter side is < 2r+1."""
    min_edge = min(grid_hw)
    return (min_edge - 1) // 2 if min_edge < radius * 2 + 1 else radius


def published_affinity(feat, ind_from, ind_to):
    """(D, h, w) embedding -> aff (offsets, P) = exp(-mean_D |f_to - f_from|), as the published forward."""
    d, h, w = feat.shape
    x = feat.reshape(1, d, h * w)
    ff = torch.index_select(x, 2, ind_from).unsqueeze(2)
    ft = torch.index_select(x, 2, ind_to).view(1, d, -1, ff.size(3))
    return torch.exp(-torch.mean(torch.abs(ft - ff), dim=1))[0]


def published_to_dense(aff, ind_from, ind_to, area):
    """The published forward(x, to_dense=True): sparse COO with (from, to), (to, from) and the diagonal."""
    aff = aff.reshape(-1)
    ind_from_exp = ind_from.unsqueeze(0).expand(ind_to.numel() // ind_from.numel(), -1).contiguous().view(-1)
    indices = torch.stack([ind_from_exp, ind_to])
    indices_tp = torch.stack([ind_to, ind_from_exp])
    indices_id = torch.stack([torch.arange(area), torch.arange(area)])
    values = torch.cat([aff, torch.ones(area, dtype=aff.dtype), aff])
    coo = torch.sparse_coo_tensor(
        torch.cat([indices, indices_id, indices_tp], dim=1), values, (area, area), check_invariants=True
    )
    return coo.to_dense()


def published_walk(image_hw, cams, keys, aff, ind_from, ind_to, alpha, beta, logt):
    """The published infer_aff.py loop body -> (labels (H, W) uint8, walked grid scores (21, dh, dw))."""
    h, w = image_hw
    dheight, dwidth = int(np.ceil(h / 8)), int(np.ceil(w / 8))
    cam_full_arr = np.zeros((21, h, w), np.float32)
    for k, v in zip(keys, cams):
        cam_full_arr[k + 1] = v
    cam_full_arr[0] = (1 - np.max(cam_full_arr[1:], 0, keepdims=False)) ** alpha
    cam_full_arr = np.pad(cam_full_arr, ((0, 0), (0, dheight * 8 - h), (0, dwidth * 8 - w)), mode="constant")

    aff_mat = torch.pow(published_to_dense(aff, ind_from, ind_to, dheight * dwidth), beta)
    trans_mat = aff_mat / torch.sum(aff_mat, dim=0, keepdim=True)
    for _ in range(logt):
        trans_mat = torch.matmul(trans_mat, trans_mat)

    cam_full_arr = F.avg_pool2d(torch.from_numpy(cam_full_arr), 8, 8)
    cam_vec = cam_full_arr.view(21, -1).to(trans_mat.dtype)
    cam_rw = torch.matmul(cam_vec, trans_mat).view(1, 21, dheight, dwidth)
    walked = cam_rw[0].clone()
    cam_rw = F.interpolate(cam_rw, (dheight * 8, dwidth * 8), mode="bilinear", align_corners=False)
    _, cam_rw_pred = torch.max(cam_rw, 1)
    return np.uint8(cam_rw_pred[0].numpy())[:h, :w], walked


# ---------------------------------------------------------------- the project's path and inputs


def project_walk(image_hw, cams, keys, aff, alpha, beta, logt):
    """infer_aff.py's composition: cam_on_grid -> random_walk -> scores_to_label."""
    grid = cam_on_grid(cams, keys, alpha, 21)
    walked = random_walk(grid, aff, effective_radius(RADIUS, grid.shape[1:]), beta, logt)
    return scores_to_label(walked, image_hw), walked


def smooth_field(rng, channels, out_hw, coarse_hw):
    coarse = torch.from_numpy(rng.standard_normal((1, channels) + coarse_hw).astype(np.float32))
    return F.interpolate(coarse, out_hw, mode="bilinear", align_corners=False)[0]


def smooth_cams(rng, k, image_hw):
    """K CAMs in [0, 1], smooth, peaked (so background wins in places after the alpha power)."""
    if k == 0:
        return np.zeros((0,) + tuple(image_hw), np.float32)
    field = smooth_field(rng, k, image_hw, (3, 4)).numpy()
    lo = field.min(axis=(1, 2), keepdims=True)
    hi = field.max(axis=(1, 2), keepdims=True)
    return (((field - lo) / (hi - lo)) ** 2).astype(np.float32)


def region_features(rng, grid_hw, dim=8):
    """Smooth embedding plus piecewise-constant regions: high affinity inside regions, low across edges."""
    h, w = grid_hw
    feat = 0.5 * smooth_field(rng, dim, grid_hw, (3, 3))
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    region = (yy > cy).astype(np.int64) + 2 * (xx > cx + 0.3 * (yy - cy))
    codes = rng.standard_normal((4, dim)).astype(np.float32) * 1.5
    return feat + torch.from_numpy(codes[region].transpose(2, 0, 1).copy())


def make_case(seed, image_hw, k):
    """(cams, keys, aff, ind_from, ind_to) for an image: realistic affinities on the padded image's grid."""
    rng = np.random.default_rng(seed)
    h, w = image_hw
    grid_hw = (int(np.ceil(h / 8)), int(np.ceil(w / 8)))
    keys = np.sort(rng.choice(20, size=k, replace=False)).astype(np.int64)
    cams = smooth_cams(rng, k, image_hw)
    ind_from, ind_to = published_indices_of_pairs(published_radius(RADIUS, grid_hw), grid_hw)
    aff = published_affinity(region_features(rng, grid_hw), ind_from, ind_to)
    return cams, keys, aff, ind_from, ind_to


def top2_margin(walked, image_hw):
    """(best - second best) / best of the upsampled scores, per image pixel."""
    h, w = image_hw
    up = F.interpolate(
        walked[None], (int(np.ceil(h / 8)) * 8, int(np.ceil(w / 8)) * 8), mode="bilinear", align_corners=False
    )[0]
    top = torch.topk(up, 2, dim=0).values[:, :h, :w]
    return ((top[0] - top[1]) / top[0].abs().clamp_min(1e-30)).numpy()


def assert_same_walk(image_hw, cams, keys, aff, ind_from, ind_to, alpha, beta, logt):
    ref_label, ref_walked = published_walk(image_hw, cams, keys, aff, ind_from, ind_to, alpha, beta, logt)
    label, walked = project_walk(image_hw, cams, keys, aff, alpha, beta, logt)
    assert walked.shape == ref_walked.shape
    scale = float(ref_walked.abs().max())
    torch.testing.assert_close(walked, ref_walked, rtol=1e-4, atol=1e-6 * scale)
    assert label.dtype == np.uint8 and label.shape == tuple(image_hw)
    differ = label != ref_label
    # Both walks are float32 with different summation orders (~1e-6 relative): a pixel whose two best
    # classes tie to that precision may flip either way (the published float32 result itself then
    # disagrees with float64 as often as ours does). Every other pixel must agree exactly.
    tie = top2_margin(ref_walked, image_hw) < TIE_MARGIN
    assert not (differ & ~tie).any(), f"{int((differ & ~tie).sum())} labels differ from the published walk"
    assert differ.sum() <= max(1, differ.size // 10000), f"{int(differ.sum())} tie pixels flipped"
    return ref_label, ref_walked


# ---------------------------------------------------------------- tests


def test_reference_pairs_match_the_project_pairs():
    """The independent published indices and radius rule agree with tool.affinity on the grids used here."""
    for grid_hw in [(8, 11), (6, 5), (12, 14), (8, 10), (25, 33), (47, 63)]:
        radius = published_radius(RADIUS, grid_hw)
        assert effective_radius(RADIUS, grid_hw) == radius
        ind_from, ind_to = published_indices_of_pairs(radius, grid_hw)
        got_from, got_to = get_indices_of_pairs(radius, grid_hw)
        np.testing.assert_array_equal(got_from, ind_from.numpy())
        np.testing.assert_array_equal(got_to, ind_to.numpy())
    assert published_radius(RADIUS, (8, 10)) == 3 and published_radius(RADIUS, (47, 63)) == 5


@pytest.mark.parametrize("alpha,beta,logt", [(6, 8, 6), (6, 4, 3), (4, 8, 2)])
@pytest.mark.parametrize(
    "image_hw,k",
    [((61, 83), 3), ((45, 37), 1), ((96, 112), 3), ((60, 75), 1), ((60, 75), 3), ((200, 261), 3), ((96, 112), 1)],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_walk_gives_the_published_labels(seed, image_hw, k, alpha, beta, logt):
    cams, keys, aff, ind_from, ind_to = make_case(seed, image_hw, k)
    assert_same_walk(image_hw, cams, keys, aff, ind_from, ind_to, alpha, beta, logt)


def test_the_cases_are_not_trivial():
    """The walk moves labels (non-uniform affinities) and the score check would catch a step count off by one."""
    image_hw = (96, 112)
    cams, keys, aff, ind_from, ind_to = make_case(2, image_hw, 3)
    assert 0.05 < float(aff.min()) and float(aff.max()) > 0.9 and float(aff.std()) > 0.1
    ref_label, ref_walked = assert_same_walk(image_hw, cams, keys, aff, ind_from, ind_to, 6, 8, 6)
    assert len(np.unique(ref_label)) >= 3  # background and fg classes survive the walk
    unwalked = scores_to_label(cam_on_grid(cams, keys, 6, 21), image_hw)
    assert (unwalked != ref_label).mean() > 0.02
    _, fewer_steps = published_walk(image_hw, cams, keys, aff, ind_from, ind_to, 6, 8, 5)
    assert not torch.allclose(fewer_steps, ref_walked, rtol=1e-4, atol=1e-6)


def test_absent_classes_stay_exactly_zero():
    image_hw = (61, 83)
    cams, keys, aff, _, _ = make_case(3, image_hw, 3)
    label, walked = project_walk(image_hw, cams, keys, aff, 6, 8, 6)
    absent = np.setdiff1d(np.arange(1, 21), keys + 1)
    assert torch.count_nonzero(walked[absent]) == 0
    assert (walked[keys + 1].flatten(1).amax(dim=1) > 0).all() and (walked[0] > 0).all()
    assert set(np.unique(label)) <= {0} | set((keys + 1).tolist())


def test_no_foreground_class_gives_all_background():
    image_hw = (45, 37)
    cams, keys, aff, ind_from, ind_to = make_case(4, image_hw, 0)
    ref_label, _ = assert_same_walk(image_hw, cams, keys, aff, ind_from, ind_to, 6, 8, 6)
    label, walked = project_walk(image_hw, cams, keys, aff, 6, 8, 6)
    assert (label == 0).all() and (ref_label == 0).all()
    assert torch.count_nonzero(walked[1:]) == 0


@pytest.mark.parametrize("image_hw", [(61, 83), (99, 104)])
def test_affinitynet_output_gives_the_published_labels(image_hw):
    """The aff of the actual AffinityNet (random weights, eval) on a padded image, fed to both paths."""
    torch.manual_seed(0)
    net = resnet38_aff.Net(width=1 / 16, radius=RADIUS).eval()
    rng = np.random.default_rng(5)
    h, w = image_hw
    ph, pw = int(np.ceil(h / 8)) * 8, int(np.ceil(w / 8)) * 8
    img = smooth_field(rng, 3, image_hw, (4, 5))
    with torch.no_grad():
        aff = net(F.pad(img, (0, pw - w, 0, ph - h))[None])[0]
    grid_hw = (ph // 8, pw // 8)
    ind_from, ind_to = published_indices_of_pairs(published_radius(RADIUS, grid_hw), grid_hw)
    assert aff.shape == (ind_to.numel() // ind_from.numel(), ind_from.numel())
    assert float(aff.max()) > 0.1  # beta-powered affinities that are not all ~0 (the walk does something)
    cams = smooth_cams(rng, 2, image_hw)
    keys = np.array([4, 14])
    for alpha, beta, logt in [(6, 8, 6), (6, 4, 3)]:
        assert_same_walk(image_hw, cams, keys, aff, ind_from, ind_to, alpha, beta, logt)
