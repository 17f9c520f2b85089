"""scripts/package_voc_server.py: the folder and archive the VOC evaluation server takes."""
import os
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import package_voc_server  # noqa: E402

from tool.vis import voc_palette  # noqa: E402

IDS = ["2008_000006", "2008_000011", "2008_000012"]


def predictions(folder, mode="P", extra=()):
    """Label maps of three ids (and `extra`), each with every class somewhere, as `mode` PNGs."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {}
    for img_id in [*IDS, *extra]:
        label = rng.integers(0, 21, size=(7, 9)).astype(np.uint8)
        label.flat[:21] = np.arange(21)
        img = Image.fromarray(label, mode="L")
        if mode == "P":
            img = img.convert("P")
            img.putpalette([v for i in range(256) for v in (i, i, i)])  # a palette other than VOC's
        img.save(folder / f"{img_id}.png")
        labels[img_id] = label
    return labels


@pytest.mark.parametrize("split, mode", [("test", "P"), ("val", "L")])
def test_the_server_layout_holds_voc_palette_pngs_of_the_same_labels(tmp_path, split, mode):
    labels = predictions(tmp_path / "seg", mode, extra=["2008_999999"])  # not in the list: left out
    (tmp_path / "list.txt").write_text("\n".join(IDS) + "\n")
    assert package_voc_server.main([str(tmp_path / "seg"), "--split", split, "--list", str(tmp_path / "list.txt")]) == 0
    out = tmp_path / f"voc_server_{split}"  # beside the predictions
    folder = out / "results" / "VOC2012" / "Segmentation" / f"comp6_{split}_cls"
    assert sorted(os.listdir(folder)) == sorted(f"{i}.png" for i in IDS)
    for img_id in IDS:
        with Image.open(folder / f"{img_id}.png") as img:
            assert img.mode == "P"
            palette = np.array(img.getpalette()[:21 * 3]).reshape(21, 3)
            values = np.array(img)
        np.testing.assert_array_equal(palette, voc_palette()[:21])  # VOC's colours
        np.testing.assert_array_equal(values, labels[img_id])  # the same class indices
    with tarfile.open(out / "results.tar.gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    inside = f"results/VOC2012/Segmentation/comp6_{split}_cls"
    assert sorted(members) == sorted(f"{inside}/{i}.png" for i in IDS)
    for img_id in IDS:
        assert members[f"{inside}/{img_id}.png"] == (folder / f"{img_id}.png").read_bytes()


def test_the_default_list_is_vocs_split(tmp_path):
    predictions(tmp_path / "seg")  # the first three ids of VOC's test list
    fourth = open(os.path.join(ROOT, "voc12", "test.txt")).read().split()[3]
    with pytest.raises(SystemExit, match=rf"error: .*seg: 1453 of the 1456 images of .*voc12/test.txt have no "
                                         rf"prediction, e.g. {fourth}.png$"):
        package_voc_server.main([str(tmp_path / "seg"), "--split", "test"])


def test_one_line_errors_before_anything_is_written(tmp_path):
    (tmp_path / "list.txt").write_text("\n".join(IDS) + "\n")
    args = ["--split", "test", "--list", str(tmp_path / "list.txt"), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match=f"^error: {tmp_path / 'nowhere'}: no such folder of predictions$"):
        package_voc_server.main([str(tmp_path / "nowhere"), *args])
    labels = predictions(tmp_path / "seg", "L")
    for bad in (21, 255):
        label = labels[IDS[1]].copy()
        label[3, 4] = bad
        Image.fromarray(label, mode="L").save(tmp_path / "seg" / f"{IDS[1]}.png")
        with pytest.raises(SystemExit, match=rf"^error: .*{IDS[1]}.png: label value {bad} outside 0..20 "):
            package_voc_server.main([str(tmp_path / "seg"), *args])
    Image.fromarray(labels[IDS[1]], mode="L").save(tmp_path / "seg" / f"{IDS[1]}.png")
    voc = tmp_path / "voc"
    (voc / "JPEGImages").mkdir(parents=True)
    for img_id in IDS:
        Image.new("RGB", (9, 7 if img_id != IDS[2] else 8)).save(voc / "JPEGImages" / f"{img_id}.jpg")
    with pytest.raises(SystemExit, match=rf"^error: .*{IDS[2]}.png: 9x7 pixels, its image 9x8$"):
        package_voc_server.main([str(tmp_path / "seg"), *args, "--voc12_root", str(voc)])
    os.remove(tmp_path / "seg" / f"{IDS[0]}.png")
    with pytest.raises(SystemExit, match=rf"1 of the 3 images of .*list.txt have no prediction, e.g. {IDS[0]}.png$"):
        package_voc_server.main([str(tmp_path / "seg"), *args])
    assert not (tmp_path / "out").exists()
