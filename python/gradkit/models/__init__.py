"""Ready-made models with torchvision's names: ResNets, VGGs with batch norm, an MLP.

Every model is written as a user would write it: a ``forward`` built from child modules and
``gk.nn.functional`` joins, its backward derived by gradkit. Layers are initialised as their
PyTorch counterparts, and ``state_dict`` keys and shapes match torchvision's, so a torchvision
state dict converted to NumPy (``{k: v.numpy() for k, v in model.state_dict().items()}``) loads
with ``load_state_dict``. A raw checkpoint saved before PyTorch 0.4.1 has no
``num_batches_tracked`` entries: load it with ``strict=False`` (those counters stay 0, as
PyTorch sets them).
"""
from .mlp import mlp
from .resnet import BasicBlock, ResNet, resnet18, resnet20, resnet34, resnet56
from .vgg import VGG, vgg11_bn, vgg16_bn

__all__ = ["ResNet", "BasicBlock", "VGG", "resnet18", "resnet34", "resnet20", "resnet56", "vgg11_bn", "vgg16_bn",
           "mlp"]
