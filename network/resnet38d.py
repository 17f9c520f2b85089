"""Wide ResNet-38 ("A1", Wu et al.) with output stride 8: the backbone of every SEAM stage.

State-dict names are those of the published code, so its checkpoints load strictly.
`width` scales every channel count (1.0 = the published network) for cheap CPU runs.
"""
import torch.nn.functional as F
from torch import nn

# The residual blocks in forward order (their modules are named so in the published checkpoints).
BLOCK_NAMES = ("b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2", "b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5",
               "b5", "b5_1", "b5_2", "b6", "b7")


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
        taps = {}
        for name in BLOCK_NAMES:
            x, bn_relu_input = getattr(self, name)(x)
            if name in ("b5", "b6"):  # keep only the two the heads read: the others would hold memory
                taps[name] = bn_relu_input
        conv6 = F.relu(self.bn7(x))
        return {"conv4": taps["b5"], "conv5": taps["b6"], "conv6": conv6}

    def forward(self, x):
        return self.forward_as_dict(x)["conv6"]


# Top-level modules initialised from ImageNet; everything else in a stage's net is a new head.
BACKBONE_NAMES = {"conv1a", *BLOCK_NAMES, "bn7"}


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


if __name__ == "__main__":
    raise SystemExit("error: the ImageNet .params converter moved: python -m network.weights PARAMS OUT.pth")
