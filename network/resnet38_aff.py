"""The published stage-3 network (`network.resnet38_aff`): AffinityNet on ResNet-38."""
from network.affinitynet import AffinityNet
from network.resnet38d import ResNet38d


class Net(AffinityNet):
    def __init__(self, width=1.0, radius=5, frozen=True):
        super().__init__(ResNet38d(width=width, frozen=frozen), radius=radius)
