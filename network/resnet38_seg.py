"""The authors' stage-5 network (`seamv1-pseudovoc`): DeepLab-v1 on ResNet-38, nothing frozen."""
from network.deeplab import DeepLabV1
from network.resnet38d import ResNet38d


class Net(DeepLabV1):
    def __init__(self, num_classes=21, width=1.0, frozen=False, bn_momentum=3e-4, train_bn_affine=False):
        super().__init__(ResNet38d(width=width, frozen=frozen), num_classes=num_classes, bn_momentum=bn_momentum,
                         train_bn_affine=train_bn_affine)
