import os
import pickle
import random
import shutil

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from tool.affinity import (
    affinity_labels_in_radius,
    confident_label_from_scores,
    effective_radius,
    get_indices_of_pairs,
    pair_offsets,
)
from tool.engine.files import save_npz
from tool.imutils import avg_pool_hw
from tool.vis import load_label_png
from voc12 import data, labels, make_cls_labels, toy

HERE = os.path.dirname(__file__)
REPO = os.path.dirname(HERE)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("toyvoc"))
    toy.generate_toy_voc(root, n_train_aug=16, n_train=8, n_val=8, size=64, seed=1)
    return root


# ---------------------------------------------------------------- labels


def test_class_names():
    assert len(labels.CLASS_NAMES) == 21 == labels.NUM_CLASSES
    assert labels.CAT_NAMES == labels.CLASS_NAMES[1:] and labels.CLASS_NAMES[0] == "background"
    assert labels.CAT_NAMES[0] == "aeroplane" and labels.CAT_NAMES[-1] == "tvmonitor"
    assert labels.CAT_NAMES[14] == "person"


def test_load_img_id_list_forms(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n\n2007_000039\n  \n")
    assert labels.load_img_id_list(str(p)) == ["2007_000032", "2007_000039"]
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="e.txt"):
        labels.load_img_id_list(str(tmp_path / "e.txt"))
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        labels.load_img_id_list(str(tmp_path / "nope.txt"))


def test_shipped_lists_and_labels():
    ids = labels.load_img_id_list(os.path.join(REPO, "voc12", "train_aug.txt"))
    assert len(ids) == 10582
    cls = labels.load_cls_labels(os.path.join(REPO, "voc12", "cls_labels.txt"))
    assert len(cls) == 12031
    val = labels.load_img_id_list(os.path.join(REPO, "voc12", "val.txt"))
    assert set(ids + val) == set(cls)
    v = cls["2007_000032"]
    assert v.dtype == np.float32 and v.shape == (20,)
    assert np.flatnonzero(v).tolist() == [0, 14]  # aeroplane person


def test_write_cls_labels_reproduces_shipped_file(tmp_path):
    src = os.path.join(REPO, "voc12", "cls_labels.txt")
    out = tmp_path / "cls.txt"
    labels.write_cls_labels(str(out), labels.load_cls_labels(src))
    with open(src, "rb") as f:
        assert out.read_bytes() == f.read()


def test_load_cls_labels_unknown_class(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("a cat\nb dog horse\nc kitten\n")
    with pytest.raises(ValueError, match=r"c.txt:3.*kitten"):
        labels.load_cls_labels(str(p))


# ---------------------------------------------------------------- make_cls_labels

XML = """<annotation><filename>x.jpg</filename>
<object><name>person</name><part><name>head</name></part><difficult>1</difficult></object>
<object><name>dog</name></object><object><name>person</name></object></annotation>"""


def test_cls_labels_from_xml(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(XML)
    got = make_cls_labels.cls_labels_from_annotations(str(tmp_path), ["a"])
    assert np.flatnonzero(got["a"]).tolist() == [11, 14]
    with pytest.raises(FileNotFoundError, match=r"Annotations.b\.xml"):
        make_cls_labels.cls_labels_from_annotations(str(tmp_path), ["b"])


def test_make_cls_labels_cli(toy_root, tmp_path, capsys):
    out = tmp_path / "cls.txt"
    make_cls_labels.main(["--voc12_root", toy_root, "--list", os.path.join(toy_root, "train_aug.txt"),
                          os.path.join(toy_root, "val.txt"), "--out", str(out)])
    with open(os.path.join(toy_root, "cls_labels.txt"), "rb") as f:
        assert out.read_bytes() == f.read()
    out2 = tmp_path / "all.txt"
    make_cls_labels.main(["--voc12_root", toy_root, "--out", str(out2)])
    assert out2.read_bytes() == out.read_bytes()
    bad = tmp_path / "bad.txt"
    bad.write_text("2099_000001\n")
    with pytest.raises(SystemExit) as exc:
        make_cls_labels.main(["--voc12_root", toy_root, "--list", str(bad), "--out", str(tmp_path / "x.txt")])
    assert exc.value.code == 2
    assert "2099_000001.xml" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()


# ---------------------------------------------------------------- affinity pairs


def test_pairs_match_published_golden():
    g = np.load(os.path.join(HERE, "data", "golden_pairs.npz"), allow_pickle=False)
    for h, w in ((56, 56), (12, 14)):
        ind_from, ind_to = get_indices_of_pairs(5, (h, w))
        assert ind_from.dtype == np.int64 and ind_to.dtype == np.int64
        assert np.array_equal(ind_from, g[f"ind_from_{h}x{w}"])
        assert np.array_equal(ind_to, g[f"ind_to_{h}x{w}"])
    bg, fg, neg = affinity_labels_in_radius(g["aff_label_input"], radius=5)
    assert bg.shape == (34, 2496) and bg.dtype == np.float32
    assert np.array_equal(bg, g["aff_label_bg_pos"])
    assert np.array_equal(fg, g["aff_label_fg_pos"])
    assert np.array_equal(neg, g["aff_label_neg"])


def test_pair_offsets_and_radius_shrink():
    offs = pair_offsets(5)
    assert len(offs) == 34 and offs[:4] == [(0, 1), (0, 2), (0, 3), (0, 4)] and offs[4] == (1, -4)
    assert len(pair_offsets(3)) == 12
    assert effective_radius(5, (8, 10)) == 3 and effective_radius(5, (11, 30)) == 5
    ind_from, ind_to = get_indices_of_pairs(3, (8, 10))
    assert ind_from.shape == (6 * 6,) and ind_to.shape == (12 * 36,)
    with pytest.raises(ValueError):
        get_indices_of_pairs(5, (8, 8))


def test_pair_label_semantics_small():
    lab = np.array([[0, 0, 1, 255], [2, 1, 1, 0]], np.uint8)
    bg, fg, neg = affinity_labels_in_radius(lab, radius=2)
    # radius 2: offsets (0,1), (1,-1), (1,0), (1,1); source window row 0, columns 1..2
    assert pair_offsets(2) == [(0, 1), (1, -1), (1, 0), (1, 1)]
    # sources: (0,1)=0 and (0,2)=1
    assert bg.tolist() == [[0, 0], [0, 0], [0, 0], [0, 0]]
    assert fg.tolist() == [[0, 0], [0, 1], [0, 1], [0, 0]]
    assert neg.tolist() == [[1, 0], [1, 0], [1, 0], [1, 1]]


def test_confident_label_rule():
    # channels: bg, class 3, class 15 (keys 0, 3, 15)
    la = np.zeros((3, 1, 5), np.float32)
    ha = np.zeros((3, 1, 5), np.float32)
    la[:, 0, 0], ha[:, 0, 0] = (0.1, 0.9, 0.0), (0.2, 0.8, 0.0)  # confident fg 3
    la[:, 0, 1], ha[:, 0, 1] = (0.9, 0.1, 0.0), (0.9, 0.1, 0.0)  # confident bg
    la[:, 0, 2], ha[:, 0, 2] = (0.3, 0.2, 0.5), (0.6, 0.2, 0.2)  # ha says bg: bg wins
    la[:, 0, 3], ha[:, 0, 3] = (0.6, 0.4, 0.0), (0.3, 0.7, 0.0)  # uncertain: ignore
    # column 4: no score at all (padding): ignore
    out = confident_label_from_scores(la, ha, keys=[0, 3, 15])
    assert out.dtype == np.uint8 and out.tolist() == [[3, 0, 0, 255, 255]]
    assert confident_label_from_scores(la, ha).tolist() == [[1, 0, 0, 255, 255]]


# ---------------------------------------------------------------- datasets


def _list_file(tmp_path, ids, name="list.txt"):
    p = tmp_path / name
    p.write_text("".join(i + "\n" for i in ids))
    return str(p)


def test_cls_dataset_default_transform_and_errors(toy_root, tmp_path):
    ds = data.ClsDataset(os.path.join(toy_root, "val.txt"), toy_root, os.path.join(toy_root, "cls_labels.txt"))
    name, img, lab = ds[0]
    assert name == "2008_000001" and img.shape == (3, 64, 64) and img.dtype == torch.float32
    assert lab.dtype == torch.float32 and lab.shape == (20,) and lab.sum() >= 1
    with pytest.raises(ValueError, match="cls_labels.txt"):
        data.ClsDataset(_list_file(tmp_path, ["2099_000001"]), toy_root, os.path.join(toy_root, "cls_labels.txt"))
    os.makedirs(tmp_path / "JPEGImages")
    broken = data.ClsDataset(os.path.join(toy_root, "val.txt"), str(tmp_path), os.path.join(toy_root, "cls_labels.txt"))
    with pytest.raises(FileNotFoundError, match=r"JPEGImages.2008_000001\.jpg"):
        broken[0]


def test_train_cls_transform_seeded_and_picklable(toy_root):
    ds = data.ClsDataset(os.path.join(toy_root, "train.txt"), toy_root, os.path.join(toy_root, "cls_labels.txt"),
                         transform=data.TrainClsTransform(crop_size=48, resize_long=(40, 80)))
    runs = []
    for _ in range(2):
        random.seed(5)
        torch.manual_seed(5)
        runs.append(torch.stack([ds[i][1] for i in range(4)]))
    assert runs[0].shape == (4, 3, 48, 48)
    assert torch.equal(runs[0], runs[1])
    # DataLoader workers get a pickled copy: it must draw and transform exactly as the original
    ds.transform = pickle.loads(pickle.dumps(ds.transform))
    random.seed(5)
    torch.manual_seed(5)
    assert torch.equal(torch.stack([ds[i][1] for i in range(4)]), runs[0])


def test_train_cls_transform_pads_small_images_with_exact_zero_after_normalisation(toy_root):
    # long side 40..44 < crop 48: a square image in a 0 frame (normalised 0 is the mean colour)
    ds = data.ClsDataset(os.path.join(toy_root, "train.txt"), toy_root, os.path.join(toy_root, "cls_labels.txt"),
                         transform=data.TrainClsTransform(crop_size=48, resize_long=(40, 44)))
    random.seed(0)
    torch.manual_seed(0)
    for i in range(4):
        img = ds[i][1]
        pad = (img == 0).all(0).numpy()
        rows, cols = np.nonzero(~pad)
        side = rows.max() + 1 - rows.min()
        assert 40 <= side <= 44 and cols.max() + 1 - cols.min() == side
        assert pad.sum() == 48 * 48 - side * side  # zero exactly outside the image, nowhere inside


def test_train_cls_transform_in_worker_is_reproducible(toy_root):
    ds = data.ClsDataset(os.path.join(toy_root, "train.txt"), toy_root, os.path.join(toy_root, "cls_labels.txt"),
                         transform=data.TrainClsTransform(crop_size=32, resize_long=(32, 64)))

    def batch():
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1,
                                             generator=torch.Generator().manual_seed(9))
        return next(iter(loader))[1]

    assert torch.equal(batch(), batch())


def _write_crf(toy_root, crf_dir, ids):
    """la = ha = one-hot of the ground-truth mask (so the confident label is the mask itself)."""
    os.makedirs(crf_dir, exist_ok=True)
    for i in ids:
        gt = load_label_png(os.path.join(toy_root, "SegmentationClassAug", i + ".png"))
        keys = np.unique(gt).astype(np.int64)
        scores = np.stack([(gt == k).astype(np.float32) for k in keys])
        save_npz(os.path.join(crf_dir, i + ".npz"), keys=keys, scores=scores)
    return crf_dir


def test_aff_dataset_labels_follow_masks(toy_root, tmp_path):
    ids = labels.load_img_id_list(os.path.join(toy_root, "train.txt"))[:4]
    crf = _write_crf(toy_root, str(tmp_path / "crf"), ids)
    ds = data.AffDataset(_list_file(tmp_path, ids), toy_root, crf, crf, crop_size=64, radius=5)
    for k, i in enumerate(ids):
        name, img, (bg, fg, neg) = ds[k]
        assert name == i and img.shape == (3, 64, 64)
        gt = load_label_png(os.path.join(toy_root, "SegmentationClassAug", i + ".png"))
        keys = np.unique(gt)
        onehot = np.stack([(gt == c) for c in keys], -1)
        small = keys[np.argmax(avg_pool_hw(onehot, 8), -1)]
        expected = [affinity_labels_in_radius(s, 3) for s in (small, small[:, ::-1])]  # 8x8 grid: radius 3
        assert bg.shape == (12, 24)
        got = (bg.numpy(), fg.numpy(), neg.numpy())
        assert any(all(np.array_equal(a, b) for a, b in zip(got, e)) for e in expected)
        assert (bg + fg + neg).max() <= 1


def test_aff_dataset_padding_is_ignored(toy_root, tmp_path):
    ids = labels.load_img_id_list(os.path.join(toy_root, "train.txt"))[:1]
    crf = _write_crf(toy_root, str(tmp_path / "crf"), ids)
    ds = data.AffDataset(_list_file(tmp_path, ids), toy_root, crf, crf, crop_size=96, radius=5)
    random.seed(0)
    torch.manual_seed(0)
    _, img, (bg, fg, neg) = ds[0]
    assert img.shape == (3, 96, 96) and bg.shape == (34, 32)  # 12x12 grid, radius 5: 8 x 4 sources
    # a 64 image in a 96 crop: at least 32 of the 96 rows or columns are padding; pairs there are dropped
    valid = (bg + fg + neg).numpy()
    assert 0 < valid.mean() < 0.75


def test_aff_dataset_errors(toy_root, tmp_path):
    ids = labels.load_img_id_list(os.path.join(toy_root, "train.txt"))[:1]
    la = _write_crf(toy_root, str(tmp_path / "la"), ids)
    ha = str(tmp_path / "ha")
    os.makedirs(ha)
    save_npz(os.path.join(ha, ids[0] + ".npz"), keys=np.array([0]), scores=np.ones((1, 64, 64), np.float32))
    ds = data.AffDataset(_list_file(tmp_path, ids), toy_root, la, ha, crop_size=64)
    with pytest.raises(ValueError, match="keys"):
        ds[0]
    ds = data.AffDataset(_list_file(tmp_path, ids), toy_root, la, str(tmp_path / "none"), crop_size=64)
    with pytest.raises(FileNotFoundError, match="none"):
        ds[0]


def test_seg_dataset_label_sources(toy_root, tmp_path):
    train_id = labels.load_img_id_list(os.path.join(toy_root, "train.txt"))[0]
    from voc12.dataset import mask_path

    assert mask_path(toy_root, train_id).endswith(os.path.join("SegmentationClassAug", train_id + ".png"))
    root = tmp_path / "voc"
    os.makedirs(root / "SegmentationClass")
    assert mask_path(str(root), "x") == os.path.join(str(root), "SegmentationClass", "x.png")
    assert mask_path(str(root), "x", "/p") == os.path.join("/p", "x.png")
    ds = data.SegDataset(_list_file(tmp_path, [train_id]), toy_root, label_dir=str(tmp_path / "nolabels"))
    with pytest.raises(FileNotFoundError, match="nolabels"):
        ds[0]


def test_validation_reads_the_published_evaluations_masks_or_says_it_falls_back(toy_root, tmp_path):
    from voc12.dataset import open_dataset

    val_id = labels.load_img_id_list(os.path.join(toy_root, "val.txt"))[0]
    voc = open_dataset("voc12", toy_root)  # both folders: the banded SegmentationClass wins
    assert voc.eval_mask_path(val_id) == os.path.join(toy_root, "SegmentationClass", val_id + ".png")
    assert voc.mask_path(val_id).endswith(os.path.join("SegmentationClassAug", val_id + ".png"))  # training's
    assert "SegmentationClass (evaluation.py --gt_dir)" in voc.eval_mask_note()
    root = tmp_path / "aug_only"
    os.makedirs(root / "JPEGImages")
    shutil.copytree(os.path.join(toy_root, "SegmentationClassAug"), root / "SegmentationClassAug")
    aug_only = open_dataset("voc12", str(root))
    assert aug_only.eval_mask_dir is None
    assert aug_only.eval_mask_path(val_id) == os.path.join(str(root), "SegmentationClassAug", val_id + ".png")
    assert "no SegmentationClass/: falling back to SegmentationClassAug/" in aug_only.eval_mask_note()


def test_seg_dataset_label_dir_and_scaled_crop(toy_root, tmp_path):
    ids = labels.load_img_id_list(os.path.join(toy_root, "val.txt"))[:3]
    lab_dir = os.path.join(toy_root, "SegmentationClass")  # with 255 bands
    ds = data.SegDataset(_list_file(tmp_path, ids), toy_root, label_dir=lab_dir, crop_size=40, scale_range=(0.5, 0.5))
    for k, i in enumerate(ids):
        _, img, lab = ds[k]
        assert img.shape == (3, 40, 40) and lab.shape == (40, 40) and lab.dtype == torch.int64
        gt = load_label_png(os.path.join(lab_dir, i + ".png"))
        # flip before scale, as the authors: nearest sampling of the flipped mask
        shrunk = [cv2.resize(np.ascontiguousarray(g), (32, 32), interpolation=cv2.INTER_NEAREST)
                  for g in (gt, gt[:, ::-1])]
        pad = (img == 0).all(0).numpy()
        rows, cols = np.nonzero(~pad)
        block = lab.numpy()[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert block.shape == (32, 32) and np.all(lab.numpy()[pad] == 255)
        assert np.array_equal(block, shrunk[0]) or np.array_equal(block, shrunk[1])


def test_seg_infer_dataset(toy_root):
    ds = data.SegInferDataset(os.path.join(toy_root, "val.txt"), toy_root, scales=(0.5, 1.25))
    item = ds[1]
    assert item["name"] == "2008_000002" and item["size"] == (64, 64)
    assert [tuple(t.shape) for t in item["images"]] == [(2, 3, 32, 32), (2, 3, 80, 80)]
    assert "label" not in item


def test_seg_dataset_follows_the_authors_augmentation(toy_root, tmp_path, monkeypatch):
    """HSV shift -> flip -> scale (cubic / nearest) -> normalise -> crop, each as the authors' OpenCV code."""
    name = labels.load_img_id_list(os.path.join(toy_root, "val.txt"))[0]
    ds = data.SegDataset(_list_file(tmp_path, [name]), toy_root, crop_size=80, scale_range=(0.75, 0.75))
    rgb = np.asarray(Image.open(os.path.join(toy_root, "JPEGImages", name + ".jpg")).convert("RGB"))
    gt = load_label_png(os.path.join(toy_root, "SegmentationClassAug", name + ".png"))
    draws = iter([-10, 10, 3])  # H, S, V shifts; then the flip, the scale draw and the crop offsets
    monkeypatch.setattr(data.imutils, "rand_int", lambda lo, hi: next(draws))
    monkeypatch.setattr(data.imutils, "rand_coin", lambda: True)
    monkeypatch.setattr(data.imutils, "crop_window", lambda h, w, c: (5, 7, 0, 0, h, w))
    _, img, lab = ds[0]

    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.int32)
    hsv[..., 0] = (hsv[..., 0] - 10) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] + 10, 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + 3, 0, 255)
    want = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[:, ::-1]
    want = cv2.resize(np.ascontiguousarray(want), None, fx=0.75, fy=0.75, interpolation=cv2.INTER_CUBIC)
    want = (want / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    want_lab = cv2.resize(np.ascontiguousarray(gt[:, ::-1]), None, fx=0.75, fy=0.75, interpolation=cv2.INTER_NEAREST)
    assert want.shape[:2] == (48, 48)  # 64 * 0.75: placed at (5, 7) inside the 80 x 80 crop
    np.testing.assert_allclose(img.numpy()[:, 5:53, 7:55], want.transpose(2, 0, 1), atol=1e-5)
    assert np.array_equal(lab.numpy()[5:53, 7:55], want_lab)
    outside = np.ones((80, 80), bool)
    outside[5:53, 7:55] = False
    assert np.all(img.numpy()[:, outside] == 0) and np.all(lab.numpy()[outside] == 255)


def test_hsv_shift_draws_every_integer_of_the_closed_range():
    random.seed(0)
    grey = np.full((2, 2, 3), 128, np.uint8)  # H = S = 0, V = 128: a V shift moves every channel by it
    shifts = {int(data.imutils.random_hsv_shift(grey, (0, 0, 10))[0, 0, 0]) - 128 for _ in range(400)}
    assert shifts == set(range(-10, 11))
    assert data.imutils.random_hsv_shift(grey, (0, 0, 0)).tolist() == grey.tolist()
