"""ResNets: torchvision's ResNet-18/34 (ImageNet) and He et al.'s CIFAR ResNet-20/56.

References: K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016 (arXiv:1512.03385): section 3 for the ImageNet nets, section 4.2 for CIFAR-10;
torchvision/models/resnet.py for the layer names (``conv1``, ``bn1``, ``layer1.0.downsample.0``, ...).
"""
from __future__ import annotations

from .. import nn
from ..nn import functional as F
from ..nn import fusion, init


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + s(x))``.

    ``s`` is the identity, or ``downsample`` (a 1x1 convolution + batch norm, torchvision's and
    the paper's projection shortcut) where the stride or the channel count changes.

    Args:
        inplanes: input channels. planes: output channels. stride: of ``conv1`` and the shortcut (default 1).

    Shape:
        (N, inplanes, H, W) -> (N, planes, ceil(H / stride), ceil(W / stride)).
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))
        self.stride = stride

    def forward(self, x):
        # relu(bn1(conv1(x))), then relu(bn2(conv2(out)) + identity), each batch norm fused with its
        # ReLU (and the join): the plain calls (as API.md's Block) when tracing or with fusion off.
        identity = x if self.downsample is None else self.downsample(x)
        out = fusion.batch_norm_relu(self.bn1, self.relu, self.conv1(x))
        return fusion.batch_norm_relu(self.bn2, None, self.conv2(out), residual=identity)


class ResNet(nn.Module):
    """A ResNet of BasicBlocks: a stem, stages ``layer1``, ``layer2``, ... (stride 2 from the second
    on), global average pooling (``avgpool``) and a linear classifier (``fc``).

    Args:
        layers: blocks per stage, e.g. ``[2, 2, 2, 2]`` (ResNet-18) or ``[3, 3, 3]`` (ResNet-20).
        num_classes (1000): outputs of ``fc``.
        widths ((64, 128, 256, 512)): channels of each stage (one per entry of ``layers``).
        in_channels (3): input channels.
        stem ("imagenet"): ``"imagenet"`` is torchvision's 7x7/2 ``conv1`` + ``bn1`` + ``relu`` +
            3x3/2 ``maxpool``; ``"cifar"`` is the paper's 3x3/1 ``conv1`` + ``bn1`` + ``relu`` (no pooling).

    Initialisation (torchvision's): convolutions ``kaiming_normal_(mode="fan_out",
    nonlinearity="relu")``, batch norm weight 1 and bias 0, ``fc`` PyTorch's Linear default.

    Shape:
        (N, in_channels, H, W) -> (N, num_classes); the stem reduces H and W 4x ("imagenet") or 1x
        ("cifar") and each later stage 2x more; any size down to 1x1 there works (adaptive pooling).
    """

    def __init__(self, layers, num_classes: int = 1000, widths=(64, 128, 256, 512), in_channels: int = 3,
                 stem: str = "imagenet"):
        super().__init__()
        layers, widths = list(layers), list(widths)
        if not layers or len(layers) != len(widths) or any(int(n) < 1 for n in layers):
            raise ValueError(f"ResNet: layers: expected one positive block count per entry of widths {widths}, "
                             f"got {layers}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"ResNet: stem: expected 'imagenet' or 'cifar', got {stem!r}")
        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else None
        self.num_stages = len(layers)
        for i, (planes, blocks) in enumerate(zip(widths, layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(planes, int(blocks), stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1] * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [BasicBlock(self.inplanes, planes, stride)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = fusion.batch_norm_relu(self.bn1, self.relu, self.conv1(x))  # relu(bn1(conv1(x))) in one kernel
        if self.maxpool is not None:
            x = self.maxpool(x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(F.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18 (He et al. 2016, table 1; torchvision's ``resnet18``): 11,689,512 parameters at 1000
    classes. Input (N, 3, H, W), 3x224x224 for ImageNet; H, W >= 1 (32x32 gives a 1x1 last stage)."""
    return ResNet([2, 2, 2, 2], num_classes)


def resnet34(num_classes: int = 1000) -> ResNet:
    """ResNet-34 (He et al. 2016, table 1; torchvision's ``resnet34``): 21,797,672 parameters at 1000
    classes. Input (N, 3, H, W), 3x224x224 for ImageNet."""
    return ResNet([3, 4, 6, 3], num_classes)


def resnet20(num_classes: int = 10) -> ResNet:
    """ResNet-20 for CIFAR-10 (He et al. 2016, section 4.2, n = 3): a 3x3 convolution to 16 channels,
    3 stages of 3 BasicBlocks at 16/32/64 channels, projection shortcuts (1x1 conv + batch norm)
    where the shape changes, global average pooling, ``fc``. Input (N, 3, 32, 32)."""
    return ResNet([3, 3, 3], num_classes, widths=(16, 32, 64), stem="cifar")


def resnet56(num_classes: int = 10) -> ResNet:
    """ResNet-56 for CIFAR-10 (He et al. 2016, section 4.2, n = 9): as ``resnet20`` with 9 blocks
    per stage. Input (N, 3, 32, 32)."""
    return ResNet([9, 9, 9], num_classes, widths=(16, 32, 64), stem="cifar")
