import os

import numpy as np
import pytest
import torch
from PIL import Image

from tool.engine.files import save_image
from tool.vis import (
    GRID_GAP,
    GRID_TITLE_HEIGHT,
    cam_overlay,
    denormalize,
    grid_image,
    jet,
    load_label_png,
    max_cam_overlay,
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


def test_grid_image_dimensions_and_pixels(tmp_path):
    path = tmp_path / "out" / "grid.png"
    red = np.zeros((10, 14, 3), np.uint8)
    red[..., 0] = 255
    small_label = np.full((5, 7), 40, np.uint8)  # greyscale, resized to the cell
    rows = [[red, small_label, red], [small_label, red]]  # short second row padded white
    save_image(path, grid_image(rows))
    with Image.open(path) as im:
        grid = np.array(im)
    assert grid.shape == (2 * 10 + GRID_GAP, 3 * 14 + 2 * GRID_GAP, 3)
    np.testing.assert_array_equal(grid[5, 5], [255, 0, 0])
    np.testing.assert_array_equal(grid[5, 14 + GRID_GAP + 3], [40, 40, 40])
    np.testing.assert_array_equal(grid[10 + GRID_GAP + 5, 2 * (14 + GRID_GAP) + 3], [255, 255, 255])
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temp file left


def test_grid_image_titles_and_cell_size(tmp_path):
    path = tmp_path / "titled.png"
    save_image(path, grid_image([[_grey(), _grey()]], labels=["image", "CAM"], cell_hw=(20, 30)))
    with Image.open(path) as im:
        grid = np.array(im)
    assert grid.shape == (GRID_TITLE_HEIGHT + 20, 2 * 30 + GRID_GAP, 3)
    header = grid[:GRID_TITLE_HEIGHT]
    assert (header < 100).any(), "title text should be drawn in black on the white strip"
    np.testing.assert_array_equal(grid[GRID_TITLE_HEIGHT + 10, 15], [128, 128, 128])


def test_grid_image_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="at least one image"):
        save_image(tmp_path / "a.png", grid_image([[]]))
    with pytest.raises(ValueError, match="uint8"):
        save_image(tmp_path / "b.png", grid_image([[np.zeros((4, 4, 3), np.float32)]]))
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


def test_figure_shows_what_a_work_folder_holds_with_each_images_iou(tmp_path, capsys):
    import shutil
    import sys

    from tool.engine.camfile import save_cam
    from voc12.toy import generate_toy_voc

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
    import figure

    toy, work = tmp_path / "toy", tmp_path / "work"
    generate_toy_voc(str(toy), n_train_aug=4, n_train=2, n_val=1, size=48, seed=0)
    ids = (toy / "train.txt").read_text().split()
    (work / "rw").mkdir(parents=True)
    from voc12.dataset import mask_path

    for name in ids:
        gt = load_label_png(mask_path(str(toy), name))
        shutil.copy(mask_path(str(toy), name), work / "rw" / f"{name}.png")  # = the ground truth
        keys = np.unique(gt[(gt > 0) & (gt < 255)]) - 1
        save_cam(str(work / "cam" / f"{name}.npz"), keys, np.stack([(gt == k + 1) for k in keys]).astype(np.float32))
    argv = [str(work), "--list", str(toy / "train.txt"), "--voc12_root", str(toy), "--out", str(tmp_path / "a.png")]
    figure.main(argv)
    out = capsys.readouterr().out
    assert f"not in {work}: crf_*/, seg/ (those columns are left out)" in out  # one line naming them
    cols, missing = figure.columns(str(work), ["cam"], 0.26)
    assert [c[0] for c in cols] == ["cam (t=0.26)", "random walk"] and missing == ["crf_*/", "seg/"]
    from voc12.dataset import open_dataset

    data = open_dataset("voc12", str(toy))
    row, captions = figure.cells(data, ids[0], cols, 21, with_gt=True)
    assert len(row) == 4 and captions == [None, None, "IoU 100.0", "IoU 100.0"]  # the maps are the ground truth
    h, w = np.asarray(row[0]).shape[:2]
    width, height = Image.open(tmp_path / "a.png").size
    assert width == 4 * w + 3 * 2 and height == 16 + len(ids) * h + (len(ids) - 1) * 2
    # a data set without ground truth: no ground-truth column, no IoU
    shutil.rmtree(toy / "SegmentationClass")
    shutil.rmtree(toy / "SegmentationClassAug", ignore_errors=True)
    figure.main([*argv[:-1], str(tmp_path / "b.png")])
    assert "no ground truth for these images" in capsys.readouterr().out
    assert Image.open(tmp_path / "b.png").size[0] == 3 * w + 2 * 2
    bad = one_exit(figure.main, [*argv, "--ids", "nope"])
    assert bad == f"error: --ids nope: not in {toy / 'train.txt'}"


def one_exit(fn, argv):
    try:
        fn(argv)
    except SystemExit as e:
        return str(e)
    raise AssertionError("no exit")
