"""DeepLab-v1 segmentation net on the ResNet-38 backbone (SPEC section 7, stage 5).

Head: fc6 3x3 conv dilation 12 + BN + relu, fc7 1x1 conv + BN + relu, dropout 0.5, fc8 1x1
classifier with bias. Backbone BN stays frozen as in every stage; the head's BN layers are new
(randomly initialised), so they train on batch statistics as in DeepLab: see `Net.train`.
"""
import torch.nn.functional as F
from torch import nn

from network import resnet38d


class Net(resnet38d.Net):
    """forward(x (N,3,H,W)) -> logits (N, num_classes, h, w) on the backbone's feature grid,
    h = ceil(H/8), w = ceil(W/8) (448 -> 56). Logits are not upsampled: the loss and inference
    resize them to the label / image size.
    """

    head_names = ("fc6", "fc6_bn", "fc7", "fc7_bn", "fc8")

    def __init__(self, num_classes=21, width=1.0, frozen=True):
        super().__init__(width=width, frozen=frozen)  # freezes the backbone's BN and early blocks; the head comes after
        self.num_classes = num_classes
        mid = resnet38d.scaled(512, width)
        self.fc6 = nn.Conv2d(self.channels["conv6"], mid, 3, padding=12, dilation=12, bias=False)
        self.fc6_bn = nn.BatchNorm2d(mid)
        self.fc7 = nn.Conv2d(mid, mid, 1, bias=False)
        self.fc7_bn = nn.BatchNorm2d(mid)
        self.dropout7 = nn.Dropout2d(0.5)  # channel dropout, as the backbone's b6/b7 and SEAM's dropout7
        self.fc8 = nn.Conv2d(mid, num_classes, 1, bias=True)
        nn.init.kaiming_normal_(self.fc6.weight, nonlinearity="relu")
        nn.init.kaiming_normal_(self.fc7.weight, nonlinearity="relu")
        nn.init.normal_(self.fc8.weight, std=0.01)  # DeepLab's classifier init: near-uniform start
        nn.init.zeros_(self.fc8.bias)

    def head_batchnorms(self):
        return (self.fc6_bn, self.fc7_bn)

    def train(self, mode=True):
        # The backbone puts every BatchNorm2d in eval mode (its statistics are ImageNet's). The
        # head BN has no pretrained statistics, so it normalises with batch statistics while
        # training (batch 10 x 56 x 56 positions per channel is plenty) and learns its affine;
        # inference uses the running estimates it accumulated.
        super().train(mode)
        for bn in self.head_batchnorms():
            bn.train(mode)
        return self

    def forward(self, x):
        x = super().forward(x)  # conv6
        x = F.relu(self.fc6_bn(self.fc6(x)))
        x = F.relu(self.fc7_bn(self.fc7(x)))
        return self.fc8(self.dropout7(x))

    def get_parameter_groups(self):
        """Backbone weights x1 (decay), head weights x10 (decay, BN scales included), head
        biases x20 (no decay, BN shifts included); see resnet38d.get_parameter_groups."""
        return resnet38d.get_parameter_groups(self, self.head_names)
