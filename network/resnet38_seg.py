"""DeepLab-v1 segmentation net on the ResNet-38 backbone: the authors' retraining of stage 5
(experiment `seamv1-pseudovoc` of their semantic-segmentation-codebase, released at 64.754 val).

Head: conv_fov 3x3 dilation 12 -> bn_fov -> relu -> conv_fov2 1x1 -> bn_fov2 -> relu ->
element-wise dropout 0.5 -> cls_conv 1x1 (with bias); logits upsampled to the input size
(bilinear, align_corners=True).

BatchNorm as the authors' training actually ran: every BN, backbone and head, normalises with
batch statistics in training mode and updates its running statistics with momentum 0.0003; no
BN weight or bias is trained; conv1a and b2* train like the rest. `frozen=True` is the variant
of stages 1 and 3 instead (backbone BN on its ImageNet statistics, conv1a/b2* fixed).
"""
import torch.nn.functional as F
from torch import nn

from network import resnet38d

# The authors' checkpoint keeps the trunk under this prefix (their net holds it as `self.backbone`);
# the head names (conv_fov, bn_fov, conv_fov2, bn_fov2, cls_conv) are the same as ours.
PUBLISHED_BACKBONE_PREFIX = "backbone."


class Net(resnet38d.Net):
    """forward(x (N,3,H,W)) -> logits (N, num_classes, H, W), upsampled from the H/8 grid."""

    head_names = ("conv_fov", "bn_fov", "conv_fov2", "bn_fov2", "cls_conv")

    def __init__(self, num_classes=21, width=1.0, frozen=False, bn_momentum=3e-4, train_bn_affine=False):
        super().__init__(width=width, frozen=frozen)
        self.num_classes = num_classes
        mid = resnet38d.scaled(512, width)
        self.conv_fov = nn.Conv2d(self.channels["conv6"], mid, 3, padding=12, dilation=12, bias=False)
        self.bn_fov = nn.BatchNorm2d(mid)
        self.conv_fov2 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn_fov2 = nn.BatchNorm2d(mid)
        self.dropout = nn.Dropout(0.5)
        self.cls_conv = nn.Conv2d(mid, num_classes, 1, bias=True)  # bias: PyTorch's default init
        for conv in (self.conv_fov, self.conv_fov2, self.cls_conv):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        bns = [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in bns:
            m.momentum = bn_momentum
        # The authors' optimiser holds conv parameters only: BN affine stays as loaded (with
        # frozen=True the backbone's is fixed already).
        for m in (self.bn_fov, self.bn_fov2) if frozen else bns:
            m.weight.requires_grad_(train_bn_affine)
            m.bias.requires_grad_(train_bn_affine)

    def train(self, mode=True):
        # frozen=True puts every BN in eval mode (ImageNet statistics); the head's BN has none,
        # so it always uses batch statistics in training.
        super().train(mode)
        self.bn_fov.train(mode)
        self.bn_fov2.train(mode)
        return self

    def forward(self, x):
        H, W = x.shape[2:]
        x = super().forward(x)  # conv6: N, 4096, H/8, W/8
        x = F.relu(self.bn_fov(self.conv_fov(x)))
        x = F.relu(self.bn_fov2(self.conv_fov2(x)))
        x = self.cls_conv(self.dropout(x))
        return F.interpolate(x, (H, W), mode="bilinear", align_corners=True)

    def get_parameter_groups(self):
        """Backbone conv weights x1 (decay), head conv weights x10 (decay), cls_conv bias x20
        (no decay); see resnet38d.get_parameter_groups. BN parameters are not trained."""
        return resnet38d.get_parameter_groups(self, self.head_names)

    @staticmethod
    def adapt_state_dict(state_dict):
        """Our key layout from the authors' (`backbone.conv1a.weight` -> `conv1a.weight`, head
        keys unchanged); our own checkpoints pass through as they are."""
        if not any(k.startswith(PUBLISHED_BACKBONE_PREFIX) for k in state_dict):
            return state_dict
        n = len(PUBLISHED_BACKBONE_PREFIX)
        return {(k[n:] if k.startswith(PUBLISHED_BACKBONE_PREFIX) else k): v for k, v in state_dict.items()}
