"""Layers, containers and losses (PyTorch names and defaults)."""
from . import init
from .container import Flatten, Residual, Sequential
from .linear import Linear
from .module import Module
from .parameter import Parameter

__all__ = ["Module", "Parameter", "init", "Linear", "Sequential", "Residual", "Flatten"]
