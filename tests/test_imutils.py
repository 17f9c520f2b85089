import random

import numpy as np
import pytest
from PIL import Image

from tool import imutils


def _pil(w, h, seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr)


def test_random_resize_long_range_and_rounding():
    random.seed(0)
    resize = imutils.RandomResizeLong(20, 23)
    seen = set()
    for _ in range(100):
        out = resize(_pil(50, 30))
        long_side = out.size[0]
        seen.add(long_side)
        assert out.size == (long_side, int(round(30 * long_side / 50)))
    assert seen == {20, 21, 22, 23}  # both ends inclusive
    portrait = resize(_pil(30, 50))
    assert 20 <= portrait.size[1] <= 23 and portrait.size[0] == round(30 * portrait.size[1] / 50)


def test_resize_long_published_rounding():
    assert imutils.resize_long(_pil(500, 375), 448).size == (448, 336)
    assert imutils.resize_long(_pil(333, 500), 449).size == (299, 449)  # round(299.03)


def test_random_resize_long_rejects_bad_range():
    with pytest.raises(ValueError):
        imutils.RandomResizeLong(10, 5)


def test_random_hflip_joint_and_seeded():
    img = np.arange(2 * 4 * 3).reshape(2, 4, 3)
    lab = np.arange(8).reshape(2, 4)
    flips = []
    for seed in range(20):
        random.seed(seed)
        a, b = imutils.random_hflip(img, lab)
        flipped = np.array_equal(a, img[:, ::-1])
        assert flipped or np.array_equal(a, img)
        assert np.array_equal(b, lab[:, ::-1] if flipped else lab)
        random.seed(seed)
        again = imutils.random_hflip(img)
        assert np.array_equal(again, a)
        flips.append(flipped)
    assert any(flips) and not all(flips)
    pil = imutils.hflip(Image.fromarray(img.astype(np.uint8)))
    assert np.array_equal(np.asarray(pil), img[:, ::-1].astype(np.uint8))


def test_normalize_numbers():
    img = np.array([[[255, 0, 128], [0, 255, 51]]], np.uint8)
    out = imutils.normalize(img)
    assert out.dtype == np.float32 and out.shape == (1, 2, 3)
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(out[0, 1], [-0.485 / 0.229, (1 - 0.456) / 0.224, (0.2 - 0.406) / 0.225], rtol=1e-6)
    np.testing.assert_allclose(imutils.normalize(Image.fromarray(img)), out)


def test_random_crop_pads_small_image_with_zero():
    img = np.arange(1, 3 * 5 * 3 + 1, dtype=np.float32).reshape(3, 5, 3)
    for seed in range(10):
        random.seed(seed)
        out = imutils.random_crop(img, 8)
        assert out.shape == (8, 8, 3) and out.dtype == np.float32
        nz = np.argwhere(out[..., 0] != 0)
        top, left = nz.min(0)
        assert np.array_equal(out[top:top + 3, left:left + 5], img)
        assert np.count_nonzero(out) == img.size  # everything else is the 0 fill


def test_random_crop_takes_window_of_large_image():
    img = np.arange(20 * 30, dtype=np.float32).reshape(20, 30, 1)
    offsets = set()
    for seed in range(30):
        random.seed(seed)
        out = imutils.random_crop(img, 8)
        top, left = divmod(int(out[0, 0, 0]), 30)
        assert np.array_equal(out, img[top:top + 8, left:left + 8])
        assert 0 <= top <= 12 and 0 <= left <= 22
        offsets.add((top, left))
    assert len(offsets) > 1


def test_crop_window_mixed_sides_and_global_random():
    random.seed(3)
    a = imutils.crop_window(20, 4, 8)
    random.seed(3)
    assert imutils.crop_window(20, 4, 8) == a
    cont_top, cont_left, img_top, img_left, ch, cw = a
    assert cont_top == 0 and 0 <= img_top <= 12 and img_left == 0 and 0 <= cont_left <= 4
    assert (ch, cw) == (8, 4)


def test_random_crop_with_label_same_window_label_pad_255():
    h, w = 5, 12
    pos = np.arange(h * w).reshape(h, w)
    img = np.stack([pos + 1] * 3, -1).astype(np.float32)
    lab = (pos % 200).astype(np.uint8)
    for seed in range(10):
        random.seed(seed)
        ci, cl = imutils.random_crop(img, 8, lab)
        assert ci.shape == (8, 8, 3) and cl.shape == (8, 8) and cl.dtype == np.uint8
        pad = ci[..., 0] == 0
        assert pad.sum() == 3 * 8 and np.all(cl[pad] == 255)
        assert np.array_equal(ci[~pad][:, 0] - 1, cl[~pad])
    with pytest.raises(ValueError):
        imutils.random_crop(img, 8, lab[:4])


def test_hwc_to_chw_and_rescale():
    arr = np.zeros((4, 6, 3), np.float32)
    assert imutils.hwc_to_chw(arr).shape == (3, 4, 6)
    img = _pil(375, 500)
    assert imutils.pil_rescale(img, 0.5, 3).size == (188, 250)  # round(187.5) = 188
    assert imutils.pil_rescale(img, 1.5, 0).size == (562, 750)  # round(562.5) = 562
    lab = Image.fromarray(np.array([[1, 2], [3, 4]], np.uint8))
    assert np.array_equal(np.asarray(imutils.pil_rescale(lab, 2, 0)),
                          np.kron([[1, 2], [3, 4]], np.ones((2, 2))).astype(np.uint8))


def test_avg_pool_hw_zero_pads_like_block_reduce():
    arr = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(imutils.avg_pool_hw(arr, 2), [[2.5, 4.5], [10.5, 12.5]])
    odd = np.ones((3, 5, 2), np.float32)
    out = imutils.avg_pool_hw(odd, 2)
    assert out.shape == (2, 3, 2)
    np.testing.assert_allclose(out[..., 0], [[1, 1, 0.5], [0.5, 0.5, 0.25]])


def test_color_jitter_published_parameters():
    jitter = imutils.color_jitter()
    assert jitter.brightness == (0.7, 1.3) and jitter.contrast == (0.7, 1.3)
    assert jitter.saturation == (0.7, 1.3) and jitter.hue == (-0.1, 0.1)
