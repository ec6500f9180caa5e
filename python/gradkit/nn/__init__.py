"""Layers, containers and losses (PyTorch names and defaults)."""
from . import init
from .container import Flatten, Residual, Sequential
from .linear import Linear
from .module import Module
from .parameter import Parameter
from .activation import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .dropout import Dropout
from .loss import CrossEntropyLoss, MSELoss

__all__ = ["Module", "Parameter"]
__all__ += ["init", "Linear", "Sequential", "Residual", "Flatten"]
__all__ += ["Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU", "GELU", "Dropout", "CrossEntropyLoss", "MSELoss"]
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm2d, LayerNorm

__all__ += ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "InstanceNorm2d"]
from .conv import Conv2d
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d

__all__ += ["Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d"]
