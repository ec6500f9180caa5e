"""Activation layers (element-wise, any input shape; float32 or float64)."""
from __future__ import annotations

import numpy as np

from .. import _core, ops
from .._checks import real
from .module import Module

__all__ = ["Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU", "GELU"]


# The kernels with a scalar argument, for callers that checked it already (the layers in their
# constructor, gk.nn.functional at the call): gk.ops.leaky_relu / elu would check it again.
def _leaky_relu(x, negative_slope):
    return _core.leaky_relu_forward(x, None, negative_slope)


def _leaky_relu_backward(dy, x, negative_slope):
    return _core.leaky_relu_backward(dy, x, None, negative_slope)


def _elu(x, alpha):
    return _core.elu_forward(x, None, alpha)


def _elu_backward(dy, x, alpha):
    return _core.elu_backward(dy, x, None, alpha)


class _Activation(Module):
    """y = f(x) element-wise. Subclasses set _forward / _backward (gk.ops functions)
    and _from_output (backward reads y instead of x, so only y is kept)."""

    _from_output = False
    #: Set on an instance by gk.callbacks.ActivationStats (gradkit/diagnostics): it is told of
    #: every output and incoming gradient. None (the class default) costs one attribute read.
    _stats_hook = None

    def _args(self) -> tuple:
        return ()

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x)
        y = type(self)._forward(x, *self._args())
        self._save_for_backward(saved=y if self._from_output else x)
        if self._stats_hook is not None:
            self._stats_hook.forward(self, y)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        saved = self._saved()["saved"]
        dy = self._check_grad(dy, saved.shape, saved.dtype)
        if self._stats_hook is not None:
            self._stats_hook.backward(self, dy)
        return type(self)._backward(dy, saved, *self._args())


class Sigmoid(_Activation):
    """``y = 1 / (1 + exp(-x))``; backward ``dy * y * (1 - y)`` from the output.

    Shape: any; output like the input.
    """

    _forward = staticmethod(ops.sigmoid)
    _backward = staticmethod(ops.sigmoid_backward)
    _from_output = True


class Tanh(_Activation):
    """``y = tanh(x)``; backward ``dy * (1 - y^2)`` from the output.

    Shape: any; output like the input.
    """

    _forward = staticmethod(ops.tanh)
    _backward = staticmethod(ops.tanh_backward)
    _from_output = True


class ReLU(_Activation):
    """``y = max(x, 0)``; backward passes dy where ``y > 0`` (only y is kept).

    Shape: any; output like the input.
    """

    _forward = staticmethod(ops.relu)
    _backward = staticmethod(ops.relu_backward)
    _from_output = True


class LeakyReLU(_Activation):
    """``y = x if x > 0 else negative_slope * x``.

    Args:
        negative_slope: slope for x <= 0 (default 0.01).

    Shape: any; output like the input.
    """

    _forward = staticmethod(_leaky_relu)
    _backward = staticmethod(_leaky_relu_backward)

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = real("LeakyReLU", "negative_slope", negative_slope)

    def _args(self) -> tuple:
        return (self.negative_slope,)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(_Activation):
    """``y = x if x > 0 else alpha * (exp(x) - 1)``.

    Args:
        alpha: the saturation value for x -> -inf is -alpha (default 1.0).

    Shape: any; output like the input.
    """

    _forward = staticmethod(_elu)
    _backward = staticmethod(_elu_backward)

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = real("ELU", "alpha", alpha)

    def _args(self) -> tuple:
        return (self.alpha,)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class GELU(_Activation):
    """``y = x * Phi(x) = x / 2 * (1 + erf(x / sqrt 2))``, the exact (erf) form.

    Shape: any; output like the input.
    """

    _forward = staticmethod(ops.gelu)
    _backward = staticmethod(ops.gelu_backward)
