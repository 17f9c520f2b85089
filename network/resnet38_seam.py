"""The published stage-1 network (`network.resnet38_SEAM`): SEAM on ResNet-38."""
from network.resnet38d import ResNet38d
from network.seam import SEAM


class Net(SEAM):
    def __init__(self, num_classes=21, width=1.0, use_pcm=True, frozen=True):
        super().__init__(ResNet38d(width=width, frozen=frozen), num_classes=num_classes, use_pcm=use_pcm)
