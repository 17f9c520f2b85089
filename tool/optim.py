"""SGD with the published poly learning-rate schedule and parameter groups."""
import torch

# lr multipliers and whether weight decay applies, for the four published groups:
# pretrained weights, pretrained biases, new-layer weights, new-layer biases.
GROUP_LR_MULT = (1, 2, 10, 20)
GROUP_DECAY = (True, False, True, False)


class PolyOptimizer(torch.optim.SGD):
    """SGD whose group learning rates follow lr0 * (1 - step / horizon) ** 0.9.

    The horizon is max_step in the SEAM code; the authors' segmentation code uses max_step + 1.
    The published SEAM code passed its weight decay into SGD's momentum slot, so the effective
    momentum was 5e-4; that is the default here (`momentum` flag to change it).

    Kept instead of SGD + torch.optim.lr_scheduler.LambdaLR: the step lives in the optimiser's own
    state, so a resumable checkpoint holds one object and a resume cannot set the schedule and the
    momentum buffers from different steps; the lr of step k is set just before its update.
    """

    def __init__(self, param_groups, lr, weight_decay, max_step, momentum=5e-4, horizon=None, fused=False):
        groups = [
            {"params": list(params), "lr": lr * mult, "weight_decay": weight_decay if decay else 0.0}
            for params, mult, decay in zip(param_groups, GROUP_LR_MULT, GROUP_DECAY)
        ]
        groups = [g for g in groups if g["params"]]
        # fused: one kernel for every parameter's update (the loop's update up to float rounding)
        super().__init__(groups, lr=lr, momentum=momentum, **({"fused": True} if fused else {}))
        self.horizon = max_step if horizon is None else horizon
        self.global_step = 0
        self.initial_lr = [g["lr"] for g in self.param_groups]

    def step(self, closure=None):
        step = self.global_step
        mult = (1 - step / self.horizon) ** 0.9 if step < self.horizon else 0.0
        for group, lr0 in zip(self.param_groups, self.initial_lr):
            group["lr"] = lr0 * mult
        loss = super().step(closure)
        self.global_step += 1
        return loss

    def state_dict(self):
        state = super().state_dict()
        state["global_step"] = self.global_step
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        self.global_step = state_dict.pop("global_step", 0)
        super().load_state_dict(state_dict)
