"""Stage 5: DeepLab-v1 head on ResNet-38, its loss, training (resume) and multi-scale inference."""
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import evaluation
import infer_seg
import train_seg
from network import build_network, resnet38_seam, resnet38_seg
from network.resnet38d import infer_width
from tool.checkpoint import load_state_dict_file, load_weights_strict, save_state_dict
from tool.imutils import Normalize
from tool.losses import segmentation_loss
from tool.optim import PolyOptimizer
from tool.vis import load_label_png
from voc12.data import multiscale_flip_images
from voc12.toy import generate_toy_voc

WIDTH = 1 / 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # These nets are tiny: on a busy 2-core machine, OpenMP threads waiting on each other cost
    # far more than they gain (a forward pass measured 1.6 s with 2 threads, 4 ms with 1).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    generate_toy_voc(str(root), n_train_aug=24, n_train=8, n_val=8, size=64, seed=0)
    return root


def train_argv(voc, out, session, *extra):
    return [
        "--voc12_root", str(voc), "--train_list", str(voc / "train_aug.txt"), "--session_name", str(out / session),
        "--tblog_dir", str(out / "tb"), "--width", str(WIDTH), "--crop_size", "64", "--batch_size", "4",
        "--max_step", "4", "--num_workers", "0", "--device", "cpu", "--ckpt_interval", "2", "--log_interval", "1",
        *extra,
    ]  # fmt: skip


def logged_losses(out, session):
    with open(out / "tb" / f"{str(out / session).replace('/', '_')}.log") as f:
        return [(int(m[1]), float(m[2])) for m in re.finditer(r"^step (\d+)/\d+ loss=([\d.]+)", f.read(), re.M)]


@pytest.fixture(scope="module")
def trained(voc, tmp_path_factory):
    """An uninterrupted 4-step run: (output folder, checkpoint path)."""
    out = tmp_path_factory.mktemp("train")
    train_seg.main(train_argv(voc, out, "full"))
    return out, out / "full.pth"


# ---------------------------------------------------------------- network


def test_logits_on_the_feature_grid():
    net = resnet38_seg.Net(num_classes=21, width=WIDTH).eval()
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 21, 8, 8)
    assert net(torch.randn(1, 3, 65, 50)).shape == (1, 21, 9, 7)
    assert net.fc6.dilation == (12, 12) and net.fc6.padding == (12, 12) and net.fc6.kernel_size == (3, 3)
    assert net.fc6.out_channels == net.fc7.out_channels == 32  # 512 * width
    assert net.fc8.bias is not None and net.fc6.bias is None
    assert build_network("network.resnet38_seg", width=WIDTH).__class__ is resnet38_seg.Net


def test_full_width_head_channels():
    net = resnet38_seg.Net()
    channels = (net.fc6.in_channels, net.fc6.out_channels, net.fc7.out_channels, net.fc8.out_channels)
    assert channels == (4096, 512, 512, 21)


def test_head_bn_trains_on_batch_statistics_backbone_bn_stays_frozen():
    torch.manual_seed(0)
    net = resnet38_seg.Net(width=WIDTH).train()
    assert net.fc6_bn.training and net.fc7_bn.training and not net.bn7.training and not net.b3.bn_branch2a.training
    assert net.fc6_bn.weight.requires_grad and net.fc7_bn.bias.requires_grad
    assert not net.bn7.weight.requires_grad
    head_mean, trunk_mean = net.fc6_bn.running_mean.clone(), net.bn7.running_mean.clone()
    net(torch.randn(2, 3, 64, 64))
    assert not torch.equal(net.fc6_bn.running_mean, head_mean)
    assert torch.equal(net.bn7.running_mean, trunk_mean)
    net.eval()
    assert not net.fc6_bn.training and not net.dropout7.training
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(net(x), net(x))  # eval: running statistics, no dropout


def test_head_gets_10x_and_20x_learning_rate():
    net = resnet38_seg.Net(width=WIDTH)
    opt = PolyOptimizer(net.get_parameter_groups(), lr=0.001, weight_decay=5e-4, max_step=10, momentum=0.9)

    def group_of(p):
        (group,) = [g for g in opt.param_groups if any(q is p for q in g["params"])]
        return group["lr"], group["weight_decay"]

    assert group_of(net.b3.conv_branch2a.weight) == pytest.approx((0.001, 5e-4))
    for p in (net.fc6.weight, net.fc7.weight, net.fc8.weight, net.fc6_bn.weight):
        assert group_of(p) == pytest.approx((0.01, 5e-4))
    for p in (net.fc8.bias, net.fc6_bn.bias, net.fc7_bn.bias):
        assert group_of(p) == pytest.approx((0.02, 0.0))
    trainable = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(net.b2.conv_branch2a.weight) not in trainable and id(net.bn7.weight) not in trainable
    assert opt.param_groups[0]["momentum"] == 0.9


# ---------------------------------------------------------------- loss


def test_loss_is_cross_entropy_on_upsampled_logits_ignoring_255():
    torch.manual_seed(0)
    logits = torch.randn(2, 21, 4, 4)
    labels = torch.randint(0, 21, (2, 32, 32))
    labels[:, :8] = 255
    want = F.cross_entropy(F.interpolate(logits, (32, 32), mode="bilinear", align_corners=False), labels,
                           ignore_index=255)
    assert segmentation_loss(logits, labels).item() == pytest.approx(want.item(), rel=1e-6)


def test_all_ignore_gives_zero_loss_and_zero_gradient():
    logits = torch.randn(2, 21, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((2, 32, 32), 255))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_out_of_range_label_is_an_error():
    with pytest.raises(ValueError, match="label value 21 outside 0..20"):
        segmentation_loss(torch.randn(1, 21, 2, 2), torch.full((1, 16, 16), 21))


# ---------------------------------------------------------------- training


def test_published_defaults():
    args = train_seg.get_parser().parse_args(["--voc12_root", "x"])
    assert (args.batch_size, args.max_step, args.lr, args.momentum, args.wt_dec) == (10, 20000, 0.001, 0.9, 5e-4)
    assert (args.crop_size, tuple(args.scale_range), args.network) == (448, (0.5, 1.5), "network.resnet38_seg")
    assert args.label_dir is None and args.train_list == "voc12/train_aug.txt"


def test_training_writes_a_strictly_loadable_checkpoint(trained):
    out, ckpt = trained
    state = load_state_dict_file(ckpt)
    assert infer_width(state) == WIDTH
    load_weights_strict(resnet38_seg.Net(width=WIDTH), state)
    assert [s for s, _ in logged_losses(out, "full")] == [1, 2, 3, 4]
    assert (out / "full.resume.pt").is_file()


def test_resume_continues_and_matches_the_uninterrupted_run(voc, trained, tmp_path, monkeypatch):
    _, full = trained
    calls = []

    def stop_at_third_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return segmentation_loss(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(train_seg, "segmentation_loss", stop_at_third_step)
        with pytest.raises(KeyboardInterrupt):
            train_seg.main(train_argv(voc, tmp_path, "part"))
    assert not (tmp_path / "part.pth").exists()
    train_seg.main(train_argv(voc, tmp_path, "resumed", "--resume", str(tmp_path / "part.resume.pt")))
    assert [s for s, _ in logged_losses(tmp_path, "resumed")] == [3, 4]
    want, got = load_state_dict_file(full), load_state_dict_file(tmp_path / "resumed.pth")
    assert want.keys() == got.keys()
    differ = [k for k in want if not torch.equal(want[k], got[k])]
    assert differ == []


def test_loss_falls_on_ground_truth_masks(voc, tmp_path):
    train_seg.main(train_argv(voc, tmp_path, "gt", "--train_list", str(voc / "train.txt"), "--max_step", "30",
                              "--lr", "0.01", "--ckpt_interval", "1000"))
    losses = [v for _, v in logged_losses(tmp_path, "gt")]
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_missing_pseudo_labels_fail_before_training(voc, tmp_path):
    (tmp_path / "labels").mkdir()
    with pytest.raises(SystemExit, match=r"labels/2007_\d+\.png: label PNG not found \(24 of 24 missing\)"):
        train_seg.main(train_argv(voc, tmp_path, "nolabels", "--label_dir", str(tmp_path / "labels")))
    assert not (tmp_path / "nolabels.pth").exists()


def test_training_starts_from_another_stages_backbone(voc, tmp_path):
    seam = resnet38_seam.Net(width=WIDTH)
    save_state_dict(seam.state_dict(), tmp_path / "seam.pth")
    train_seg.main(train_argv(voc, tmp_path, "from_seam", "--weights", str(tmp_path / "seam.pth"), "--max_step", "1",
                              "--lr", "0"))
    log = (tmp_path / "tb" / f"{str(tmp_path / 'from_seam').replace('/', '_')}.log").read_text()
    assert "backbone; left out the file's heads f8_3, f8_4, f9, fc8" in log
    state = torch.load(tmp_path / "from_seam.pth", weights_only=True)
    assert torch.equal(state["b7.conv_branch2b2.weight"], seam.b7.conv_branch2b2.weight)  # lr 0: unchanged


def test_training_from_a_foreign_checkpoint_fails_in_one_line(voc, tmp_path):
    save_state_dict(resnet38_seam.Net(width=WIDTH * 2).state_dict(), tmp_path / "wide.pth")
    with pytest.raises(SystemExit) as err:
        train_seg.main(train_argv(voc, tmp_path, "foreign", "--weights", str(tmp_path / "wide.pth")))
    assert str(err.value).startswith("error: ") and "\n" not in str(err.value) and "mis-shaped" in str(err.value)


# ---------------------------------------------------------------- inference


def test_multiscale_probs_is_softmax_of_mean_unflipped_logits():
    torch.manual_seed(0)
    model = nn.Conv2d(3, 5, 3, stride=4, padding=1).eval()
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (30, 44, 3), dtype=np.uint8))
    scales = (0.5, 1.0, 1.5)
    images = multiscale_flip_images(img, scales, Normalize())
    probs = infer_seg.multiscale_probs(model, images, (30, 44), torch.device("cpu"), "off")
    logits = []
    with torch.no_grad():
        for pair in images:
            plain = model(pair[:1])
            flipped = model(pair[1:]).flip(-1)  # forward on the flipped image, flip the output back
            for out in (plain, flipped):
                logits.append(F.interpolate(out, (30, 44), mode="bilinear", align_corners=False)[0])
    want = torch.softmax(torch.stack(logits).mean(0), dim=0)
    assert probs.shape == (5, 30, 44)
    torch.testing.assert_close(probs, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probs.sum(0), torch.ones(30, 44))


def infer_argv(voc, ckpt, out_dir, *extra):
    return ["--weights", str(ckpt), "--voc12_root", str(voc), "--infer_list", str(voc / "val.txt"),
            "--out_seg", str(out_dir), "--num_workers", "0", "--device", "cpu", *extra]


def test_inference_writes_pngs_that_evaluation_scores(voc, trained, tmp_path, capsys):
    _, ckpt = trained
    out = tmp_path / "seg"
    infer_seg.main(infer_argv(voc, ckpt, out))
    ids = (voc / "val.txt").read_text().split()
    assert sorted(os.listdir(out)) == sorted(i + ".png" for i in ids)
    for i in ids:
        label = load_label_png(out / f"{i}.png")
        gt = load_label_png(voc / "SegmentationClass" / f"{i}.png")
        assert label.shape == gt.shape and label.max() <= 20
    result = evaluation.main(["--list", str(voc / "val.txt"), "--predict_dir", str(out), "--gt_dir",
                              str(voc / "SegmentationClass"), "--type", "png", "--logfile", "", "--num_workers", "1"])
    assert 0.0 <= result["miou"] <= 100.0 and len(result["class_iou"]) == 21

    mtimes = {p: os.stat(out / p).st_mtime_ns for p in os.listdir(out)}
    capsys.readouterr()
    infer_seg.main(infer_argv(voc, ckpt, out))
    assert "0 of 8 images to process" in capsys.readouterr().out
    assert mtimes == {p: os.stat(out / p).st_mtime_ns for p in os.listdir(out)}
    infer_seg.main(infer_argv(voc, ckpt, out, "--overwrite", "--scales", "1.0"))
    assert "8 of 8 images to process" in capsys.readouterr().out


def test_crf_inference_on_worker_processes(voc, trained, tmp_path):
    _, ckpt = trained
    (tmp_path / "two.txt").write_text("\n".join((voc / "val.txt").read_text().split()[:2]) + "\n")
    out = tmp_path / "crf"
    infer_seg.main(infer_argv(voc, ckpt, out, "--infer_list", str(tmp_path / "two.txt"), "--scales", "1.0",
                              "--crf", "--crf_workers", "1"))
    for name in (tmp_path / "two.txt").read_text().split():
        label = load_label_png(out / f"{name}.png")
        assert label.shape == (64, 64) and label.max() <= 20


def test_wrong_checkpoint_is_a_one_line_error(voc, tmp_path):
    save_state_dict(resnet38_seam.Net(width=WIDTH).state_dict(), tmp_path / "seam.pth")
    with pytest.raises(SystemExit) as err:
        infer_seg.main(infer_argv(voc, tmp_path / "seam.pth", tmp_path / "out"))
    message = str(err.value)
    assert message.startswith("error: ") and "does not match network.resnet38_seg.Net" in message
    assert "\n" not in message and not (tmp_path / "out").exists()
