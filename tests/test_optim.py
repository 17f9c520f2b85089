import pytest
import torch

from tool.optim import PolyOptimizer


def make(max_step=10, momentum=5e-4):
    w0, b0, w1, b1 = (torch.nn.Parameter(torch.ones(2)) for _ in range(4))
    opt = PolyOptimizer([[w0], [b0], [w1], [b1]], lr=0.01, weight_decay=5e-4, max_step=max_step, momentum=momentum)
    return opt, (w0, b0, w1, b1)


def test_groups_follow_the_published_multipliers_and_decay():
    opt, _ = make()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.02, 0.1, 0.2])
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0, 5e-4, 0.0]


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_momentum_enters_the_update_and_defaults_to_the_published_5e4(momentum):
    # the published code passed its weight decay into SGD's momentum slot: 5e-4 unless asked otherwise
    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    kwargs = {} if momentum is None else {"momentum": momentum}
    opt = PolyOptimizer([[w], [], [], []], lr=0.1, weight_decay=0.0, max_step=10, **kwargs)
    for _ in range(2):
        w.grad = torch.ones_like(w)
        opt.step()
    m = 5e-4 if momentum is None else momentum
    # step 0 moves by lr0 * g; step 1 by lr1 * (m * g + g)
    want = -0.1 - 0.1 * (1 - 1 / 10) ** 0.9 * (1 + m)
    assert w.item() == pytest.approx(want, rel=1e-12, abs=0)


def test_poly_schedule():
    opt, params = make(max_step=10)
    lrs = []
    for _ in range(12):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[5] == pytest.approx(0.01 * (1 - 5 / 10) ** 0.9)
    assert lrs[10] == 0.0 and lrs[11] == 0.0


def test_step_count_survives_state_dict():
    opt, params = make(max_step=10)
    for _ in range(3):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    other, _ = make(max_step=10)
    other.load_state_dict(opt.state_dict())
    assert other.global_step == 3


def test_empty_groups_are_dropped():
    w = torch.nn.Parameter(torch.ones(1))
    opt = PolyOptimizer([[w], [], [], []], lr=0.1, weight_decay=0.0, max_step=5)
    assert len(opt.param_groups) == 1


def test_poly_horizon_of_the_segmentation_code():
    # The authors' segmentation schedule: lr0 * (1 - itr / (max_itr + 1)) ** 0.9, so the last step keeps some lr.
    w = torch.nn.Parameter(torch.ones(1))
    opt = PolyOptimizer([[w], [], [], []], lr=0.001, weight_decay=0.0, max_step=4, momentum=0.9, horizon=5)
    lrs = []
    for _ in range(4):
        w.grad = torch.ones_like(w)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.001 * (1 - t / 5) ** 0.9 for t in range(4)])
    assert lrs[-1] > 0
