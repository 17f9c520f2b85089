"""torchvision's ResNet-50 and ResNet-101 at output stride 8, as backbones of every stage.

layer3 and layer4 are dilated (2, 4) instead of strided, as DeepLab and IRN use them; the taps
are layer2 / layer3 / layer4 (512 / 1024 / 2048 channels, all H/8). State-dict names are
torchvision's, under `backbone.` in a stage's state dict, so torchvision's ImageNet weights load
strictly (its `fc` classifier is left out). `width` < 1 narrows the bottlenecks
(`width_per_group`), for cheap CPU runs; the taps keep their channel counts.
Frozen (the ImageNet recipe): every BN on its ImageNet statistics, conv1 and layer1 untrained
(the stem and first stage, as ResNet-38's conv1a and b2*).
"""
import os

from torch.hub import get_dir

from network.backbone import Backbone, register_backbone, scaled

_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class TorchvisionResNet(Backbone):
    """forward(x (N,3,H,W)) -> conv4 (layer2, 512ch), conv5 (layer3, 1024ch), conv6 (layer4, 2048ch), all H/8."""

    arch = None  # torchvision builder name
    imagenet_weights = "IMAGENET1K_V1"  # the weights the WSSS literature starts from
    classifier_prefix = "fc."  # in torchvision's files, not in the trunk

    def __init__(self, width=1.0, frozen=True):
        import torchvision  # here: every stage script imports this module, few build it (1 s of start-up)

        super().__init__(width=width, frozen=frozen)
        net = getattr(torchvision.models, self.arch)(
            weights=None, replace_stride_with_dilation=[False, True, True], width_per_group=scaled(64, width))
        for name in _TRUNK:
            self.add_module(name, getattr(net, name))
        self.channels = {"conv4": 512, "conv5": 1024, "conv6": 2048}
        self.freeze()

    def frozen_modules(self):
        return [self.conv1, self.layer1]

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # N, 64, H/4, W/4
        conv4 = self.layer2(self.layer1(x))  # N, 512, H/8, W/8
        conv5 = self.layer3(conv4)  # N, 1024, H/8, W/8 (dilation 2)
        conv6 = self.layer4(conv5)  # N, 2048, H/8, W/8 (dilation 4)
        return {"conv4": conv4, "conv5": conv5, "conv6": conv6}

    def pretrained_state(self, source):
        """`imagenet`: torchvision's weights, downloaded once into torch's cache (`fc` dropped)."""
        if source != "imagenet":
            return None
        if self.width != 1.0:
            raise ValueError(f"--weights imagenet: torchvision's {self.arch} weights are for --width 1.0, "
                             f"not {self.width}")
        import torchvision

        weights = torchvision.models.get_model_weights(self.arch)[self.imagenet_weights]
        cached = os.path.join(get_dir(), "checkpoints", os.path.basename(weights.url))
        try:
            state = weights.get_state_dict(progress=True, weights_only=True)
        except OSError as e:  # URLError, a refused connection, a full disk
            raise ValueError(f"--weights imagenet: cannot download {weights.url} ({e}); without the internet, "
                             f"place that file at {cached}") from None
        return {k: v for k, v in state.items() if not k.startswith(self.classifier_prefix)}


@register_backbone("resnet50")
class ResNet50(TorchvisionResNet):
    arch = "resnet50"


@register_backbone("resnet101")
class ResNet101(TorchvisionResNet):
    arch = "resnet101"
