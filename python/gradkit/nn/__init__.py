"""Layers, containers and losses (PyTorch names and defaults)."""
from . import functional, init
from .activation import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .container import Flatten, Residual, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .linear import Linear
from .loss import CrossEntropyLoss, MSELoss
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm2d, LayerNorm
from .parameter import Parameter
from .pooling import AdaptiveAvgPool2d, AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .sync_batchnorm import SyncBatchNorm

__all__ = [
    "Module", "Parameter", "init", "functional",
    "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "AdaptiveAvgPool2d", "Flatten",
    "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU", "GELU", "Dropout",
    "BatchNorm1d", "BatchNorm2d", "SyncBatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm2d",
    "Sequential", "Residual", "CrossEntropyLoss", "MSELoss",
]
