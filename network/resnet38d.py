"""Wide ResNet-38 ("A1", Wu et al.) with output stride 8: the backbone of every SEAM stage.

State-dict names are those of the published code, so its checkpoints load strictly.
`width` scales every channel count (1.0 = the published network) for cheap CPU runs.
"""
import re

import torch
import torch.nn.functional as F
from torch import nn

from tool.mxnet_params import read_ndarray_file


def scaled(channels, width):
    return max(1, int(round(channels * width)))


class ResBlock(nn.Module):
    """Pre-activation basic block: two 3x3 convs; 1x1 projection shortcut when the shape changes."""

    def __init__(self, in_ch, mid_ch, out_ch, stride=1, first_dilation=None, dilation=1):
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        self.same_shape = in_ch == out_ch and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(in_ch)
        self.conv_branch2a = nn.Conv2d(
            in_ch, mid_ch, 3, stride, padding=first_dilation, dilation=first_dilation, bias=False
        )
        self.bn_branch2b1 = nn.BatchNorm2d(mid_ch)
        self.conv_branch2b1 = nn.Conv2d(mid_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x):
        """Return (output, relu(bn(x))): the latter is the feature the heads tap."""
        x_bn_relu = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(x_bn_relu)
        branch = self.conv_branch2b1(F.relu(self.bn_branch2b1(self.conv_branch2a(x_bn_relu))))
        return shortcut + branch, x_bn_relu


class ResBlockBottleneck(nn.Module):
    """Pre-activation bottleneck block (1x1 -> 3x3 dilated -> 1x1) with channel dropout."""

    def __init__(self, in_ch, out_ch, stride=1, dilation=1, dropout=0.0):
        super().__init__()
        self.bn_branch2a = nn.BatchNorm2d(in_ch)
        self.conv_branch2a = nn.Conv2d(in_ch, out_ch // 4, 1, stride, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(out_ch // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(
            out_ch // 4, out_ch // 2, 3, padding=dilation, dilation=dilation, bias=False
        )
        self.bn_branch2b2 = nn.BatchNorm2d(out_ch // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(out_ch // 2, out_ch, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x):
        x_bn_relu = F.relu(self.bn_branch2a(x))
        shortcut = self.conv_branch1(x_bn_relu)
        b = self.dropout_2b1(F.relu(self.bn_branch2b1(self.conv_branch2a(x_bn_relu))))
        b = self.dropout_2b2(F.relu(self.bn_branch2b2(self.conv_branch2b1(b))))
        return shortcut + self.conv_branch2b2(b), x_bn_relu


class Net(nn.Module):
    """ResNet-38 trunk. forward_as_dict(x (N,3,H,W)) -> conv4 (512ch), conv5 (1024ch), conv6 (4096ch), all H/8.

    BatchNorm is frozen (always eval, affine fixed) and conv1a/b2* are not trained, as published:
    batch statistics are never used, so batch size and GPU split do not change the maths.
    `frozen=False` trains them too, with batch-statistics BN: only for random initialisation,
    where there are no pretrained statistics to freeze (the synthetic-data demo).
    """

    head_names = ()  # top-level modules a stage adds on the trunk (none here)

    def __init__(self, width=1.0, frozen=True):
        super().__init__()
        self.frozen = frozen
        c = [scaled(ch, width) for ch in (64, 128, 256, 512, 1024, 2048, 4096)]
        self.width = width
        self.channels = {"conv4": c[3], "conv5": c[4], "conv6": c[6]}
        self.conv1a = nn.Conv2d(3, c[0], 3, padding=1, bias=False)
        self.b2 = ResBlock(c[0], c[1], c[1], stride=2)
        self.b2_1 = ResBlock(c[1], c[1], c[1])
        self.b2_2 = ResBlock(c[1], c[1], c[1])
        self.b3 = ResBlock(c[1], c[2], c[2], stride=2)
        self.b3_1 = ResBlock(c[2], c[2], c[2])
        self.b3_2 = ResBlock(c[2], c[2], c[2])
        self.b4 = ResBlock(c[2], c[3], c[3], stride=2)
        self.b4_1 = ResBlock(c[3], c[3], c[3])
        self.b4_2 = ResBlock(c[3], c[3], c[3])
        self.b4_3 = ResBlock(c[3], c[3], c[3])
        self.b4_4 = ResBlock(c[3], c[3], c[3])
        self.b4_5 = ResBlock(c[3], c[3], c[3])
        self.b5 = ResBlock(c[3], c[3], c[4], first_dilation=1, dilation=2)
        self.b5_1 = ResBlock(c[4], c[3], c[4], dilation=2)
        self.b5_2 = ResBlock(c[4], c[3], c[4], dilation=2)
        self.b6 = ResBlockBottleneck(c[4], c[5], dilation=4, dropout=0.3)
        self.b7 = ResBlockBottleneck(c[5], c[6], dilation=4, dropout=0.5)
        self.bn7 = nn.BatchNorm2d(c[6])
        self.not_training = [self.conv1a, self.b2, self.b2_1, self.b2_2] if frozen else []
        for p in self._frozen_parameters():
            p.requires_grad_(False)

    def _frozen_parameters(self):
        for m in self.not_training:
            yield from m.parameters()
        for m in self.modules():
            if self.frozen and isinstance(m, nn.BatchNorm2d):
                yield from m.parameters()

    def disable_dropout(self):
        """Zero every dropout rate (backbone and heads): short from-scratch runs of slim networks
        learn far faster without channel dropout; the published recipe keeps it."""
        for m in self.modules():
            if isinstance(m, (nn.Dropout, nn.Dropout2d)):
                m.p = 0.0
        return self

    @staticmethod
    def adapt_state_dict(state_dict):
        """A checkpoint's keys in this network's layout (a network whose published checkpoints
        name things differently overrides this)."""
        return state_dict

    def train(self, mode=True):
        super().train(mode)
        for m in self.modules():
            if self.frozen and isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward_as_dict(self, x):
        x = self.conv1a(x)
        for name in ("b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2", "b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5"):
            x, _ = getattr(self, name)(x)
        x, conv4 = self.b5(x)
        x, _ = self.b5_1(x)
        x, _ = self.b5_2(x)
        x, conv5 = self.b6(x)
        x, _ = self.b7(x)
        conv6 = F.relu(self.bn7(x))
        return {"conv4": conv4, "conv5": conv5, "conv6": conv6}

    def forward(self, x):
        return self.forward_as_dict(x)["conv6"]


# Top-level modules initialised from ImageNet; everything else in a stage's net is a new head.
_BACKBONE_NAMES = {
    "conv1a", "b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2", "b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5",
    "b5", "b5_1", "b5_2", "b6", "b7", "bn7",
}  # fmt: skip


def get_parameter_groups(model, head_names):
    """The published four groups: backbone weights / biases, head weights / biases.

    Returns lists of trainable parameters; tool.optim assigns lr x1/x2/x10/x20 and weight decay.
    """
    groups = ([], [], [], [])
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        top = name.split(".", 1)[0]
        is_head = top in head_names
        is_bias = name.endswith("bias")
        groups[2 * is_head + is_bias].append(p)
    return groups


_MX_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_var": "running_var"}


def _torch_key(mx_name):
    """Map an MXNet ResNet-38 A1 array name to the published PyTorch key (None: not in the trunk)."""
    name = mx_name.split(":", 1)[-1]
    if name == "conv1a_weight":
        return "conv1a.weight"
    m = re.fullmatch(r"bn7_(gamma|beta|moving_mean|moving_var)", name)
    if m:
        return f"bn7.{_MX_BN[m.group(1)]}"
    m = re.fullmatch(r"res(\d)(a|b\d+)_branch(\w+?)_weight", name)
    if m:
        return f"{_block_name(m.group(1), m.group(2))}.conv_branch{m.group(3)}.weight"
    m = re.fullmatch(r"bn(\d)(a|b\d+)_branch(\w+?)_(gamma|beta|moving_mean|moving_var)", name)
    if m:
        return f"{_block_name(m.group(1), m.group(2))}.bn_branch{m.group(3)}.{_MX_BN[m.group(4)]}"
    return None


def _block_name(stage, part):
    return f"b{stage}" if part == "a" else f"b{stage}_{part[1:]}"


def convert_mxnet_to_torch(path):
    """Backbone state dict (name -> float32 tensor) from the ImageNet `.params` file, NumPy only.

    `linear1000_*` (the ImageNet classifier) is dropped; any other unknown name is an error,
    so a wrong file does not convert silently.
    """
    state = {}
    for mx_name, array in read_ndarray_file(path).items():
        key = _torch_key(mx_name)
        if key is None:
            if "linear1000" in mx_name:
                continue
            raise ValueError(f"{path}: unexpected array {mx_name!r} for ResNet-38")
        state[key] = torch.from_numpy(array.astype("float32"))
    return state


def infer_width(state_dict):
    """The width multiplier a (possibly slim) checkpoint was built with, from bn7's channel count."""
    key = next((k for k in state_dict if k.endswith("bn7.weight")), None)
    if key is None:
        raise ValueError("not a ResNet-38 checkpoint: no bn7.weight")
    return state_dict[key].numel() / 4096


def _stage_heads():
    """The head module names of every stage's network."""
    from network import resnet38_aff, resnet38_seam, resnet38_seg

    return [set(m.Net.head_names) for m in (resnet38_aff, resnet38_seam, resnet38_seg)]


def load_pretrained(model, path, allow_pickle=False):
    """Initialise `model` from `path`: the ImageNet `.params`, a backbone-only `.pth`, the
    backbone of another stage's checkpoint (e.g. SEAM's for the segmentation net; its heads are
    named in the returned note and left out), or a full checkpoint of the same network (strict).

    Anything else (a missing backbone key, a wrong shape, head keys that only partly match) is a
    one-line error. Returns how the file was used, for the log.
    """
    from tool.checkpoint import load_state_dict_file, load_weights_strict, strip_module_prefix

    if str(path).endswith(".params"):
        state = convert_mxnet_to_torch(path)
    else:
        state = strip_module_prefix(load_state_dict_file(path, allow_pickle=allow_pickle))
    state = model.adapt_state_dict(state)
    own = model.state_dict()
    trunk = {k for k in own if k.split(".", 1)[0] in _BACKBONE_NAMES}

    def head_keys(keys):
        return {k for k in keys if k.split(".", 1)[0] not in _BACKBONE_NAMES and not k.endswith("num_batches_tracked")}

    file_heads = head_keys(state)
    file_modules = {k.split(".", 1)[0] for k in file_heads}
    # Another stage's checkpoint (its heads exactly those of another of our networks, or none):
    # the trunk must match exactly and the heads stay fresh. A file whose heads are neither that
    # nor exactly ours (a damaged or foreign checkpoint of this network) fails strict loading below.
    other_stage = file_modules != set(model.head_names) and (not file_modules or file_modules in _stage_heads())
    if file_heads != head_keys(own) and other_stage:
        heads = {k: v for k, v in own.items() if k not in trunk}
        trunk_state = {k: v for k, v in state.items() if k not in file_heads}
        load_weights_strict(model, {**heads, **trunk_state}, source=str(path))
        left_out = sorted(file_modules)
        return f"backbone; left out the file's heads {', '.join(left_out)}" if left_out else "backbone"
    load_weights_strict(model, state, source=str(path))
    return "full"


def main(argv=None):
    import argparse

    from tool.checkpoint import save_state_dict

    parser = argparse.ArgumentParser(description="Convert the ImageNet ResNet-38 .params file to a .pth")
    parser.add_argument("params", help="ilsvrc-cls_rna-a1_cls1000_ep-0001.params")
    parser.add_argument("out", help="output .pth (plain state dict)")
    args = parser.parse_args(argv)
    try:
        state = convert_mxnet_to_torch(args.params)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    save_state_dict(state, args.out)
    print(f"wrote {args.out} ({len(state)} tensors)")


if __name__ == "__main__":
    main()
