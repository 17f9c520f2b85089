"""Stage 5: DeepLab-v1 head on ResNet-38, its loss, training (resume) and multi-scale inference."""
import functools
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
from network import build_network, resnet38_seam, resnet38_seg, resnet38d
from network.deeplab import DeepLabV1
from network.weights import load_state_dict_file, load_weights_strict, network_for_checkpoint
from tests.reference_fill import fill, read_key_list
from tool.batchnorm import BNGroups
from tool.cam import multiscale_probs
from tool.engine.checkpoint import save_state_dict
from tool.engine.runtime import model_forward
from tool.losses import segmentation_loss
from tool.optim import PolyOptimizer
from tool.vis import load_label_png
from voc12.data import multiscale_flip_images

WIDTH = 1 / 16
DATA = os.path.join(os.path.dirname(__file__), "data")
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
AUTHORS_CKPT = "deeplabv1_resnet38_VOCDataset_itr20000_all_64.754.pth"


def authors_key_list():
    """(key, shape, dtype) of the authors' DeepLab checkpoint, in their order: the listing taken
    from their model (semantic-segmentation-codebase, seamv1-pseudovoc), not from ours."""
    return read_key_list("deeplabv1_resnet38_state_dict.txt")


@functools.lru_cache(maxsize=1)
def authors_state_dict():
    """fill.py weights in the authors' layout (slim: width 1/16, the layout and arithmetic of
    theirs at a fraction of the cost); the head's BN running statistics are then estimated on a
    random image (as training would), so that the logits vary over the image instead of one class
    winning everywhere. Not to be modified by callers."""
    rows = [(k, tuple(v.shape)) for k, v in slim_authors_state_dict().items()]  # their key order
    sd = {k: torch.from_numpy(np.asarray(fill(k, shape, i))) for i, (k, shape) in enumerate(rows)}
    backbone = resnet38d.Net(width=WIDTH).eval()
    backbone.load_state_dict({k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")})
    with torch.no_grad():
        f = backbone(torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(0)))["conv6"]
        for conv, bn in (("conv_fov", "bn_fov"), ("conv_fov2", "bn_fov2")):
            f = F.conv2d(f, sd[f"{conv}.weight"], padding=12 if conv == "conv_fov" else 0,
                         dilation=12 if conv == "conv_fov" else 1)
            sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"] = f.mean(dim=(0, 2, 3)), f.var(dim=(0, 2, 3))
            f = F.relu(F.batch_norm(f, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"],
                                    sd[f"{bn}.bias"], False, 0.0, 1e-5))
    return sd


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def voc(toy):
    """The shared toy set (tests/conftest.py): 16 train_aug images, 6 train, 4 val."""
    return toy


def train_argv(voc, out, session, *extra):
    return [
        "--weights", "none",
        "--voc12_root", str(voc), "--train_list", str(voc / "train_aug.txt"), "--session_name", str(out / session),
        "--tblog_dir", str(out / "tb"), "--width", str(WIDTH), "--crop_size", "64", "--batch_size", "4",
        "--max_step", "4", "--num_workers", "0", "--device", "cpu", "--ckpt_interval", "2", "--log_interval", "1",
        *extra,
    ]  # fmt: skip


def logged_losses(out, session):
    with open(out / "tb" / f"{str(out / session).replace('/', '_')}.log") as f:
        return [(int(m[1]), float(m[2])) for m in re.finditer(r"^step (\d+)/\d+ loss=([\d.]+)", f.read(), re.M)]


@pytest.fixture
def trained(trained):
    """The shared 2-step run of train_seg (tests/conftest.py): (output folder, checkpoint path)."""
    ckpt = trained("train_seg")
    return ckpt.parent, ckpt


# ---------------------------------------------------------------- network


def test_logits_at_the_input_size():
    net = resnet38_seg.Net(num_classes=21, width=WIDTH).eval()
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 21, 64, 64)
    assert net(torch.randn(1, 3, 65, 50)).shape == (1, 21, 65, 50)
    assert net.conv_fov.dilation == (12, 12) and net.conv_fov.padding == (12, 12) and net.conv_fov.kernel_size == (3, 3)
    assert net.conv_fov.out_channels == net.conv_fov2.out_channels == 32  # 512 * width
    assert net.cls_conv.bias is not None and net.conv_fov.bias is None and net.conv_fov2.bias is None
    assert type(net.dropout) is nn.Dropout and net.dropout.p == 0.5  # element-wise, not channel dropout
    built = build_network("network.resnet38_seg", width=WIDTH)
    assert type(built) is DeepLabV1 and type(built.backbone) is resnet38d.ResNet38d


def test_logits_are_upsampled_with_align_corners():
    torch.manual_seed(0)
    net = resnet38_seg.Net(width=WIDTH).eval()
    x = torch.randn(1, 3, 43, 61)
    with torch.no_grad():
        coarse = []
        net.cls_conv.register_forward_hook(lambda m, i, o: coarse.append(o) and None)
        out = net(x)
    assert coarse[0].shape[2:] == (6, 8)
    torch.testing.assert_close(out, F.interpolate(coarse[0], (43, 61), mode="bilinear", align_corners=True))


def test_full_width_head_and_init():
    torch.manual_seed(0)
    net = resnet38_seg.Net()
    channels = (net.conv_fov.in_channels, net.conv_fov.out_channels, net.conv_fov2.out_channels,
                net.cls_conv.out_channels)
    assert channels == (4096, 512, 512, 21)
    # kaiming normal, fan_out, relu: std sqrt(2 / (out_channels * kernel area))
    for conv, fan_out in ((net.conv_fov, 512 * 9), (net.conv_fov2, 512), (net.cls_conv, 21)):
        assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)
    for bn in (net.bn_fov, net.bn_fov2):
        assert torch.equal(bn.weight, torch.ones(512)) and torch.equal(bn.bias, torch.zeros(512))
    assert all(m.momentum == 3e-4 for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_our_keys_are_the_authors_without_the_backbone_prefix():
    ours = list(resnet38_seg.Net().state_dict())
    assert [k for k, _, _ in authors_key_list()] == [
        k if k.split(".", 1)[0] in resnet38_seg.Net.head_names else "backbone." + k for k in ours
    ]


def test_every_bn_uses_batch_statistics_with_momentum_0_0003():
    torch.manual_seed(0)
    net = resnet38_seg.Net(width=WIDTH).train()
    bns = {name: m for name, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert all(m.training for m in bns.values())
    assert {"backbone.b2.bn_branch2a", "backbone.bn7", "bn_fov", "bn_fov2"} <= set(bns)
    seen, before = {}, {n: m.running_mean.clone() for n, m in bns.items()}

    def keep(name):
        def hook(module, inputs, output):
            seen[name] = (inputs[0], output)

        return hook

    for name, m in bns.items():
        m.register_forward_hook(keep(name))
    net(torch.randn(3, 3, 48, 40))
    for name, m in bns.items():
        x, y = seen[name]
        batch_mean = x.mean(dim=(0, 2, 3))
        torch.testing.assert_close(m.running_mean, (1 - 3e-4) * before[name] + 3e-4 * batch_mean)
        normalised = (x - batch_mean[None, :, None, None]) / (x.var(dim=(0, 2, 3), unbiased=False)[None, :, None, None]
                                                              + m.eps).sqrt()
        want = normalised * m.weight[None, :, None, None] + m.bias[None, :, None, None]
        torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-4)  # batch statistics, not running ones


def test_parameter_groups_train_every_conv_and_no_bn():
    net = resnet38_seg.Net(width=WIDTH)
    opt = PolyOptimizer(net.get_parameter_groups(), lr=0.001, weight_decay=5e-4, max_step=10, momentum=0.9)
    group = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    for name, p in net.named_parameters():
        top = name.split(".", 1)[0]
        if ".bn" in "." + name:
            assert id(p) not in group and not p.requires_grad, name  # BN affine never trained
        elif top in ("conv_fov", "conv_fov2", "cls_conv") and name.endswith("weight"):
            assert group[id(p)] == pytest.approx((0.01, 5e-4)), name
        elif name == "cls_conv.bias":
            assert group[id(p)] == pytest.approx((0.02, 0.0))
        else:
            assert group[id(p)] == pytest.approx((0.001, 5e-4)), name  # conv1a and b2* included
    assert id(net.backbone.conv1a.weight) in group and id(net.backbone.b2_2.conv_branch2b1.weight) in group


def test_frozen_bn_variant():
    net = resnet38_seg.Net(width=WIDTH, frozen=True).train()
    assert not net.backbone.bn7.training and not net.backbone.b3.bn_branch2a.training and net.bn_fov.training
    assert not net.backbone.conv1a.weight.requires_grad and not net.backbone.b2.conv_branch2a.weight.requires_grad
    assert net.backbone.b3.conv_branch2a.weight.requires_grad
    head_mean, trunk_mean = net.bn_fov.running_mean.clone(), net.backbone.bn7.running_mean.clone()
    net(torch.randn(2, 3, 64, 64))
    assert not torch.equal(net.bn_fov.running_mean, head_mean)
    assert torch.equal(net.backbone.bn7.running_mean, trunk_mean)
    net.eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(net(x), net(x))  # eval: running statistics, no dropout


# ---------------------------------------------------------------- loss


def test_loss_is_cross_entropy_ignoring_255():
    torch.manual_seed(0)
    logits = torch.randn(2, 21, 32, 32)
    labels = torch.randint(0, 21, (2, 32, 32))
    labels[:, :8] = 255
    want = F.cross_entropy(logits, labels, ignore_index=255)
    assert segmentation_loss(logits, labels).item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"logits are \(4, 4\), labels \(32, 32\)"):
        segmentation_loss(torch.randn(2, 21, 4, 4), labels)


def test_all_ignore_gives_zero_loss_and_zero_gradient():
    logits = torch.randn(2, 21, 32, 32, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((2, 32, 32), 255))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_out_of_range_label_is_an_error():
    with pytest.raises(ValueError, match="label value 21 outside 0..20"):
        segmentation_loss(torch.randn(1, 21, 16, 16), torch.full((1, 16, 16), 21))


# ---------------------------------------------------------------- training


def test_training_writes_a_strictly_loadable_checkpoint(trained):
    out, ckpt = trained
    state = load_state_dict_file(ckpt)
    assert network_for_checkpoint(dict(state), "seg", str(ckpt)).backbone.width == WIDTH  # from bn7, no record
    load_weights_strict(resnet38_seg.Net(width=WIDTH), state)
    assert [s for s, _ in logged_losses(out, "seg")] == [1, 2]
    assert not (out / "seg.resume.pt").exists()  # a finished run's resume files go


def test_loss_falls_on_ground_truth_masks(voc, tmp_path):
    train_seg.main(train_argv(voc, tmp_path, "gt", "--train_list", str(voc / "train.txt"), "--max_step", "30",
                              "--lr", "0.01", "--ckpt_interval", "1000"))
    losses = [v for _, v in logged_losses(tmp_path, "gt")]
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_missing_pseudo_labels_fail_before_training(voc, tmp_path):
    (tmp_path / "labels").mkdir()
    with pytest.raises(SystemExit, match=r"labels/2007_\d+\.png: label PNG not found \(16 of 16 missing\)"):
        train_seg.main(train_argv(voc, tmp_path, "nolabels", "--label_dir", str(tmp_path / "labels")))
    assert not (tmp_path / "nolabels.pth").exists()


def test_training_starts_from_another_stages_backbone(voc, tmp_path):
    seam = resnet38_seam.Net(width=WIDTH)
    save_state_dict(seam.state_dict(), tmp_path / "seam.pth")
    train_seg.main(train_argv(voc, tmp_path, "from_seam", "--weights", str(tmp_path / "seam.pth"), "--max_step", "1",
                              "--lr", "1e-30"))
    log = (tmp_path / "tb" / f"{str(tmp_path / 'from_seam').replace('/', '_')}.log").read_text()
    assert "backbone; left out the file's heads f8_3, f8_4, f9, fc8" in log
    state = torch.load(tmp_path / "from_seam.pth", weights_only=True)
    assert torch.equal(state["b7.conv_branch2b2.weight"], seam.backbone.b7.conv_branch2b2.weight)  # lr 1e-30: unchanged


# ---------------------------------------------------------------- inference


def test_multiscale_probs_is_softmax_of_mean_unflipped_logits():
    torch.manual_seed(0)
    model = nn.Conv2d(3, 5, 3, stride=4, padding=1).eval()
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (30, 44, 3), dtype=np.uint8))
    scales = (0.5, 1.0, 1.5)
    images = multiscale_flip_images(img, scales)
    probs = multiscale_probs(model_forward(model, torch.device("cpu"), "off", False), images, (30, 44))
    logits = []
    with torch.no_grad():
        for pair in images:
            plain = model(pair[:1])
            flipped = model(pair[1:]).flip(-1)  # forward on the flipped image, flip the output back
            for out in (plain, flipped):
                logits.append(F.interpolate(out, (30, 44), mode="bilinear", align_corners=True)[0])
    want = torch.softmax(torch.stack(logits).mean(0), dim=0)
    assert probs.shape == (5, 30, 44)
    torch.testing.assert_close(probs, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probs.sum(0), torch.ones(30, 44))


def infer_argv(voc, ckpt, out_dir, *extra):
    return ["--weights", str(ckpt), "--voc12_root", str(voc), "--infer_list", str(voc / "val.txt"),
            "--out_seg", str(out_dir), "--num_workers", "0", "--crf_workers", "0", "--device", "cpu", *extra]


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
    assert "0 of 4 images to process" in capsys.readouterr().out
    assert mtimes == {p: os.stat(out / p).st_mtime_ns for p in os.listdir(out)}
    infer_seg.main(infer_argv(voc, ckpt, out, "--overwrite", "--scales", "1.0"))
    assert "4 of 4 images to process" in capsys.readouterr().out


def test_crf_inference_on_worker_processes(voc, trained, tmp_path):
    _, ckpt = trained
    (tmp_path / "two.txt").write_text("\n".join((voc / "val.txt").read_text().split()[:2]) + "\n")
    out = tmp_path / "crf"
    infer_seg.main(infer_argv(voc, ckpt, out, "--infer_list", str(tmp_path / "two.txt"), "--scales", "1.0",
                              "--crf", "--crf_workers", "1"))
    for name in (tmp_path / "two.txt").read_text().split():
        label = load_label_png(out / f"{name}.png")
        assert label.shape == (64, 64) and label.max() <= 20


def test_one_training_step_trains_every_conv_and_no_bn_parameter(voc, tmp_path):
    torch.manual_seed(1)
    start = resnet38_seg.Net(width=WIDTH).state_dict()
    save_state_dict(start, tmp_path / "start.pth")
    train_seg.main(train_argv(voc, tmp_path, "one", "--weights", str(tmp_path / "start.pth"), "--max_step", "1",
                              "--lr", "0.01"))
    after = load_state_dict_file(tmp_path / "one.pth")
    bn_affine = [k for k in start if ".bn" in "." + k and k.endswith(("weight", "bias"))]
    stats = [k for k in start if k.endswith("running_mean")]
    convs = [k for k in start if k not in bn_affine and k.endswith(("weight", "bias")) and ".bn" not in "." + k]
    assert bn_affine and all(torch.equal(start[k], after[k]) for k in bn_affine)
    assert "conv1a.weight" in convs and all(not torch.equal(start[k], after[k]) for k in convs)
    for k in stats:  # one update of momentum 0.0003 from the initial 0
        moved = (after[k] - start[k]).abs().max().item()
        assert 0 < moved < 3e-4 * 100, k


def test_frozen_bn_and_unfreeze_contradict(voc, tmp_path):
    with pytest.raises(SystemExit, match="--frozen_bn and --unfreeze"):
        train_seg.main(train_argv(voc, tmp_path, "x", "--frozen_bn", "--unfreeze"))


def test_the_length_is_max_step_or_max_epoches_not_both(voc, tmp_path, capsys, monkeypatch):
    parser = train_seg.get_parser()
    args = parser.parse_args(["--voc12_root", "x", "--weights", "w"])
    assert (args.max_step, args.max_epoches) == (20000, None)  # the authors' 20,000 iterations
    with pytest.raises(SystemExit):
        parser.parse_args(["--voc12_root", "x", "--weights", "w", "--max_step", "3", "--max_epoches", "1"])
    assert "--max_epoches: not allowed with argument --max_step" in capsys.readouterr().err
    class Run(train_seg.TrainingRun):  # fails fast instead of training 20,000 steps
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            assert self.max_step == 4, self.max_step

    monkeypatch.setattr(train_seg, "TrainingRun", Run)
    argv = train_argv(voc, tmp_path, "epochs", "--batch_size", "8", "--max_epoches", "2")
    i = argv.index("--max_step")
    train_seg.main(argv[:i] + argv[i + 2:])
    steps = [s for s, _ in logged_losses(tmp_path, "epochs")]
    assert steps == [1, 2, 3, 4]  # 16 images at batch 8: 2 steps an epoch, 2 epochs


# ---------------------------------------------------------------- the authors' checkpoint


@pytest.fixture(scope="module")
def authors_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("authors") / AUTHORS_CKPT
    torch.save({"module." + k: v for k, v in authors_state_dict().items()}, path)  # saved from DataParallel
    return path


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory):
    """A VOC-style folder with two images whose sides are not multiples of 8."""
    root = tmp_path_factory.mktemp("odd")
    (root / "JPEGImages").mkdir()
    rng = np.random.default_rng(0)
    names = []
    for k, (h, w) in enumerate(((37, 53), (45, 30))):
        blocks = rng.integers(0, 256, (4, 4, 3)).astype(np.float64)  # colour patches of about 10 x 10
        img = blocks[np.arange(h) * 4 // h][:, np.arange(w) * 4 // w] + rng.normal(0, 8, (h, w, 3))
        names.append(f"odd_{k}")
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "JPEGImages" / f"{names[-1]}.jpg")
    (root / "list.txt").write_text("\n".join(names) + "\n")
    return root, names


# Two of their six scales (0.5 .. 1.75, pinned in tests/test_defaults.py), both resizing the odd
# sides to non-integers: the same arithmetic per scale at a quarter of the full-width cost.
AUTHORS_TEST_SCALES = (0.75, 1.25)


def authors_forward(backbone, sd, x):
    """Their DeepLab-v1 head in eval mode, written out with the functional API."""
    h, w = x.shape[2:]

    def bn(t, name):
        return F.batch_norm(t, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                            sd[f"{name}.bias"], False, 0.0, 1e-5)

    f = backbone(x)["conv6"]
    f = F.relu(bn(F.conv2d(f, sd["conv_fov.weight"], padding=12, dilation=12), "bn_fov"))
    f = F.relu(bn(F.conv2d(f, sd["conv_fov2.weight"]), "bn_fov2"))
    f = F.conv2d(f, sd["cls_conv.weight"], sd["cls_conv.bias"])
    return F.interpolate(f, (h, w), mode="bilinear", align_corners=True)


@pytest.fixture(scope="module")
def authors_softmax(odd_images):
    """Their test procedure up to the softmax, per image: normalise, cubic resize of the float
    image, the net on it and its flip, logits upsampled to the image (align_corners=True), flips
    undone, mean, softmax. Computed once for the CRF and no-CRF tests."""
    cv2 = pytest.importorskip("cv2")
    root, names = odd_images
    sd = authors_state_dict()
    backbone = resnet38d.Net(width=WIDTH).eval()
    backbone.load_state_dict({k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")})
    probs = {}
    for name in names:
        img = np.asarray(Image.open(root / "JPEGImages" / f"{name}.jpg").convert("RGB"))
        h, w = img.shape[:2]
        norm = ((img / 255.0 - MEAN) / STD).astype(np.float32)
        total = torch.zeros(1, 21, h, w)
        with torch.no_grad():
            for s in AUTHORS_TEST_SCALES:
                x = cv2.resize(norm, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC).transpose(2, 0, 1)
                x = torch.from_numpy(x)[None].contiguous()
                for out in (authors_forward(backbone, sd, x), authors_forward(backbone, sd, x.flip(-1)).flip(-1)):
                    total += F.interpolate(out, (h, w), mode="bilinear", align_corners=True)
        probs[name] = torch.softmax(total / (2 * len(AUTHORS_TEST_SCALES)), dim=1)[0].numpy()
    return probs


def authors_test_labels(img, prob, crf):
    """The end of their test procedure: dense CRF (1 iteration, bilateral sxy 32) on the uint8
    image when `crf`, argmax."""
    if crf:
        dcrf = pytest.importorskip("pydensecrf.densecrf")
        from pydensecrf.utils import unary_from_softmax

        h, w = img.shape[:2]
        d = dcrf.DenseCRF2D(w, h, 21)
        d.setUnaryEnergy(unary_from_softmax(prob))
        d.addPairwiseGaussian(sxy=3, compat=3)
        d.addPairwiseBilateral(sxy=32, srgb=13, rgbim=np.ascontiguousarray(img).copy(), compat=10)
        prob = np.array(d.inference(1)).reshape(21, h, w)
    return prob.argmax(0), prob


@pytest.mark.parametrize("crf", [False, True], ids=["no_crf", "crf"])
def test_authors_checkpoint_gives_the_labels_of_their_test_procedure(authors_ckpt, odd_images, authors_softmax,
                                                                      tmp_path, crf):
    root, names = odd_images
    out = tmp_path / "seg"
    infer_seg.main(["--weights", str(authors_ckpt), "--voc12_root", str(root), "--infer_list", str(root / "list.txt"),
                    "--out_seg", str(out), "--num_workers", "0", "--crf_workers", "0", "--device", "cpu",
                    "--scales", *map(str, AUTHORS_TEST_SCALES), *([] if crf else ["--no_crf"])])
    for name in names:
        img = np.asarray(Image.open(root / "JPEGImages" / f"{name}.jpg").convert("RGB"))
        want, prob = authors_test_labels(img, authors_softmax[name], crf)
        got = load_label_png(out / f"{name}.png")
        assert got.shape == img.shape[:2] and len(np.unique(want)) > 1
        top2 = np.sort(prob, axis=0)[-2:]
        differ = got != want
        # float32 summation order may only flip near-ties between the two best classes
        assert np.all(top2[1][differ] - top2[0][differ] < 1e-4), (name, differ.sum())
        assert differ.mean() <= 0.001


def test_authors_checkpoint_fine_tunes_through_train_seg(voc, authors_ckpt, tmp_path):
    train_seg.main(train_argv(voc, tmp_path, "ft", "--weights", str(authors_ckpt), "--max_step", "1",
                              "--lr", "1e-30", "--batch_size", "1", "--bn_groups", "1", "--crop_size", "32"))
    log = (tmp_path / "tb" / f"{str(tmp_path / 'ft').replace('/', '_')}.log").read_text()
    assert f"initialised from {authors_ckpt} (full)" in log
    after = load_state_dict_file(tmp_path / "ft.pth")
    sd = authors_state_dict()
    assert torch.equal(after["cls_conv.weight"], sd["cls_conv.weight"])  # lr 1e-30 (> 0 by --lr): unchanged
    assert torch.equal(after["b7.conv_branch2b2.weight"], sd["backbone.b7.conv_branch2b2.weight"])


def slim_authors_state_dict():
    """A width-1/16 state dict in the authors' key layout: the key checks below do not need the
    full width, and a slim file saves and loads in milliseconds."""
    net = resnet38_seg.Net(width=WIDTH)
    heads = ("conv_fov", "bn_fov", "conv_fov2", "bn_fov2", "cls_conv")
    return {(k if k.startswith(heads) else "backbone." + k): v for k, v in net.state_dict().items()}


def test_the_slim_authors_layout_loads_like_theirs(tmp_path):
    torch.save(slim_authors_state_dict(), tmp_path / "slim.pth")
    net = resnet38_seg.Net(width=WIDTH)
    load_weights_strict(net, load_state_dict_file(tmp_path / "slim.pth"))
    assert set(slim_authors_state_dict()) == {k for k, _, _ in authors_key_list()}


def test_bn_groups_act_as_dataparallel_over_two_gpus():
    torch.manual_seed(0)
    net = resnet38_seg.Net(width=WIDTH).disable_dropout().train()
    x = torch.randn(5, 3, 40, 48)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    got = BNGroups(net, 2)(x)
    after_groups = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(start)
    first = net(x[:3])  # DataParallel's scatter: 3 + 2 images
    after_first = {k: v.clone() for k, v in net.state_dict().items()}
    second = net(x[3:])
    torch.testing.assert_close(got, torch.cat([first, second]))
    for k in start:  # running statistics and counters: the first part's update only
        assert torch.equal(after_groups[k], after_first[k]), k
    assert not torch.equal(after_first["bn_fov.running_mean"], start["bn_fov.running_mean"])
    assert all(m.momentum == 3e-4 for m in net.modules() if isinstance(m, nn.BatchNorm2d))  # restored


def test_validation_changes_nothing_and_equals_the_offline_evaluation(voc, tmp_path):
    import json

    torch.manual_seed(0)
    start = resnet38_seg.Net(width=WIDTH).state_dict()
    start["cls_conv.bias"][0] = 1.0  # background mostly, some foreground: a score the ignore bands change
    save_state_dict(start, tmp_path / "start.pth")
    common = ["--weights", str(tmp_path / "start.pth"), "--max_step", "3"]
    train_seg.main(train_argv(voc, tmp_path, "plain", *common))  # BN on batch statistics, dropout on
    train_seg.main(train_argv(voc, tmp_path, "validated", *common, "--val_list", str(voc / "val.txt"),
                              "--val_interval", "2"))
    a, b = (load_state_dict_file(tmp_path / f"{s}.pth") for s in ("plain", "validated"))
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)  # running statistics included
    history = json.loads((tmp_path / "validated.val.json").read_text())
    assert [h["step"] for h in history] == [2, 3]
    infer_seg.main(["--weights", str(tmp_path / "validated.pth"), "--voc12_root", str(voc), "--infer_list",
                    str(voc / "val.txt"), "--out_seg", str(tmp_path / "seg"), "--no-crf", "--scales", "1.0",
                    "--num_workers", "0"])
    # the toy val masks differ between the folders (SegmentationClass has ignore bands): only the
    # published evaluation's SegmentationClass gives the validated score
    offline = {folder: evaluation.main(["--list", str(voc / "val.txt"), "--predict_dir", str(tmp_path / "seg"),
                                        "--gt_dir", str(voc / folder), "--logfile", "", "--num_workers", "1"])["miou"]
               for folder in ("SegmentationClass", "SegmentationClassAug")}
    assert offline["SegmentationClass"] == history[-1]["seg"]["miou"] > 0
    assert offline["SegmentationClassAug"] != history[-1]["seg"]["miou"]
