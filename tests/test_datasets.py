"""Data sets other than VOC (voc12/dataset.py): MS-COCO 2014 built by voc12.make_coco and a
4-class VOC-style folder, from label building through every stage on CPU; compact CAM storage."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import evaluation
import infer_aff
import infer_seam
import infer_seg
import train_aff
import train_seam
import train_seg
from tool.engine import camfile
from tool.vis import load_label_png
from voc12.data import ClsDataset
from voc12.dataset import labels_from_mask, open_dataset, read_class_names
from voc12.labels import load_img_id_list
from voc12.make_coco import build, semantic_mask
from voc12.toy import FOLDER_CLASSES, generate_toy_coco, generate_toy_folder

pycocotools = pytest.importorskip("pycocotools")
SLIM = ["--weights", "none", "--width", "0.0625", "--num_workers", "0"]


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    generate_toy_coco(str(root), n_train=9, n_val=4, size=64, seed=0)
    build(str(root), workers=2)  # the forked pool of the command line's default
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    generate_toy_folder(str(root), n_train=6, n_val=3, size=64, seed=0)
    return root


# ---------------------------------------------------------------- COCO label building


def test_coco_lists_classes_and_labels_follow_the_annotations(coco):
    from pycocotools.coco import COCO

    names = (coco / "classes.txt").read_text().split("\n")[:-1]
    assert len(names) == 80 and names[9] == "traffic_light" and names[79] == "toothbrush"
    data = open_dataset("coco14", str(coco))
    assert data.num_classes == 81 and data.class_names[1] == "person"
    labels = data.labels(None)
    for split, list_name in (("train2014", "train"), ("val2014", "val")):
        api = COCO(str(coco / "annotations" / f"instances_{split}.json"))
        class_of = {c: i + 1 for i, c in enumerate(sorted(api.getCatIds()))}
        listed = load_img_id_list(data.list_path(list_name))
        with_anns = [os.path.splitext(api.imgs[i]["file_name"])[0] for i in sorted(api.imgs) if api.imgToAnns[i]]
        assert listed == with_anns  # images without annotations left out (the toy's 8th train image)
        assert len(listed) == len(api.imgs) - (split == "train2014")
        for image_id in sorted(api.imgs):
            name = os.path.splitext(api.imgs[image_id]["file_name"])[0]
            anns = api.imgToAnns[image_id]
            if not anns:
                assert not os.path.exists(data.mask_path(name))
                continue
            want = sorted({class_of[a["category_id"]] for a in anns})
            assert (np.flatnonzero(labels[name]) + 1).tolist() == want
            mask = load_label_png(data.mask_path(name))
            for ann in anns:
                region = api.annToMask(ann) > 0
                if ann["iscrowd"]:
                    assert np.all(mask[region] == 255)  # toy crowds do not overlap instances
                else:
                    assert np.all(mask[region] == class_of[ann["category_id"]])
    assert os.path.isfile(data.image_path(listed[0]))
    crowded = [a for a in json.loads((coco / "annotations" / "instances_train2014.json").read_text())["annotations"]
               if a["iscrowd"]]
    assert crowded and isinstance(crowded[0]["segmentation"], dict)


def test_overlaps_go_to_the_smaller_instance_and_crowds_only_fill_background():
    boxes = {1: (0, 0, 8, 8), 2: (2, 2, 5, 5), 3: (6, 0, 10, 10)}

    def to_mask(ann):
        m = np.zeros((10, 10), np.uint8)
        y0, x0, y1, x1 = boxes[ann["id"]]
        m[y0:y1, x0:x1] = 1
        return m

    anns = [{"id": 2, "category_id": 18, "area": 9, "iscrowd": 0},
            {"id": 1, "category_id": 1, "area": 64, "iscrowd": 0},
            {"id": 3, "category_id": 44, "area": 40, "iscrowd": 1}]
    mask = semantic_mask(10, 10, anns, to_mask, {1: 1, 18: 17, 44: 40})
    assert mask[3, 3] == 17 and mask[0, 0] == 1  # the small dog on the large person keeps its pixels
    assert mask[7, 7] == 1 and mask[9, 9] == 255 and mask[9, 0] == 255  # crowd over background only
    assert mask[0, 9] == 0 and (mask == 0).sum() == 12  # uncovered


def test_coco_masks_are_kept_unless_overwritten(coco):
    name = (coco / "train.txt").read_text().split()[0]
    path = coco / "SegmentationClass" / f"{name}.png"
    stamp = path.stat().st_mtime_ns
    labels_before = (coco / "cls_labels.txt").read_text()
    build(str(coco), splits=("train2014",))
    assert path.stat().st_mtime_ns == stamp
    assert len((coco / "val.txt").read_text().split()) == 4  # the other split's list kept
    assert (coco / "cls_labels.txt").read_text() == labels_before  # and its labels


def test_make_coco_names_a_missing_annotation_file(tmp_path, capsys):
    from voc12 import make_coco

    with pytest.raises(SystemExit) as e:
        make_coco.main(["--coco_root", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path}/annotations/instances_train2014.json") and "\n" not in err


# ---------------------------------------------------------------- folder data sets


def test_folder_labels_from_xml_masks_or_file_agree(folder, tmp_path):
    data = open_dataset("folder", str(folder))
    assert data.class_names == ("background", *[n for n, _ in FOLDER_CLASSES])
    ids = load_img_id_list(data.list_path("train_aug"))  # no train_aug.txt: train.txt
    assert data.list_path("train_aug") == str(folder / "train.txt") and len(ids) == 6
    from_xml = data.labels(ids)
    for name in ids:
        from_mask = labels_from_mask(data.mask_path(name), data.num_classes)
        assert from_mask.shape == (4,) and from_mask.any()
        np.testing.assert_array_equal(from_xml[name], from_mask)
    (tmp_path / "labels.txt").write_text("".join(f"{n} {FOLDER_CLASSES[0][0]}\n" for n in ids))
    dataset = ClsDataset(str(folder / "train.txt"), data, str(tmp_path / "labels.txt"))
    assert dataset[0][2].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_toy_folder_of_n_classes_with_train_aug(tmp_path):
    """The demo's folder: n classes evenly spaced in hue, train.txt the head of train_aug.txt."""
    from voc12 import toy

    toy.main(["--kind", "folder", "--n_classes", "6", "--n_train_aug", "8", "--n_train", "3", "--n_val", "2",
              "--size", "48", "--out", str(tmp_path / "f")])
    data = open_dataset("folder", str(tmp_path / "f"))
    assert data.class_names == ("background", "ellipse", "ring", "hexagon", "L_shape", "x", "arrow")
    hues = [toy.CLASS_STYLE[s]["hue"] for _, s in toy.folder_classes(6)]
    assert min(np.diff(hues)) > 0.1  # apart by more than the published ColorJitter's hue shift
    train_aug, train = (load_img_id_list(data.list_path(r)) for r in ("train_aug", "train"))
    assert len(train_aug) == 8 and train == train_aug[:3] and len(load_img_id_list(data.list_path("val"))) == 2
    labels = data.labels(train_aug)
    assert all(labels[i].shape == (6,) and labels[i].any() for i in train_aug)
    assert toy.folder_classes(4) == FOLDER_CLASSES and [n for n, _ in FOLDER_CLASSES][2] == "L_shape"
    with pytest.raises(ValueError, match="--n_classes"):
        toy.folder_classes(21)
    with pytest.raises(ValueError, match="--n_train"):
        toy.generate_toy_folder(str(tmp_path / "g"), n_train=5, n_val=1, n_train_aug=3)
    with pytest.raises(ValueError, match="--object_scale"):  # objects too small to place: no endless retries
        toy.generate_toy_folder(str(tmp_path / "g"), n_train=1, n_val=1, object_scale=(0.01, 0.02))


def test_labels_from_masks_alone_train_stage_one(folder, tmp_path):
    """A folder with neither cls_labels.txt nor Annotations/: labels from the masks, through a script."""
    import shutil

    bare = tmp_path / "bare"
    for part in ("JPEGImages", "SegmentationClass"):
        shutil.copytree(folder / part, bare / part)
    for part in ("classes.txt", "train.txt", "val.txt"):
        shutil.copy(folder / part, bare / part)
    data = open_dataset("folder", str(bare))
    ids = load_img_id_list(data.list_path("train"))
    from_masks = data.labels(ids)
    from_xml = open_dataset("folder", str(folder)).labels(ids)
    assert all(np.array_equal(from_masks[i], from_xml[i]) for i in ids)
    with pytest.raises(ValueError, match="need image ids"):
        data.labels(None)
    train_seam.main(["--dataset", "folder", "--data_root", str(bare), *SLIM, "--batch_size", "2", "--crop_size", "64",
                     "--max_step", "1", "--session_name", str(tmp_path / "seam")])
    assert torch.load(tmp_path / "seam.pth", weights_only=True)["fc8.weight"].shape[0] == 5


def test_xml_class_names_with_spaces_read_as_one_word(tmp_path):
    from voc12.make_cls_labels import object_names_from_xml

    xml = "<annotation><object><name> traffic light </name></object><object><name>dog</name></object></annotation>"
    (tmp_path / "a.xml").write_text(xml)
    assert object_names_from_xml(str(tmp_path / "a.xml")) == ["traffic_light", "dog"]


@pytest.mark.parametrize("text, fragment", [("a\na\n", "appears twice"), ("a b\n", "bad class name"),
                                            ("background\n", "0 classes"), ("a\nbackground\n", "bad class name")])
def test_bad_class_lists_are_named(tmp_path, text, fragment):
    (tmp_path / "classes.txt").write_text(text)
    with pytest.raises(ValueError, match=fragment):
        read_class_names(str(tmp_path / "classes.txt"))


def test_missing_pieces_are_one_line_errors(folder, tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(FileNotFoundError, match="classes.txt: class list not found"):
        open_dataset("folder", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="prepare the folder with python -m voc12.make_coco"):
        open_dataset("coco14", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no test list"):
        open_dataset("folder", str(folder)).list_path("test")
    with pytest.raises(SystemExit) as e:  # a script given a folder of VOC's layout without classes.txt
        train_seam.main(["--dataset", "folder", "--data_root", str(tmp_path), *SLIM])
    assert str(e.value).startswith(f"error: {tmp_path}/classes.txt") and "\n" not in str(e.value)


# ---------------------------------------------------------------- every stage


def stage_chain(kind, root, out):
    """Every stage's script on the data set, a few steps each; returns evaluation results."""
    data = ["--dataset", kind, "--data_root", str(root)]
    small = [*SLIM, "--batch_size", "4", "--crop_size", "64", "--max_step", "2"]
    train_seam.main([*data, *small, "--resize_long", "64", "80", "--session_name", str(out / "seam")])
    infer_seam.main([*data, "--weights", str(out / "seam.pth"), "--num_workers", "0", "--crf_workers", "0",
                     "--out_cam", str(out / "cam"), "--out_crf", str(out / "crf")])
    gt = str(root / "SegmentationClass")
    evals = {}
    evals["cam"] = evaluation.main([*data, "--list", str(root / "train.txt"), "--predict_dir", str(out / "cam"),
                                    "--gt_dir", gt, "--type", "npz", "--curve", "--num_workers", "1"])
    evals["crf"] = evaluation.main([*data, "--list", str(root / "train.txt"), "--predict_dir", str(out / "crf_24.0"),
                                    "--gt_dir", gt, "--type", "crf", "--num_workers", "1"])
    train_aff.main([*data, *small, "--la_crf_dir", str(out / "crf_4.0"), "--ha_crf_dir", str(out / "crf_24.0"),
                    "--session_name", str(out / "aff")])
    infer_aff.main([*data, "--weights", str(out / "aff.pth"), "--cam_dir", str(out / "cam"), "--out_rw",
                    str(out / "rw"), "--num_workers", "0"])
    evals["rw"] = evaluation.main([*data, "--list", str(root / "train.txt"), "--predict_dir", str(out / "rw"),
                                   "--gt_dir", gt, "--num_workers", "1"])
    train_seg.main([*data, *small, "--label_dir", str(out / "rw"), "--session_name", str(out / "seg")])
    infer_seg.main([*data, "--weights", str(out / "seg.pth"), "--out_seg", str(out / "seg"), "--num_workers", "0",
                    "--crf_workers", "0", "--scales", "1.0"])
    evals["seg"] = evaluation.main([*data, "--list", str(root / "val.txt"), "--predict_dir", str(out / "seg"),
                                    "--gt_dir", gt, "--num_workers", "1"])
    return evals


@pytest.mark.parametrize("kind", ["folder", "coco14"])
def test_every_stage_runs_on_the_data_set(kind, coco, folder, tmp_path, capsys):
    root = coco if kind == "coco14" else folder
    data = open_dataset(kind, str(root))
    evals = stage_chain(kind, root, tmp_path)
    n = data.num_classes
    assert torch.load(tmp_path / "seam.pth", weights_only=True)["fc8.weight"].shape[0] == n
    assert torch.load(tmp_path / "seg.pth", weights_only=True)["cls_conv.weight"].shape[0] == n
    train_ids = load_img_id_list(data.list_path("train"))
    labels = data.labels(train_ids)
    for name in train_ids:
        keys, cams = camfile.load_cam(tmp_path / "cam" / f"{name}.npz", n)
        assert keys.tolist() == np.flatnonzero(labels[name]).tolist()
        with np.load(tmp_path / "cam" / f"{name}.npz") as stored:  # the compact defaults outside VOC
            assert stored["cams"].dtype == (np.uint8 if kind == "coco14" else np.float16)
        rw = np.asarray(Image.open(tmp_path / "rw" / f"{name}.png"))
        assert set(np.unique(rw).tolist()) <= {0, *(keys + 1).tolist()}
    val_ids = load_img_id_list(data.list_path("val"))
    assert sorted(os.listdir(tmp_path / "seg")) == sorted(i + ".png" for i in val_ids)
    for result in evals.values():
        assert len(result["class_iou"]) == n and 0 <= result["miou"] <= 100
    out = capsys.readouterr().out
    assert f"{data.class_names[-1]}:" in out and "mIoU:" in out


def test_a_checkpoint_of_another_class_count_is_one_line(folder, tmp_path):
    from network import resnet38_seam
    from tool.engine.checkpoint import save_state_dict

    save_state_dict(resnet38_seam.Net(width=0.0625).state_dict(), tmp_path / "voc.pth")
    with pytest.raises(SystemExit) as e:
        infer_seam.main(["--dataset", "folder", "--data_root", str(folder), "--weights", str(tmp_path / "voc.pth"),
                         "--out_cam", str(tmp_path / "cam"), "--num_workers", "0"])
    msg = str(e.value)
    assert msg.startswith(f"error: {tmp_path / 'voc.pth'}: 21 classes, but the folder data set") and "has 5" in msg
    assert not (tmp_path / "cam").exists()


# ---------------------------------------------------------------- compact CAM storage


@pytest.mark.parametrize("storage", ["float16", "uint8"])
def test_compact_maps_read_back_within_the_stated_error(tmp_path, storage):
    maps = np.random.default_rng(0).random((3, 40, 50)).astype(np.float32)
    maps[0, 0, :3] = (0.0, 1.0, 0.5)
    camfile.save_cam(tmp_path / "c.npz", [1, 4, 9], maps, storage)
    camfile.save_crf(tmp_path / "r.npz", [0, 2, 5], maps, storage)
    for _, got in (camfile.load_cam(tmp_path / "c.npz"), camfile.load_crf(tmp_path / "r.npz")):
        assert got.dtype == np.float32
        err = np.abs(got - maps).max()
        assert 0 < err <= camfile.STORAGE_ERROR[storage] + 1e-6  # + float32 rounding
        assert got[0, 0, 0] == 0.0 and got[0, 0, 1] == 1.0
    camfile.save_cam(tmp_path / "f.npz", [1, 4, 9], maps)
    assert os.path.getsize(tmp_path / "c.npz") < os.path.getsize(tmp_path / "f.npz")


@pytest.mark.parametrize("storage, bar", [("float16", 0.05), ("uint8", 0.25)])
def test_compact_cams_give_the_same_curve(folder, tmp_path, storage, bar):
    """evaluation reads the stored maps back: on random CAMs (many near-ties) of six 64x64 images
    the curve moves at most 0.0099 (float16) and 0.053 (uint8) mIoU points from float32's."""
    rng = np.random.default_rng(1)
    data = open_dataset("folder", str(folder))
    ids = load_img_id_list(data.list_path("train"))
    labels = data.labels(ids)
    for name in ids:
        keys = np.flatnonzero(labels[name])
        cams = rng.random((len(keys), 64, 64)).astype(np.float32)
        for kind in ("float32", storage):
            camfile.save_cam(tmp_path / kind / f"{name}.npz", keys, cams, kind)
    curves = {}
    for kind in ("float32", storage):
        curves[kind] = evaluation.main(["--dataset", "folder", "--data_root", str(folder), "--list",
                                        str(folder / "train.txt"), "--predict_dir", str(tmp_path / kind),
                                        "--gt_dir", str(folder / "SegmentationClass"), "--type", "npz", "--curve",
                                        "--num_workers", "1", "--logfile", ""])["curve"]
    diffs = [abs(a[1] - b[1]) for a, b in zip(curves["float32"], curves[storage])]
    assert 0 < max(diffs) < bar
