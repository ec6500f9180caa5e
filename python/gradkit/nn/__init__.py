"""Layers, containers and losses (PyTorch names and defaults)."""
from .module import Module
from .parameter import Parameter
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm2d, LayerNorm

__all__ = ["Module", "Parameter"]
__all__ += ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "InstanceNorm2d"]
