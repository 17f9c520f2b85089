"""SEAM losses: hand-made values, goldens computed by the published train_SEAM.py, and agreement
with a line-by-line transcription of the published loop."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from network import resnet38_seam
from tests.reference_fill import DATA
from tool.losses import classification_loss, ecr_term, er_loss, max_norm, max_onehot, min_pool_loss, seam_losses

INPUTS = ("cam1", "cam_rv1", "cam2", "cam_rv2")


def published_losses(cam1, cam_rv1, cam2, cam_rv2, label20):
    """The published training step's arithmetic, in-place operations included."""

    def pub_max_norm(p, e=1e-5):
        N, C, H, W = p.size()
        p = F.relu(p)
        max_v = torch.max(p.view(N, C, -1), dim=-1)[0].view(N, C, 1, 1)
        min_v = torch.min(p.view(N, C, -1), dim=-1)[0].view(N, C, 1, 1)
        return F.relu(p - min_v - e) / (max_v - min_v + e)

    def pub_max_onehot(x):
        x_max = torch.max(x[:, 1:, :, :], dim=1, keepdim=True)[0]
        x[:, 1:, :, :][x[:, 1:, :, :] != x_max] = 0
        return x

    def pub_min_pool(x):
        n, c, h, w = x.size()
        k = h * w // 4
        x = torch.max(x, dim=1)[0]
        y = torch.topk(x.view(n, -1), k=k, dim=-1, largest=False)[0]
        return torch.sum(F.relu(y)) / (k * n)

    N = cam1.shape[0]
    label = torch.cat((torch.ones((N, 1)), label20), dim=1).unsqueeze(2).unsqueeze(3)
    hs, ws = cam2.shape[2:]
    label1 = F.adaptive_avg_pool2d(cam1, (1, 1))
    rvmin1 = pub_min_pool((cam_rv1 * label)[:, 1:])
    cam1 = F.interpolate(pub_max_norm(cam1), (hs, ws), mode="bilinear", align_corners=True) * label
    cam_rv1 = F.interpolate(pub_max_norm(cam_rv1), (hs, ws), mode="bilinear", align_corners=True) * label
    label2 = F.adaptive_avg_pool2d(cam2, (1, 1))
    rvmin2 = pub_min_pool((cam_rv2 * label)[:, 1:])
    cam2 = pub_max_norm(cam2) * label
    cam_rv2 = pub_max_norm(cam_rv2) * label
    cls1 = F.multilabel_soft_margin_loss(label1[:, 1:, :, :], label[:, 1:, :, :])
    cls2 = F.multilabel_soft_margin_loss(label2[:, 1:, :, :], label[:, 1:, :, :])
    er = torch.mean(torch.abs(cam1[:, 1:, :, :] - cam2[:, 1:, :, :]))
    cam1[:, 0, :, :] = 1 - torch.max(cam1[:, 1:, :, :], dim=1)[0]
    cam2[:, 0, :, :] = 1 - torch.max(cam2[:, 1:, :, :], dim=1)[0]
    t1 = torch.abs(pub_max_onehot(cam2.detach()) - cam_rv1)
    t2 = torch.abs(pub_max_onehot(cam1.detach()) - cam_rv2)
    k = int(21 * hs * ws * 0.2)
    ecr1 = torch.mean(torch.topk(t1.view(N, -1), k=k, dim=-1)[0])
    ecr = ecr1 + torch.mean(torch.topk(t2.view(N, -1), k=k, dim=-1)[0])
    return {"cls": (cls1 + cls2) / 2, "min_pool": (rvmin1 + rvmin2) / 2, "er": er, "ecr": ecr}


@pytest.fixture(scope="module")
def golden_losses():
    """The published train_SEAM.py's loss code run on fixed network outputs (tests/data)."""
    return dict(np.load(os.path.join(DATA, "golden_losses.npz"), allow_pickle=False))


def assert_close(name, got, want, rtol=1e-6):
    """float32: within rtol of the largest magnitude of `want` (a few ulps)."""
    err = np.abs(np.asarray(got, np.float64) - want).max()
    assert err <= rtol * max(np.abs(want).max(), 1e-30), f"{name}: max abs error {err:.3g}"


def test_loss_terms_golden(golden_losses):
    g = golden_losses
    cam1, cam_rv1, cam2, cam_rv2 = (torch.from_numpy(g[k]) for k in INPUTS)
    labels = torch.from_numpy(g["label"])
    # the per-branch terms, from the functions seam_losses combines (as train_seam.py calls it)
    mask = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1)[:, :, None, None]

    def to_small(x):
        return F.interpolate(max_norm(x), cam2.shape[2:], mode="bilinear", align_corners=True) * mask

    per_branch = {
        "loss_cls1": classification_loss(cam1, labels), "loss_cls2": classification_loss(cam2, labels),
        "loss_rvmin1": min_pool_loss(cam_rv1, labels), "loss_rvmin2": min_pool_loss(cam_rv2, labels),
        "loss_ecr1": ecr_term(max_norm(cam2) * mask, to_small(cam_rv1)),
        "loss_ecr2": ecr_term(to_small(cam1), max_norm(cam_rv2) * mask),
    }
    for name, value in per_branch.items():
        assert_close(name, value.item(), g[name])
    terms = seam_losses(cam1, cam_rv1, cam2, cam_rv2, labels)
    assert set(terms) == {"cls", "min_pool", "er", "ecr", "loss"}
    assert_close("cls", terms["cls"].item(), (g["loss_cls1"] + g["loss_cls2"]) / 2)
    assert_close("min_pool", terms["min_pool"].item(), (g["loss_rvmin1"] + g["loss_rvmin2"]) / 2)
    assert_close("er", terms["er"].item(), g["loss_er"])
    assert_close("ecr", terms["ecr"].item(), g["loss_ecr1"] + g["loss_ecr2"])
    assert_close("loss", terms["loss"].item(), g["loss"])


def test_loss_gradients_golden(golden_losses):
    g = golden_losses
    inputs = [torch.from_numpy(g[k]).requires_grad_() for k in INPUTS]
    seam_losses(*inputs, torch.from_numpy(g["label"]))["loss"].backward()
    for name, x in zip(INPUTS, inputs):
        assert_close(f"grad_{name}", x.grad.numpy(), g[f"grad_{name}"])


def random_case(seed, size=(40, 40), small=(12, 12)):
    g = torch.Generator().manual_seed(seed)
    cam1 = torch.randn(2, 21, *size, generator=g)
    cam_rv1 = torch.rand(2, 21, *size, generator=g)
    cam2 = torch.randn(2, 21, *small, generator=g)
    cam_rv2 = torch.rand(2, 21, *small, generator=g)
    labels = (torch.rand(2, 20, generator=g) < 0.2).float()
    labels[:, 3] = 1
    return cam1, cam_rv1, cam2, cam_rv2, labels


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_published_arithmetic(seed):
    case = random_case(seed)
    ours = seam_losses(*case)
    theirs = published_losses(*(t.clone() for t in case))
    for name, value in theirs.items():
        assert ours[name].item() == pytest.approx(value.item(), rel=1e-5), name
    assert ours["loss"].item() == pytest.approx(sum(v.item() for v in theirs.values()), rel=1e-5)


def test_topk_count_at_134():
    target = torch.zeros(1, 21, 134, 134)
    target[:, 0] = 1.0  # with_background makes channel 0 = 1 - 0 = 1 anyway
    rv = target.clone()
    rv.view(-1)[: 134 * 134] = 1.0  # channel 0 matches the target's background
    # k = int(21 * 134 * 134 * 0.2) = 75415; the two checks below pin it (k + 1 gives < 1, k - 1 gives 1 twice)
    rv.view(-1)[134 * 134 : 134 * 134 + 75415] = 1.0  # exactly k wrong values: the top-k mean is 1
    assert ecr_term(target, rv).item() == pytest.approx(1.0)
    rv.view(-1)[134 * 134 + 75414] = 0.0  # one fewer wrong value: the mean drops by 1/75415
    assert ecr_term(target, rv).item() == pytest.approx(1 - 1 / 75415, rel=1e-6)


def test_er_of_identical_cams_is_zero_and_max_norm_range():
    cam = max_norm(torch.randn(2, 21, 9, 9))
    assert er_loss(cam, cam).item() == 0.0
    assert cam.min() >= 0 and cam.max() <= 1 and cam.amax(dim=(2, 3)).gt(0.99).all()


def test_max_onehot_keeps_max_value_and_background():
    cam = torch.tensor([0.5, 0.2, 0.7, 0.7]).view(1, 4, 1, 1)
    assert max_onehot(cam).view(-1).tolist() == pytest.approx([0.5, 0.0, 0.7, 0.7])


def test_min_pool_hand_made():
    cam_rv = torch.zeros(1, 3, 2, 2)
    cam_rv[0, 1] = torch.tensor([[0.1, 0.9], [0.5, -1.0]])
    cam_rv[0, 2] = torch.tensor([[5.0, 5.0], [5.0, 5.0]])  # class 2 absent from the labels: masked out
    labels = torch.tensor([[1.0, 0.0]])
    # fg max per pixel: 0.1, 0.9, 0.5, 0.0 (class 2 masked, -1 vs 0); k = 1 smallest -> 0.0
    assert min_pool_loss(cam_rv, labels).item() == pytest.approx(0.0)
    cam_rv[0, 1, 1, 1] = 0.3
    assert min_pool_loss(cam_rv, labels).item() == pytest.approx(0.1)


def test_gradients_reach_the_right_layers():
    torch.manual_seed(0)
    net = resnet38_seam.Net(width=1 / 16).train()
    x = torch.randn(2, 3, 64, 64)
    labels = torch.tensor([[1.0] + [0.0] * 19, [0.0, 1.0] + [0.0] * 18])

    def grads(*names):
        net.zero_grad()
        cam1, rv1 = net(x)
        cam2, rv2 = net(F.interpolate(x, scale_factor=0.3, mode="bilinear", align_corners=True))
        terms = seam_losses(cam1, rv1, cam2, rv2, labels)
        sum(terms[n] for n in names).backward()
        return {m: getattr(net, m).weight.grad for m in ("fc8", "f8_3", "f8_4", "f9")}

    def nonzero(g):
        return g is not None and g.abs().sum().item() > 0

    for names in (("cls",), ("er",)):
        g = grads(*names)
        assert nonzero(g["fc8"]) and not any(nonzero(g[m]) for m in ("f8_3", "f8_4", "f9")), names
    for names in (("ecr",), ("min_pool",)):
        g = grads(*names)
        assert not nonzero(g["fc8"]) and all(nonzero(g[m]) for m in ("f8_3", "f8_4", "f9")), names


def test_ablation_switches_terms_off():
    terms = seam_losses(*random_case(3), use_er=False, use_ecr=False, use_min_pool=False)
    assert set(terms) == {"cls", "loss"} and terms["loss"] == terms["cls"]


@pytest.mark.parametrize("seed", [0, 1])
def test_weighted_loss_is_the_published_sum_at_default_weights(seed):
    case = [t.requires_grad_() if t.dtype.is_floating_point and i < 4 else t for i, t in enumerate(random_case(seed))]
    terms = seam_losses(*case)
    # the published step: loss = loss_cls (classification + min-pool) + loss_er + loss_ecr
    published = terms["cls"] + terms["min_pool"] + terms["er"] + terms["ecr"]
    assert torch.equal(terms["loss"], published)
    ones = seam_losses(*case, weights={"cls": 1.0, "er": 1.0, "ecr": 1.0, "min_pool": 1.0})
    assert torch.equal(ones["loss"], published)
    grads = [torch.autograd.grad(loss, case[:4]) for loss in (published, ones["loss"])]
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    weighted = seam_losses(*case, weights={"cls": 0.0, "er": 2.0, "ecr": 0.5})
    assert all(torch.equal(weighted[k], terms[k]) for k in ("cls", "min_pool", "er", "ecr"))  # terms stay raw
    want = terms["min_pool"] + 2 * terms["er"] + 0.5 * terms["ecr"]
    assert weighted["loss"].item() == pytest.approx(want.item(), rel=1e-6)
