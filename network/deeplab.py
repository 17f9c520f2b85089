"""DeepLab-v1 segmentation net on a backbone (ResNet-38 as published): the authors' retraining of stage 5
(experiment `seamv1-pseudovoc` of their semantic-segmentation-codebase, released at 64.754 val).

Head: conv_fov 3x3 dilation 12 -> bn_fov -> relu -> conv_fov2 1x1 -> bn_fov2 -> relu ->
element-wise dropout 0.5 -> cls_conv 1x1 (with bias); logits upsampled to the input size
(bilinear, align_corners=True).

BatchNorm as the authors' training actually ran: every BN, backbone and head, normalises with
batch statistics in training mode and updates its running statistics with momentum 0.0003; no
BN weight or bias is trained; conv1a and b2* train like the rest (a backbone built with
frozen=False). A frozen backbone is the variant of stages 1 and 3 instead (backbone BN on its
ImageNet statistics, conv1a/b2* fixed); the head's BN then still uses batch statistics.
The authors' checkpoint keeps ResNet-38 under `backbone.` (network.weights.in_model_layout maps it).
"""
import torch.nn.functional as F
from torch import nn

from network.backbone import StageNet, scaled


class DeepLabV1(StageNet):
    """forward(x (N,3,H,W)) -> logits (N, num_classes, H, W), upsampled from the H/8 grid."""

    network = "seg"
    head_names = ("conv_fov", "bn_fov", "conv_fov2", "bn_fov2", "cls_conv")
    record_fields = ("num_classes",)

    def __init__(self, backbone, num_classes=21, bn_momentum=3e-4, train_bn_affine=False):
        super().__init__(backbone)
        self.num_classes = num_classes
        mid = scaled(512, backbone.width)
        self.conv_fov = nn.Conv2d(backbone.channels["conv6"], mid, 3, padding=12, dilation=12, bias=False)
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
        # The authors' optimiser holds conv parameters only: BN affine stays as loaded (a frozen
        # backbone's is fixed already).
        for m in (self.bn_fov, self.bn_fov2) if backbone.frozen else bns:
            m.weight.requires_grad_(train_bn_affine)
            m.bias.requires_grad_(train_bn_affine)

    def forward(self, x):
        H, W = x.shape[2:]
        x = self.backbone(x)["conv6"]  # N, 4096 (ResNet-38), H/8, W/8
        x = F.relu(self.bn_fov(self.conv_fov(x)))
        x = F.relu(self.bn_fov2(self.conv_fov2(x)))
        x = self.cls_conv(self.dropout(x))
        return F.interpolate(x, (H, W), mode="bilinear", align_corners=True)

