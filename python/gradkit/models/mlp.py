"""A multilayer perceptron as a ``Sequential``."""
from __future__ import annotations

import numbers

from .. import nn
from .._checks import real


def mlp(in_features: int, hidden, num_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """``Flatten``, then per entry h of ``hidden`` ``Linear(prev, h)`` + ``ReLU`` (+ ``Dropout(dropout)``
    when ``dropout > 0``), then ``Linear(prev, num_classes)``. Layers keep PyTorch's default init.

    Args:
        in_features: size of a flattened input. hidden: widths of the hidden layers (may be empty).
        num_classes: outputs. dropout (0.0): probability after each hidden ReLU.

    Shape:
        (N, *) with prod(*) = in_features -> (N, num_classes).
    """
    if isinstance(hidden, numbers.Integral):
        raise TypeError(f"mlp: hidden: expected a sequence of widths (e.g. [256, 128]), got {hidden!r}")
    dropout = real("mlp", "dropout", dropout, 0, 1, high_open=True)
    layers = [nn.Flatten()]
    prev = in_features
    for width in hidden:
        layers += [nn.Linear(prev, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = width
    layers.append(nn.Linear(prev, num_classes))
    return nn.Sequential(*layers)
