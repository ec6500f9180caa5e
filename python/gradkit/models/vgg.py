"""VGG-11 and VGG-16 with batch norm, torchvision's layout and names (``features.N``, ``classifier.N``).

Reference: K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (arXiv:1409.1556), configurations A and D; batch norm after each
convolution as torchvision/models/vgg.py's ``vgg11_bn`` and ``vgg16_bn``.
"""
from __future__ import annotations

from .. import nn
from ..nn import functional as F
from ..nn import init

# Output channels of each 3x3 convolution; "M" is a 2x2 max pooling.
CONFIGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def make_layers(config, batch_norm: bool = True, in_channels: int = 3) -> nn.Sequential:
    """torchvision's ``features``: per entry Conv2d(3x3, padding 1) [+ BatchNorm2d] + ReLU, or MaxPool2d(2)."""
    layers = []
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2, stride=2))
        else:
            layers.append(nn.Conv2d(in_channels, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU())
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features`` (a Sequential of convolutions), ``avgpool`` (adaptive to 7x7) and ``classifier``
    (Linear(512*7*7, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout, Linear(4096, num_classes)).

    Args:
        features: the convolutional part (``make_layers``), ending in 512 channels.
        num_classes (1000): outputs of the last Linear.
        dropout (0.5): probability of the two Dropout layers.

    Initialisation (torchvision's): convolutions ``kaiming_normal_(mode="fan_out",
    nonlinearity="relu")`` with bias 0, batch norm weight 1 and bias 0, Linear weights N(0, 0.01^2)
    with bias 0.

    Shape:
        (N, 3, H, W) -> (N, num_classes); H, W >= 32 (five 2x2 poolings), 224 for ImageNet. The
        adaptive pooling makes any last feature map 7x7 (a 1x1 map from a 32x32 input is copied).
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                init.normal_(m.weight, 0.0, 0.01)
                init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(F.flatten(x, 1))


def vgg11_bn(num_classes: int = 1000) -> VGG:
    """VGG-11 with batch norm (configuration A; torchvision's ``vgg11_bn``): 132,868,840 parameters at
    1000 classes. Input (N, 3, H, W), 3x224x224 for ImageNet, at least 32x32."""
    return VGG(make_layers(CONFIGS["A"]), num_classes)


def vgg16_bn(num_classes: int = 1000) -> VGG:
    """VGG-16 with batch norm (configuration D; torchvision's ``vgg16_bn``): 138,365,992 parameters at
    1000 classes. Input (N, 3, H, W), 3x224x224 for ImageNet, at least 32x32."""
    return VGG(make_layers(CONFIGS["D"]), num_classes)
