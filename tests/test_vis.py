import numpy as np
import pytest
import torch
from PIL import Image

from tool.vis import (
    GRID_GAP,
    GRID_TITLE_HEIGHT,
    cam_overlay,
    denormalize,
    jet,
    max_cam_overlay,
    save_grid_png,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _grey(h=12, w=16, level=128):
    return np.full((h, w, 3), level, np.uint8)


def test_jet_matches_opencv_within_one_level():
    cv2 = pytest.importorskip("cv2")
    levels = np.arange(256, dtype=np.uint8)
    reference = cv2.applyColorMap(levels[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]  # BGR -> RGB
    diff = np.abs(jet(levels / 255.0).astype(int) - reference.astype(int))
    assert diff.max() <= 1


def test_cam_overlay_shape_dtype_and_direction():
    img = _grey()
    cold = cam_overlay(img, np.zeros((12, 16)))
    hot = cam_overlay(img, np.ones((12, 16)))
    assert cold.shape == hot.shape == (12, 16, 3) and cold.dtype == np.uint8
    # jet(0) = (0, 0, 128) dark blue, jet(1) = (128, 0, 0) dark red, half blended over grey 128
    np.testing.assert_array_equal(cold[0, 0], [64, 64, 128])
    np.testing.assert_array_equal(hot[0, 0], [128, 64, 64])
    assert (hot[..., 0] > cold[..., 0]).all() and (hot[..., 2] < cold[..., 2]).all()


def test_cam_overlay_alpha_extremes_and_clipping():
    img = _grey(level=200)
    np.testing.assert_array_equal(cam_overlay(img, np.full((12, 16), 0.7), alpha=0.0), img)
    np.testing.assert_array_equal(cam_overlay(img, np.full((12, 16), 3.0), alpha=1.0),
                                  cam_overlay(img, np.ones((12, 16)), alpha=1.0))


def test_cam_overlay_rejects_mismatched_cam():
    with pytest.raises(ValueError, match="cam_overlay"):
        cam_overlay(_grey(), np.zeros((6, 8)))


def test_max_cam_overlay_uses_per_pixel_max():
    img = _grey()
    cams = np.zeros((3, 12, 16), np.float32)
    cams[0, :, :8] = 1.0
    cams[2, :, 8:] = 0.5
    expected = cam_overlay(img, cams.max(0))
    np.testing.assert_array_equal(max_cam_overlay(img, cams), expected)
    np.testing.assert_array_equal(max_cam_overlay(img, np.zeros((0, 12, 16))),
                                  cam_overlay(img, np.zeros((12, 16))))


def test_save_grid_png_dimensions_and_pixels(tmp_path):
    path = tmp_path / "out" / "grid.png"
    red = np.zeros((10, 14, 3), np.uint8)
    red[..., 0] = 255
    small_label = np.full((5, 7), 40, np.uint8)  # greyscale, resized to the cell
    rows = [[red, small_label, red], [small_label, red]]  # short second row padded white
    save_grid_png(path, rows)
    with Image.open(path) as im:
        grid = np.array(im)
    assert grid.shape == (2 * 10 + GRID_GAP, 3 * 14 + 2 * GRID_GAP, 3)
    np.testing.assert_array_equal(grid[5, 5], [255, 0, 0])
    np.testing.assert_array_equal(grid[5, 14 + GRID_GAP + 3], [40, 40, 40])
    np.testing.assert_array_equal(grid[10 + GRID_GAP + 5, 2 * (14 + GRID_GAP) + 3], [255, 255, 255])
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temp file left


def test_save_grid_png_titles_and_cell_size(tmp_path):
    path = tmp_path / "titled.png"
    save_grid_png(path, [[_grey(), _grey()]], labels=["image", "CAM"], cell_hw=(20, 30))
    with Image.open(path) as im:
        grid = np.array(im)
    assert grid.shape == (GRID_TITLE_HEIGHT + 20, 2 * 30 + GRID_GAP, 3)
    header = grid[:GRID_TITLE_HEIGHT]
    assert (header < 100).any(), "title text should be drawn in black on the white strip"
    np.testing.assert_array_equal(grid[GRID_TITLE_HEIGHT + 10, 15], [128, 128, 128])


def test_save_grid_png_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="at least one image"):
        save_grid_png(tmp_path / "a.png", [[]])
    with pytest.raises(ValueError, match="uint8"):
        save_grid_png(tmp_path / "b.png", [[np.zeros((4, 4, 3), np.float32)]])
    assert not list(tmp_path.iterdir())


def test_denormalize_inverts_normalisation_for_tensor_and_array():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    chw = ((img / 255.0 - np.array(MEAN)) / np.array(STD)).transpose(2, 0, 1).astype(np.float32)
    out = denormalize(chw, MEAN, STD)
    assert out.shape == (6, 9, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(denormalize(torch.from_numpy(chw), MEAN, STD), img)


def test_denormalize_clips_out_of_range():
    out = denormalize(np.full((3, 2, 2), 100.0), MEAN, STD)
    assert (out == 255).all()
