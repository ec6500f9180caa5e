"""Layers, containers and losses (PyTorch names and defaults)."""
from .module import Module
from .parameter import Parameter

__all__ = ["Module", "Parameter"]
