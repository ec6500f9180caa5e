"""Losses: ``loss(input, target)`` returns a Python float, ``backward()`` returns d loss / d input."""
from __future__ import annotations


import numpy as np

from .. import ops
from .._checks import real
from .._config import is_grad_enabled
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss"]


class _Loss(Module):
    """A loss: forward computes the loss and (unless under ``gk.no_grad()``) its
    gradient in the same pass; backward returns that gradient."""

    def backward(self, dy=None) -> np.ndarray:
        """d loss / d input of the last forward (RuntimeError if there is none).

        The loss is the end of the graph, so there is no incoming gradient:
        ``dy`` is not accepted.
        """
        if dy is not None:
            raise TypeError(f"{type(self).__name__}.backward: takes no gradient argument (the loss is a scalar "
                            f"at the end of the graph), got {type(dy).__name__}")
        return self._saved()["dinput"]


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy between logits and class indices, mean over the batch.

    ``loss = mean_i [logsumexp(x_i) - sum_j q_ij x_ij]`` with
    ``q = (1 - label_smoothing) * onehot(target) + label_smoothing / C`` (PyTorch's
    formula). Stable for any finite logits.

    Args:
        label_smoothing: in [0, 1] (default 0.0).

    Shape:
        input (N, C) float32/float64 logits; target (N,) integer class indices in
        [0, C) (any integer dtype). backward() returns (N, C).
    """

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = real("CrossEntropyLoss", "label_smoothing", label_smoothing, 0, 1)

    def forward(self, input: np.ndarray, target: np.ndarray) -> float:
        input = self._check_input(input, "input", ndim=2)
        loss, dinput = ops.cross_entropy(input, target, self.label_smoothing, grad=is_grad_enabled())
        self._save_for_backward(dinput=dinput)
        return loss

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""


class MSELoss(_Loss):
    """Mean squared error: ``mean((input - target)^2)`` over all elements.

    Shape: input and target of the same shape and float dtype; backward() returns input's shape.
    """

    def forward(self, input: np.ndarray, target: np.ndarray) -> float:
        input = self._check_input(input, "input")
        if not isinstance(target, np.ndarray):
            raise TypeError(f"MSELoss: target: expected a numpy.ndarray, got {type(target).__name__}")
        if target.dtype != input.dtype:
            raise TypeError(f"MSELoss: target: expected dtype {input.dtype} (the input's), got {target.dtype}")
        if target.shape != input.shape:
            raise ValueError(f"MSELoss: target: expected shape {input.shape} (the input's), got {target.shape}")
        loss, dinput = ops.mse_loss(input, target, grad=is_grad_enabled())
        self._save_for_backward(dinput=dinput)
        return loss
