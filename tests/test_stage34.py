"""Stages 3-4 end to end on a tiny synthetic VOC set (CPU): AffinityNet training, random walk labels."""
import numpy as np
import pytest
import torch
from PIL import Image

import evaluation
import infer_aff
import train_aff
from network import resnet38_aff
from network.weights import load_weights_strict
from tool.losses import affinity_loss
from voc12.labels import load_img_id_list


def aff_args(stage2, toy, out, *extra):
    """train_aff on the shared stage-2 maps of train_aug (tests/conftest.py), writing under `out`."""
    return ["--voc12_root", str(toy), "--train_list", str(toy / "train_aug.txt"),
            "--la_crf_dir", str(stage2 / "crf_4.0"), "--ha_crf_dir", str(stage2 / "crf_24.0"),
            "--session_name", str(out / "aff"), "--tblog_dir", str(out / "tb"), "--batch_size", "4",
            "--weights", "none",
            "--num_workers", "0", "--width", "0.0625", "--crop_size", "96", *extra]


def test_affinity_loss_weights_and_means():
    aff = torch.tensor([[[0.5, 0.25, 0.9, 0.1]]])
    bg = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    fg = torch.tensor([[[0.0, 1.0, 0.0, 0.0]]])
    neg = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])
    t = affinity_loss(aff, bg, fg, neg)
    assert t["bg"].item() == pytest.approx(-np.log(0.5 + 1e-5), rel=1e-4)
    assert t["fg"].item() == pytest.approx(-np.log(0.25 + 1e-5), rel=1e-4)
    want_neg = -(np.log(1 + 1e-5 - 0.9) + np.log(1 + 1e-5 - 0.1)) / 2
    assert t["neg"].item() == pytest.approx(want_neg, rel=1e-4)
    assert t["loss"].item() == pytest.approx(t["bg"].item() / 4 + t["fg"].item() / 4 + want_neg / 2, rel=1e-5)
    empty = affinity_loss(aff, torch.zeros_like(bg), torch.zeros_like(fg), neg)
    assert torch.isfinite(empty["loss"]) and empty["bg"].item() == 0.0


def test_train_aff_then_random_walk_labels(stage2, toy, tmp_path, capsys):
    out = tmp_path
    train_aff.main(aff_args(stage2, toy, out, "--max_step", "2"))
    net = resnet38_aff.Net(width=0.0625)
    load_weights_strict(net, torch.load(out / "aff.pth", weights_only=True))
    args = ["--weights", str(out / "aff.pth"), "--voc12_root", str(toy), "--infer_list", str(toy / "train.txt"),
            "--cam_dir", str(stage2 / "cam"), "--out_rw", str(tmp_path / "rw"), "--num_workers", "0"]
    infer_aff.main(args)
    for name in load_img_id_list(toy / "train.txt"):
        img = Image.open(tmp_path / "rw" / f"{name}.png")
        assert img.mode == "P" and img.size == Image.open(toy / "JPEGImages" / f"{name}.jpg").size
        assert np.asarray(img).max() <= 20
    capsys.readouterr()
    result = evaluation.main(["--list", str(toy / "train.txt"), "--predict_dir", str(tmp_path / "rw"),
                              "--gt_dir", str(toy / "SegmentationClass"), "--logfile", "", "--num_workers", "1"])
    assert 0 <= result["miou"] <= 100
    infer_aff.main(args)
    assert f"0 of {len(load_img_id_list(toy / 'train.txt'))} images to process" in capsys.readouterr().out
    infer_aff.main([*args, "--crf", "--crf_workers", "0", "--overwrite", "--out_rw", str(tmp_path / "rw_crf")])
    assert len(list((tmp_path / "rw_crf").glob("*.png"))) == len(load_img_id_list(toy / "train.txt"))


def test_missing_crf_maps_stop_before_training(stage2, toy, tmp_path):
    args = aff_args(stage2, toy, tmp_path, "--max_step", "1")
    args[args.index("--la_crf_dir") + 1] = str(tmp_path / "crf_none")
    with pytest.raises(SystemExit) as e:
        train_aff.main(args)
    msg = str(e.value)
    assert msg.startswith(f"error: {tmp_path / 'crf_none'}/") and "CRF map not found (16 of 32 missing)" in msg
