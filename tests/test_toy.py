import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from tool.vis import load_label_png
from voc12 import data, toy
from voc12.labels import CAT_NAMES, load_cls_labels, load_img_id_list


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("toyvoc"))
    toy.generate_toy_voc(root, n_train_aug=16, n_train=8, n_val=8, size=64, seed=0)
    return root


def _ids(root, name):
    return load_img_id_list(os.path.join(root, name + ".txt"))


def _xml_classes(root, img_id):
    tree = ET.parse(os.path.join(root, "Annotations", img_id + ".xml")).getroot()
    return tree, {o.findtext("name") for o in tree.iter("object")}


def test_splits(toy_root):
    train_aug, train, val = _ids(toy_root, "train_aug"), _ids(toy_root, "train"), _ids(toy_root, "val")
    assert (len(train_aug), len(train), len(val)) == (16, 8, 8)
    assert set(train) <= set(train_aug) and not set(val) & set(train_aug)
    assert _ids(toy_root, "ImageSets/Segmentation/train") == train
    assert _ids(toy_root, "ImageSets/Segmentation/val") == val
    assert all(len(i) == 11 and i[4] == "_" for i in train_aug + val)


def test_every_id_has_files_and_consistent_classes(toy_root):
    cls = load_cls_labels(os.path.join(toy_root, "cls_labels.txt"))
    seg_ids = set(_ids(toy_root, "train") + _ids(toy_root, "val"))
    all_ids = _ids(toy_root, "train_aug") + _ids(toy_root, "val")
    assert set(cls) == set(all_ids)
    n_objects = []
    for i in all_ids:
        with Image.open(os.path.join(toy_root, "JPEGImages", i + ".jpg")) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 64)
        xml, xml_names = _xml_classes(toy_root, i)
        assert xml.findtext("filename") == i + ".jpg" and xml.findtext("size/width") == "64"
        n_objects.append(len(list(xml.iter("object"))))
        names_from_labels = {CAT_NAMES[c] for c in np.flatnonzero(cls[i])}
        assert xml_names == names_from_labels
        folders = ["SegmentationClassAug"] + (["SegmentationClass"] if i in seg_ids else [])
        assert os.path.exists(os.path.join(toy_root, "SegmentationClass", i + ".png")) == (i in seg_ids)
        for folder in folders:
            path = os.path.join(toy_root, folder, i + ".png")
            with Image.open(path) as im:
                assert im.mode == "P" and im.size == (64, 64)
            mask = load_label_png(path)
            values = set(np.unique(mask).tolist())
            assert values <= set(range(21)) | {255}
            assert {CAT_NAMES[v - 1] for v in values - {0, 255}} == xml_names
        for obj in xml.iter("object"):
            box = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            assert 1 <= box[0] <= box[2] <= 64 and 1 <= box[1] <= box[3] <= 64
            inside = mask[box[1] - 1:box[3], box[0] - 1:box[2]]
            assert np.any(inside == CAT_NAMES.index(obj.findtext("name")) + 1)
    assert 1 <= min(n_objects) and max(n_objects) <= 3 and max(n_objects) > 1


def test_bands_only_in_segmentation_class(toy_root):
    for i in _ids(toy_root, "val"):
        banded = load_label_png(os.path.join(toy_root, "SegmentationClass", i + ".png"))
        aug = load_label_png(os.path.join(toy_root, "SegmentationClassAug", i + ".png"))
        assert 255 not in aug
        band = banded == 255
        assert band.any() and np.array_equal(banded[~band], aug[~band])
        # every class change in the Aug mask lies inside the band
        change = (aug[:, 1:] != aug[:, :-1])
        assert np.all(band[:, 1:][change] & band[:, :-1][change])
        # bands are thin: a band pixel is within 1 pixel of a class change
        padded = np.pad(aug, 1, mode="edge")
        near_change = np.zeros_like(band)
        for dy in range(3):
            for dx in range(3):
                near_change |= padded[dy:dy + aug.shape[0], dx:dx + aug.shape[1]] != aug
        assert np.all(near_change[band])
        assert band.mean() < 0.5


def test_same_seed_same_bytes(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    toy.generate_toy_voc(a, n_train_aug=3, n_train=1, n_val=1, size=48, seed=4)
    toy.generate_toy_voc(b, n_train_aug=3, n_train=1, n_val=1, size=48, seed=4)
    toy.generate_toy_voc(c, n_train_aug=3, n_train=1, n_val=1, size=48, seed=5)
    for rel in ("SegmentationClassAug/2007_000002.png", "JPEGImages/2007_000002.jpg", "cls_labels.txt"):
        with open(os.path.join(a, rel), "rb") as fa, open(os.path.join(b, rel), "rb") as fb:
            assert fa.read() == fb.read()
    with open(os.path.join(a, "JPEGImages/2007_000002.jpg"), "rb") as fa, \
            open(os.path.join(c, "JPEGImages/2007_000002.jpg"), "rb") as fc:
        assert fa.read() != fc.read()


def test_cli_and_bad_args(tmp_path, capsys):
    toy.main(["--out", str(tmp_path / "t"), "--n_train_aug", "2", "--n_train", "1", "--n_val", "1", "--size", "40"])
    assert len(_ids(str(tmp_path / "t"), "train_aug")) == 2
    with pytest.raises(SystemExit) as exc:
        toy.main(["--out", str(tmp_path / "u"), "--n_train_aug", "2", "--n_train", "5"])
    assert exc.value.code == 2 and "--n_train" in capsys.readouterr().err


def test_class_styles_are_distinct():
    yy, xx = np.mgrid[-1:1:64j, -1:1:64j]
    masks = [shape(xx, yy) for _, shape in toy.SHAPES]
    assert len(masks) == 20 and all(0.1 < m.mean() < 0.9 for m in masks)
    for i in range(20):
        for j in range(i + 1, 20):
            assert np.mean(masks[i] != masks[j]) > 0.05, (toy.SHAPES[i][0], toy.SHAPES[j][0])
    assert len({s["hue"] for s in toy.CLASS_STYLE}) == 20


def test_datasets_load_toy(toy_root):
    cls_file = os.path.join(toy_root, "cls_labels.txt")
    ds = data.ClsDataset(os.path.join(toy_root, "train_aug.txt"), toy_root, cls_file,
                         transform=data.TrainClsTransform(crop_size=64, resize_long=(64, 96)))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    names, imgs, labs = next(iter(loader))
    assert imgs.shape == (4, 3, 64, 64) and imgs.dtype == torch.float32 and labs.shape == (4, 20)
    assert torch.all(labs.sum(1) >= 1)

    msf = data.ClsDatasetMSF(os.path.join(toy_root, "train.txt"), toy_root, cls_file)
    item = msf[0]
    assert item["size"] == (64, 64) and item["name"] == _ids(toy_root, "train")[0]
    assert [tuple(t.shape) for t in item["images"]] == [(2, 3, s, s) for s in (32, 64, 96, 128)]
    full = item["images"][1]
    assert torch.equal(full[1], full[0].flip(-1))
    plain = data.ClsDataset(os.path.join(toy_root, "train.txt"), toy_root, cls_file)[0][1]
    torch.testing.assert_close(full[0], plain)
    assert torch.equal(item["label"], torch.from_numpy(load_cls_labels(cls_file)[item["name"]]))

    seg = data.SegDataset(os.path.join(toy_root, "val.txt"), toy_root, crop_size=64, scale_range=(1.0, 1.0))
    for k, name in enumerate(_ids(toy_root, "val")[:4]):
        _, img, lab = seg[k]
        assert img.shape == (3, 64, 64) and lab.shape == (64, 64) and lab.dtype == torch.int64
        gt = load_label_png(os.path.join(toy_root, "SegmentationClassAug", name + ".png")).astype(np.int64)
        flipped = not np.array_equal(lab.numpy(), gt)
        assert np.array_equal(lab.numpy(), gt[:, ::-1] if flipped else gt)
        # image and label aligned: object pixels are saturated, background near-grey (even after jitter)
        std, mean = np.array([0.229, 0.224, 0.225]), np.array([0.485, 0.456, 0.406])
        rgb = img.numpy() * std[:, None, None] + mean[:, None, None]
        sat = rgb.max(0) - rgb.min(0)
        lab = lab.numpy()
        assert sat[lab > 0].mean() > sat[lab == 0].mean() + 0.05
