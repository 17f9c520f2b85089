"""tool.engine.camfile: the CAM and CRF-map files every stage and evaluation.py share."""
import numpy as np
import pytest

from tool.engine import camfile
from tool.engine.files import save_npz


def test_load_crf_and_cam(tmp_path):
    scores = np.random.default_rng(0).random((2, 4, 5)).astype(np.float32)
    save_npz(tmp_path / "a.npz", keys=np.array([0, 7]), scores=scores)
    keys, got = camfile.load_crf(str(tmp_path / "a.npz"))
    assert keys.dtype == np.int64 and keys.tolist() == [0, 7] and np.array_equal(got, scores)
    save_npz(tmp_path / "bad.npz", keys=np.array([3, 7]), scores=scores)
    with pytest.raises(ValueError, match="bad.npz"):
        camfile.load_crf(str(tmp_path / "bad.npz"))
    save_npz(tmp_path / "c.npz", keys=np.array([4, 6]), cams=scores)
    keys, cams = camfile.load_cam(str(tmp_path / "c.npz"))
    assert keys.tolist() == [4, 6] and cams.shape == (2, 4, 5)
    with pytest.raises(ValueError, match="a.npz"):
        camfile.load_cam(str(tmp_path / "a.npz"))  # no `cams` array
    with pytest.raises(FileNotFoundError, match="zz.npz"):
        camfile.load_crf(str(tmp_path / "zz.npz"))


def test_written_files_read_back_exactly_with_their_dtypes(tmp_path):
    rng = np.random.default_rng(1)
    cams = rng.random((2, 6, 7)).astype(np.float32)
    camfile.save_cam(tmp_path / "cam.npz", [3, 11], cams)
    keys, got = camfile.load_cam(str(tmp_path / "cam.npz"))
    assert keys.dtype == np.int64 and keys.tolist() == [3, 11] and got.dtype == np.float32
    assert np.array_equal(got, cams)
    scores = rng.random((3, 6, 7)).astype(np.float32)
    camfile.save_crf(tmp_path / "crf.npz", [0, 4, 12], scores)
    keys, got = camfile.load_crf(str(tmp_path / "crf.npz"))
    assert keys.tolist() == [0, 4, 12] and np.array_equal(got, scores)


@pytest.mark.parametrize("keys, fragment", [([7, 3], "ascending"), ([3, 3], "ascending"), ([19, 20], "outside 0..19")])
def test_bad_cam_keys_are_named(tmp_path, keys, fragment):
    save_npz(tmp_path / "k.npz", keys=np.array(keys), cams=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=fragment):
        camfile.load_cam(str(tmp_path / "k.npz"), num_classes=21)


def test_crf_keys_start_with_background(tmp_path):
    save_npz(tmp_path / "k.npz", keys=np.array([], np.int64), scores=np.zeros((0, 4, 4), np.float32))
    with pytest.raises(ValueError, match="background 0"):
        camfile.load_crf(str(tmp_path / "k.npz"))
