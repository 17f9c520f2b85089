"""The equivariant transformations (tool/transforms.py) and ER / ECR under them."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tool.losses import ecr_term, er_loss, seam_losses
from tool.transforms import Rescale, parse_transform, step_generator


def maps(n=2, c=3, h=16, w=16, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("spec, inverse", [("flip", "flip"), ("rotate:90", "rotate:-90"), ("rotate:180", "rotate:180")])
def test_flip_and_quarter_turns_are_undone_exactly(spec, inverse):
    x = maps()
    there = parse_transform(spec).maps(x, x.shape[2:])
    assert not torch.allclose(there, x)
    back = parse_transform(inverse).maps(there, x.shape[2:])
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)
    assert parse_transform(spec).valid(x.shape[2:], x.device) in (None,) or parse_transform(spec).valid(
        x.shape[2:], x.device).all()


def test_rotation_by_ninety_degrees_moves_the_corner_where_it_should():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1  # top left
    y = parse_transform("rotate:90").maps(x, (4, 4))
    assert y[0, 0].argmax().item() in (12, 3)  # to the bottom-left or top-right corner, nowhere else
    torch.testing.assert_close(y.sum(), torch.tensor(1.0))


@pytest.mark.parametrize("spec, inverse", [("rotate:13", "rotate:-13"), ("translate:0.125", "translate:-0.125"),
                                           ("rescale:0.5", "rescale:2")])
def test_free_angles_translations_and_rescales_are_undone_within_interpolation_error(spec, inverse):
    v, u = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = torch.stack([0.5 + 0.4 * torch.sin(u / 5 + k) * torch.cos(v / 7 - k) for k in range(3)])[None]
    a, undo = parse_transform(spec), parse_transform(inverse)
    size = (16, 16) if spec.startswith("rescale") else (32, 32)
    back = undo.maps(a.maps(smooth, size), (32, 32))
    kept = undo.maps(a.maps(torch.ones(1, 1, 32, 32), size), (32, 32)) > 1 - 1e-4  # never outside the frame
    inner = F.max_pool2d((~kept).float(), 3, 1, 1) == 0  # and a pixel away from where it was
    err = (back - smooth).abs()[inner.expand_as(back)]
    assert inner.sum() > 300 and err.max() < 0.02, (int(inner.sum()), float(err.max()))


def test_translation_leaves_out_exactly_the_pixels_that_came_from_outside():
    valid = parse_transform("translate:0.25").valid((8, 8), torch.device("cpu"))[0, 0]
    want = torch.zeros(8, 8, dtype=torch.bool)
    want[2:, 2:] = True  # 2 = 0.25 of 8: the top rows and left columns came from outside
    assert torch.equal(valid, want)
    left = parse_transform("translate:-0.25").valid((8, 8), torch.device("cpu"))[0, 0]
    assert torch.equal(left, want.flip(0).flip(1))


def test_a_rotation_leaves_out_the_corners_and_keeps_the_middle():
    valid = parse_transform("rotate:30").valid((32, 32), torch.device("cpu"))[0, 0]
    assert not valid[0, 0] and not valid[-1, -1] and not valid[0, -1] and not valid[-1, 0]
    assert valid[8:24, 8:24].all()


def test_a_composition_applies_its_steps_in_order_and_keeps_their_invalid_pixels():
    x = maps(h=16, w=16)
    both = parse_transform("rescale:0.5+flip")
    torch.testing.assert_close(both.image(x), F.interpolate(x, scale_factor=0.5, mode="bilinear",
                                                            align_corners=True).flip(-1))
    assert both.valid((8, 8), x.device) is None
    shifted = parse_transform("translate:0.25+flip").valid((8, 8), x.device)[0, 0]
    assert torch.equal(shifted, parse_transform("translate:0.25").valid((8, 8), x.device)[0, 0].flip(-1))


def test_the_default_rescale_is_the_published_second_branch():
    img = maps(c=3, h=40, w=40)
    a = parse_transform("rescale:0.3")
    assert isinstance(a, Rescale)
    assert torch.equal(a.image(img), F.interpolate(img, scale_factor=0.3, mode="bilinear", align_corners=True))
    cam1, cam_rv1, cam2, cam_rv2 = maps(c=4, h=40, w=40), maps(c=4, h=40, w=40, seed=1), maps(c=4, h=12, w=12), \
        maps(c=4, h=12, w=12, seed=2)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    published = seam_losses(cam1, cam_rv1, cam2, cam_rv2, labels)
    through = seam_losses(cam1, cam_rv1, cam2, cam_rv2, labels, transform=a.draw(step_generator(0, 0)))
    assert all(torch.equal(published[k], through[k]) for k in published)


def test_ranges_draw_one_value_per_step_from_seed_and_step_alone():
    a = parse_transform("rotate:-15..15")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = [a.draw(step_generator(0, s)).value for s in range(5)]
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is untouched
    assert first == [a.draw(step_generator(0, s)).value for s in range(5)]  # any process draws the same
    assert len(set(first)) == 5 and all(-15 <= v <= 15 for v in first)
    assert first != [a.draw(step_generator(1, s)).value for s in range(5)]


@pytest.mark.parametrize("text, says", [("bogus", "not one of"), ("flip:1", "takes no value"),
                                        ("rotate", "needs a value"), ("rotate:x", "not a number"),
                                        ("rotate:5..-5", "not a number or a range"), ("rescale:0", "> 0")])
def test_a_bad_transform_is_one_line_naming_it(text, says):
    with pytest.raises(ValueError, match=says) as e:
        parse_transform(text)
    assert text in str(e.value) and "\n" not in str(e.value)


class PoolThenMix(nn.Module):
    """Exactly equivariant under horizontal flips: pixel-wise 1x1 convolutions after a symmetric pooling."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.mix = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.mix(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))


@torch.no_grad()
def er_of(net, spec, img):
    a = parse_transform(spec).draw(step_generator(0, 0))
    cam1, cam2 = net(img), net(a.image(img))
    return er_loss(a.maps(cam1, cam2.shape[2:]), cam2, a.valid(cam2.shape[2:], img.device))


def test_er_is_zero_for_an_equivariant_network_and_not_for_a_transformation_it_breaks():
    pooled, img = PoolThenMix(), maps(n=2, c=3, h=16, w=16, seed=5)
    pointwise = PoolThenMix().mix  # 1x1 convolutions alone: equivariant under every warp
    assert er_of(pooled, "flip", img) < 1e-6
    assert er_of(pooled, "rotate:90", img) < 1e-5
    assert er_of(pointwise, "translate:0.25", img) < 1e-6  # the pixels that came from outside left out
    assert er_of(pointwise, "rotate:-10..10", img) < 1e-5
    assert er_of(pooled, "rotate:30", img) > 1e-3  # a 3x3 window is not round
    assert er_of(pooled, "translate:0.25", img) > 1e-3  # zeros came into its windows at the new border


def test_er_and_ecr_leave_out_invalid_pixels():
    a, b = maps(c=3, h=8, w=8), maps(c=3, h=8, w=8, seed=1)
    valid = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    valid[..., :4] = True
    b_far = b.clone()
    b_far[..., 4:] = 100.0  # only where the mask says invalid
    assert torch.equal(er_loss(a, b, valid), er_loss(a, b_far, valid))
    torch.testing.assert_close(er_loss(a, b, valid), er_loss(a[..., :4], b[..., :4]))
    assert torch.equal(ecr_term(a, b, 0.2, valid), ecr_term(a, b_far, 0.2, valid))
    torch.testing.assert_close(ecr_term(a, b, 0.2, valid), ecr_term(a[..., :4], b[..., :4], 0.2))


@torch.no_grad()
def test_the_logged_er_differs_between_two_transformations_of_one_batch():
    net, img = PoolThenMix(), maps(n=2, c=3, h=16, w=16, seed=7)
    labels = torch.ones(2, 3)
    ers = {}
    for spec in ("rescale:0.3", "flip", "rotate:30", "translate:0.1"):
        a = parse_transform(spec).draw(step_generator(0, 0))
        cam1, cam2 = net(img), net(a.image(img))
        ers[spec] = seam_losses(cam1, cam1, cam2, cam2, labels, use_ecr=False, transform=a)["er"].item()
    assert len({round(v, 6) for v in ers.values()}) == len(ers), ers


def test_one_branch_is_the_classification_loss_alone():
    cam, labels = maps(c=4), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    terms = seam_losses(cam, cam, None, None, labels, use_min_pool=False)
    assert set(terms) == {"cls", "loss"}
    assert torch.equal(terms["loss"], F.multilabel_soft_margin_loss(cam[:, 1:].mean(dim=(2, 3)), labels))
