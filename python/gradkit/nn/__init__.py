"""Layers, containers and losses (PyTorch names and defaults)."""
from .module import Module
from .parameter import Parameter
from .conv import Conv2d
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d

__all__ = ["Module", "Parameter"]
__all__ += ["Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d"]
