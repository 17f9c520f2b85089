"""Wide ResNet-38 ("A1", Wu et al.) with output stride 8: the backbone of every SEAM stage.

State-dict names are those of the published code, so its checkpoints load strictly (a stage
network keeps them at the top level: `flat_state_dict`).
`width` scales every channel count (1.0 = the published network) for cheap CPU runs.
"""
import re

import torch
import torch.nn.functional as F
from torch import nn

from network.backbone import Backbone, register_backbone, scaled
from network.mxnet_params import read_ndarray_file

# The residual blocks in forward order (their modules are named so in the published checkpoints).
BLOCK_NAMES = ("b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2", "b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5",
               "b5", "b5_1", "b5_2", "b6", "b7")


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


@register_backbone("resnet38d")
class ResNet38d(Backbone):
    """ResNet-38 trunk. forward(x (N,3,H,W)) -> conv4 (512ch), conv5 (1024ch), conv6 (4096ch), all H/8.

    BatchNorm is frozen (always eval, affine fixed) and conv1a/b2* are not trained, as published:
    batch statistics are never used, so batch size and GPU split do not change the maths.
    `frozen=False` trains them too, with batch-statistics BN: only for random initialisation,
    where there are no pretrained statistics to freeze (the synthetic-data demo).
    Weights: the ImageNet MXNet `.params` (converted on the fly) or a `.pth` in these names.
    """

    flat_state_dict = True  # the published checkpoints hold the trunk at the top level

    def __init__(self, width=1.0, frozen=True):
        super().__init__(width=width, frozen=frozen)
        c = [scaled(ch, width) for ch in (64, 128, 256, 512, 1024, 2048, 4096)]
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
        self.freeze()

    def frozen_modules(self):
        return [self.conv1a, self.b2, self.b2_1, self.b2_2]

    def forward(self, x):
        x = self.conv1a(x)
        taps = {}
        for name in BLOCK_NAMES:
            x, bn_relu_input = getattr(self, name)(x)
            if name in ("b5", "b6"):  # keep only the two the heads read: the others would hold memory
                taps[name] = bn_relu_input
        conv6 = F.relu(self.bn7(x))
        return {"conv4": taps["b5"], "conv5": taps["b6"], "conv6": conv6}

    def pretrained_state(self, source):
        if source == "imagenet":
            raise ValueError("--weights imagenet: ResNet-38's ImageNet weights are the MXNet file "
                             "ilsvrc-cls_rna-a1_cls1000_ep-0001.params: give its path")
        return convert_mxnet_to_torch(source) if str(source).endswith(".params") else None


Net = ResNet38d  # the published module's name


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
