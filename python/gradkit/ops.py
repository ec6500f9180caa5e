"""Low-level kernels: NumPy arrays in and out, float32 fast, float64 exact.

Every kernel the layers use is reachable here. Inputs of the wrong dtype raise
TypeError, wrong shapes raise ValueError; kernels release the GIL and run on
``gk.get_num_threads()`` threads.
"""
from __future__ import annotations

import operator

import numpy as np

from . import _core

__all__ = ["matmul"]
__all__ += ["conv2d_forward", "conv2d_backward", "conv2d_backward_input", "conv2d_backward_weight",
            "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
            "global_avg_pool2d_forward", "global_avg_pool2d_backward"]


def matmul(a: np.ndarray, b: np.ndarray, *, trans_a: bool = False, trans_b: bool = False, out: np.ndarray | None = None,
           alpha: float = 1.0, beta: float = 0.0, bias: np.ndarray | None = None, bias_per_row: bool = False,
           activation: str = "none") -> np.ndarray:
    """``op(a) @ op(b)`` for 2-D float32 or float64 arrays, where ``op(x) = x.T`` if ``trans_x``.

    Args:
        a, b: 2-D arrays of the same dtype; strided and Fortran-order views are read in place.
        trans_a, trans_b: use the transpose of ``a`` / ``b`` (no copy is made).
        out: optional C-contiguous, writeable result array of shape (M, N), not overlapping a or b.
        alpha, beta: ``out = alpha * op(a) @ op(b) + beta * out`` (beta != 0 needs ``out``).
        bias: optional vector added to every row (shape (N,)), or to every column
            with ``bias_per_row=True`` (shape (M,)).
        activation: "none" or "relu", applied last.

    Returns:
        The (M, N) result (``out`` if given).
    """
    return _core.gemm(a, b, trans_a, trans_b, out, alpha, beta, bias, bias_per_row, activation)


# ---- convolution and pooling ----------------------------------------------------------------

def _pair(value, name: str, fn: str) -> tuple:
    """An int or a pair of ints as a 2-tuple (TypeError/ValueError naming the argument otherwise)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{fn}: {name}: expected an int or a pair of ints, got {len(value)} values {tuple(value)}")
        items = value
    else:
        items = (value, value)
    try:
        if any(isinstance(v, bool) for v in items):
            raise TypeError
        return tuple(operator.index(v) for v in items)
    except TypeError:
        raise TypeError(f"{fn}: {name}: expected an int or a pair of ints, got {value!r}") from None


def _int(value, name: str, fn: str) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{fn}: {name}: expected an int, got {value!r}") from None


def _conv_args(fn, stride, padding, dilation, groups):
    return (_pair(stride, "stride", fn), _pair(padding, "padding", fn), _pair(dilation, "dilation", fn),
            _int(groups, "groups", fn))


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride=1, padding=0,
                   dilation=1, groups: int = 1, activation: str = "none") -> np.ndarray:
    """2-D convolution (cross-correlation, as PyTorch), bias and optional ReLU fused.

    Args:
        x: input (N, C, H, W), float32 or float64.
        weight: (OC, C/groups, KH, KW), same dtype.
        bias: (OC,) or None.
        stride, padding, dilation: int or (h, w) pair; defaults 1, 0, 1.
        groups: channel groups (C and OC divisible by it; groups == C is depthwise).
        activation: "none" or "relu", applied in the output pass.

    Returns:
        y (N, OC, OH, OW) with OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1 (OW alike).
    """
    args = _conv_args("conv2d_forward", stride, padding, dilation, groups)
    return _core.conv2d_forward(x, weight, bias, *args, activation)


def conv2d_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride=1, padding=0, dilation=1,
                    groups: int = 1, *, dweight: np.ndarray | None = None, dbias: np.ndarray | None = None,
                    need_dx: bool = True, need_dweight: bool = True, need_dbias: bool = True):
    """Gradients of ``conv2d_forward`` (without activation) in one pass over the images.

    Args:
        dy: gradient of the output (N, OC, OH, OW).
        x, weight, stride, padding, dilation, groups: as given to the forward.
        dweight, dbias: optional C-contiguous arrays the weight/bias gradients are ADDED into
            (e.g. ``Parameter.grad``); new zero-initialised arrays when None.
        need_dx, need_dweight, need_dbias: skip what is not needed (a first layer needs no dx).

    Returns:
        ``(dx, dweight, dbias)``; each is None when not needed. dW and db are reduced in a
        fixed order, so they are the same for any thread count.
    """
    args = _conv_args("conv2d_backward", stride, padding, dilation, groups)
    return _core.conv2d_backward(dy, x, weight, *args, dweight, dbias, bool(need_dx), bool(need_dweight),
                                 bool(need_dbias))


def conv2d_backward_input(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride=1, padding=0, dilation=1,
                          groups: int = 1) -> np.ndarray:
    """dx (N, C, H, W) of ``conv2d_forward``; ``x`` gives the input shape and dtype."""
    return conv2d_backward(dy, x, weight, stride, padding, dilation, groups, need_dweight=False,
                           need_dbias=False)[0]


def conv2d_backward_weight(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride=1, padding=0, dilation=1,
                           groups: int = 1, *, dweight: np.ndarray | None = None,
                           dbias: np.ndarray | None = None, need_dbias: bool = True):
    """``(dweight, dbias)`` of ``conv2d_forward``, ADDED into the given arrays when not None."""
    _, dw, db = conv2d_backward(dy, x, weight, stride, padding, dilation, groups, dweight=dweight, dbias=dbias,
                                need_dx=False, need_dbias=need_dbias)
    return dw, db


def _pool_args(fn, kernel_size, stride, padding):
    kernel = _pair(kernel_size, "kernel_size", fn)
    return kernel, kernel if stride is None else _pair(stride, "stride", fn), _pair(padding, "padding", fn)


def _input_shape(input_shape, fn):
    try:
        shape = tuple(_int(v, "input_shape", fn) for v in input_shape)
    except TypeError:
        raise TypeError(f"{fn}: input_shape: expected 4 ints (N, C, H, W), got {input_shape!r}") from None
    return shape


def max_pool2d_forward(x: np.ndarray, kernel_size, stride=None, padding=0):
    """Max pooling over (N, C, H, W); padding (at most half the kernel) counts as -inf.

    Returns:
        ``(y, indices)``: y (N, C, OH, OW) and int32 indices, the flat position ``ih*W + iw``
        of each maximum in its plane (NaN propagates, as PyTorch). stride defaults to kernel_size.
    """
    return _core.max_pool2d_forward(x, *_pool_args("max_pool2d_forward", kernel_size, stride, padding))


def max_pool2d_backward(dy: np.ndarray, indices: np.ndarray, input_shape, kernel_size, stride=None,
                        padding=0) -> np.ndarray:
    """dx (input_shape) of max pooling: each dy added at its argmax (``indices`` from the forward)."""
    return _core.max_pool2d_backward(dy, indices, _input_shape(input_shape, "max_pool2d_backward"),
                                     *_pool_args("max_pool2d_backward", kernel_size, stride, padding))


def avg_pool2d_forward(x: np.ndarray, kernel_size, stride=None, padding=0) -> np.ndarray:
    """Average pooling over (N, C, H, W); padded zeros count in the mean (count_include_pad=True)."""
    return _core.avg_pool2d_forward(x, *_pool_args("avg_pool2d_forward", kernel_size, stride, padding))


def avg_pool2d_backward(dy: np.ndarray, input_shape, kernel_size, stride=None, padding=0) -> np.ndarray:
    """dx (input_shape) of average pooling: each dy / (KH*KW) spread over its window."""
    return _core.avg_pool2d_backward(dy, _input_shape(input_shape, "avg_pool2d_backward"),
                                     *_pool_args("avg_pool2d_backward", kernel_size, stride, padding))


def global_avg_pool2d_forward(x: np.ndarray) -> np.ndarray:
    """Mean over H and W: (N, C, H, W) -> (N, C)."""
    return _core.global_avg_pool2d_forward(x)


def global_avg_pool2d_backward(dy: np.ndarray, input_shape) -> np.ndarray:
    """dx (N, C, H, W) = dy (N, C) / (H*W) broadcast over each plane."""
    return _core.global_avg_pool2d_backward(dy, _input_shape(input_shape, "global_avg_pool2d_backward"))
