import numpy as np
import pytest
import torch

import tool.crf as crf_mod
from tool.cam import with_background
from tool.crf import crf_inference, crf_with_alpha
from tool.engine.inference import OutputPool

dcrf = pytest.importorskip("pydensecrf.densecrf")
crf_utils = pytest.importorskip("pydensecrf.utils")


def _edge_image(h=32, w=40):
    """Black left half, white right half."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, w // 2:] = 255
    return img


def _noisy_two_label_probs(h=32, w=40, flip=0.2, seed=0):
    """Label 1 on the right half; a `flip` fraction of pixels votes for the wrong label."""
    truth = np.zeros((h, w), np.int64)
    truth[:, w // 2:] = 1
    p1 = np.where(truth == 1, 0.7, 0.3)
    flips = np.random.default_rng(seed).random((h, w)) < flip
    p1 = np.where(flips, 1 - p1, p1)
    return truth, np.stack([1 - p1, p1]).astype(np.float32)


def _random_probs(k, h, w, seed=1):
    logits = np.random.default_rng(seed).normal(size=(k, h, w))
    e = np.exp(logits)
    return (e / e.sum(0, keepdims=True)).astype(np.float32)


def _published_crf(img, probs, t=10, scale_factor=1):
    """The published imutils.crf_inference, written out against pydensecrf directly."""
    h, w = img.shape[:2]
    n_labels = probs.shape[0]
    d = dcrf.DenseCRF2D(w, h, n_labels)
    unary = np.ascontiguousarray(crf_utils.unary_from_softmax(probs))
    d.setUnaryEnergy(unary)
    d.addPairwiseGaussian(sxy=3 / scale_factor, compat=3)
    d.addPairwiseBilateral(sxy=80 / scale_factor, srgb=13, rgbim=np.copy(img), compat=10)
    q = d.inference(t)
    return np.array(q).reshape((n_labels, h, w))


def test_unary_matches_pydensecrf_including_clipping():
    probs = _random_probs(3, 5, 6)
    probs[0, 0, 0] = 0.0  # clipped at 1e-5
    probs[1, 0, 1] = 1.7  # clipped at 1
    img = np.random.default_rng(5).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crf_inference(img, probs), _published_crf(img, probs))
    # no mean-field step: the marginals are softmax(-unary), i.e. the clipped probabilities normalised
    clipped = np.clip(probs, 1e-5, 1.0)
    np.testing.assert_allclose(crf_inference(img, probs, t=0), clipped / clipped.sum(0), rtol=1e-5, atol=1e-9)
    flipped = probs[:, :, ::-1]  # any memory layout
    np.testing.assert_array_equal(crf_inference(img, flipped), crf_inference(img, np.ascontiguousarray(flipped)))


def test_crf_shape_normalised_and_deterministic():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)
    probs = _random_probs(4, 24, 30)
    q = crf_inference(img, probs)
    assert q.shape == (4, 24, 30) and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(q, crf_inference(img, probs))


def test_crf_agrees_with_direct_pydensecrf_call():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
    probs = _random_probs(3, 20, 28, seed=4)
    np.testing.assert_array_equal(crf_inference(img, probs), _published_crf(img, probs))
    np.testing.assert_array_equal(crf_inference(img, probs, t=3), _published_crf(img, probs, t=3))


def test_crf_cleans_noisy_labels_along_an_rgb_edge():
    img = _edge_image()
    truth, probs = _noisy_two_label_probs()
    noisy_acc = (probs.argmax(0) == truth).mean()
    crf_acc = (crf_inference(img, probs).argmax(0) == truth).mean()
    assert noisy_acc < 0.85
    assert crf_acc > 0.98


def test_crf_rejects_mismatched_shapes():
    img = _edge_image()
    with pytest.raises(ValueError, match="probs must be"):
        crf_inference(img, np.full((2, 10, 10), 0.5, np.float32))
    with pytest.raises(ValueError, match="uint8"):
        crf_inference(img.astype(np.float32), _noisy_two_label_probs()[1])


def test_with_background_formula():
    cams = np.array([[[0.2, 0.9]], [[0.5, 0.1]]], np.float32)  # (2, 1, 2)
    out = with_background(cams, alpha=4)
    assert out.shape == (3, 1, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], [[0.5 ** 4, 0.1 ** 4]], rtol=1e-6)
    np.testing.assert_array_equal(out[1:], cams)
    np.testing.assert_array_equal(with_background(np.zeros((0, 2, 3)), 24), np.ones((1, 2, 3)))


def test_with_background_is_one_formula_on_tensors_and_on_any_class_axis():
    cams = np.random.default_rng(0).random((3, 5, 6)).astype(np.float32)
    want = with_background(cams, alpha=6)
    got = with_background(torch.from_numpy(cams), alpha=6)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)  # numpy's and torch's pow differ in the last bit
    batched = with_background(torch.from_numpy(cams)[None], alpha=6, dim=1)  # (N, C, H, W), as the losses use it
    assert torch.equal(batched[0], got)
    assert torch.equal(with_background(torch.zeros(0, 2, 3), 24), torch.ones(1, 2, 3))


def test_crf_with_alpha_is_crf_over_background_stack():
    # three colour bands with foreground CAM 0.05, 0.2, 0.8: alpha 4 keeps the middle band as
    # background ((1-0.2)^4 = 0.41 > 0.2), alpha 24 gives it to the foreground (0.8^24 < 0.2)
    img = np.zeros((30, 39, 3), np.uint8)
    cams = np.zeros((1, 30, 39), np.float32)
    bands = [((20, 20, 20), 0.05), ((120, 40, 200), 0.2), ((250, 250, 0), 0.8)]
    for band, (colour, score) in enumerate(bands):
        img[:, 13 * band:13 * (band + 1)] = colour
        cams[:, :, 13 * band:13 * (band + 1)] = score
    la = crf_with_alpha(img, cams, alpha=4)
    ha = crf_with_alpha(img, cams, alpha=24)
    assert la.shape == (2, 30, 39) and la.dtype == np.float32
    assert (la.argmax(0)[:, :26] == 0).all() and (la.argmax(0)[:, 26:] == 1).all()
    assert (ha.argmax(0)[:, :13] == 0).all() and (ha.argmax(0)[:, 13:] == 1).all()
    np.testing.assert_array_equal(la, crf_inference(img, with_background(cams, 4)))


def _crf_to_file(path, img, probs):
    np.save(path, crf_inference(img, probs, t=5))


def test_pool_with_workers_matches_inline_and_reraises_a_failure(tmp_path):
    import concurrent.futures as cf

    rng = np.random.default_rng(5)
    jobs = [(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8), _random_probs(3, 16, 20, seed=i))
            for i in range(5)]
    with OutputPool(0) as pool:
        for i, (img, probs) in enumerate(jobs):
            pool.submit(_crf_to_file, tmp_path / f"inline{i}.npy", img, probs)
    bad = np.zeros((2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="uint8"):  # a job's error, on leaving the block
        with OutputPool(1) as pool:  # one spawned helper for both checks
            for i, (img, probs) in enumerate(jobs):
                pool.submit(_crf_to_file, tmp_path / f"pool{i}.npy", img, probs)
                assert len(pool.pending) <= 2  # bounded: 2 pending jobs per worker
            cf.wait(pool.pending)
            pool.submit(crf_inference, bad.astype(np.float64), bad)
    for i in range(len(jobs)):
        np.testing.assert_array_equal(np.load(tmp_path / f"inline{i}.npy"), np.load(tmp_path / f"pool{i}.npy"))


def test_inline_pool_raises_immediately():
    with OutputPool(0) as pool, pytest.raises(ValueError, match="uint8"):
        pool.submit(crf_inference, np.zeros((2, 2, 3), np.float32), np.zeros((1, 2, 2)))


def test_missing_pydensecrf_gives_clear_message(monkeypatch):
    monkeypatch.setattr(crf_mod, "dcrf", None)
    _, probs = _noisy_two_label_probs()
    with pytest.raises(ImportError, match=r"^dense CRF needs pydensecrf: pip install pydensecrf2$"):
        crf_inference(_edge_image(), probs)
