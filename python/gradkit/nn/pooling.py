"""Pooling layers: ``MaxPool2d``, ``AvgPool2d``, ``GlobalAvgPool2d``, ``AdaptiveAvgPool2d`` (NCHW)."""
from __future__ import annotations

import numpy as np

from .. import _core, ops
from .._checks import integer
from .conv import _read_only
from .module import Module


class _Pool2d(Module):
    """Shared arguments of MaxPool2d and AvgPool2d (stride defaults to kernel_size).

    The arguments are checked once, here, and read-only after: the kernels get the checked pairs."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self._kernel_size, self._stride, self._padding = kernel_size, kernel_size if stride is None else stride, padding
        self._pairs = ops._pool_args(type(self).__name__, kernel_size, stride, padding)

    kernel_size, stride, padding = map(_read_only, ("kernel_size", "stride", "padding"))

    def _args(self):
        return self._pairs

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max over each ``kernel_size`` window (padding counts as -inf; NaN propagates).

    Args:
        kernel_size: int or pair. stride: int or pair (default kernel_size).
        padding: int or pair, at most half the kernel (default 0).

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), OH = (H + 2 p - k) // s + 1. The argmax of each
        window is kept (int32) for backward.
    """

    def forward(self, x):
        x = self._check_input(x, ndim=4)
        y, idx = _core.max_pool2d_forward(x, *self._args())
        self._save_for_backward(idx=idx, x_shape=x.shape, y_shape=y.shape, dtype=x.dtype)
        return y

    def backward(self, dy):
        saved = self._saved()
        dy = self._check_grad(dy, saved["y_shape"], saved["dtype"])
        return _core.max_pool2d_backward(dy, saved["idx"], saved["x_shape"], *self._args())


class AvgPool2d(_Pool2d):
    """Mean over each ``kernel_size`` window; padded zeros count (count_include_pad=True).

    Args:
        kernel_size: int or pair. stride: int or pair (default kernel_size).
        padding: int or pair, at most half the kernel (default 0).

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), OH = (H + 2 p - k) // s + 1.
    """

    def forward(self, x):
        x = self._check_input(x, ndim=4)
        y = _core.avg_pool2d_forward(x, *self._args())
        self._save_for_backward(x_shape=x.shape, y_shape=y.shape, dtype=x.dtype)
        return y

    def backward(self, dy):
        saved = self._saved()
        dy = self._check_grad(dy, saved["y_shape"], saved["dtype"])
        return _core.avg_pool2d_backward(dy, saved["x_shape"], *self._args())


class GlobalAvgPool2d(Module):
    """Mean over the spatial dimensions.

    Shape:
        (N, C, H, W) -> (N, C).
    """

    def forward(self, x):
        x = self._check_input(x, ndim=4)
        y = ops.global_avg_pool2d_forward(x)
        self._save_for_backward(x_shape=x.shape, dtype=x.dtype)
        return y

    def backward(self, dy):
        saved = self._saved()
        dy = self._check_grad(dy, saved["x_shape"][:2], saved["dtype"])
        return ops.global_avg_pool2d_backward(dy, saved["x_shape"])


def _adaptive_bins(size: int, out: int, dtype) -> np.ndarray:
    """The (out, size) averaging matrix of PyTorch's adaptive bins: row i is 1/len over
    [floor(i*size/out), ceil((i+1)*size/out)) and 0 elsewhere (bins overlap when size % out != 0)."""
    i = np.arange(out)
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    cols = np.arange(size)
    inside = (cols >= start[:, None]) & (cols < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


class AdaptiveAvgPool2d(Module):
    """Mean over PyTorch's adaptive bins, giving a fixed output size whatever the input size.

    Output row i averages input rows ``floor(i*H/OH)`` to ``ceil((i+1)*H/OH) - 1`` (columns
    likewise), so bins overlap when H is not a multiple of OH, and OH may exceed H (a 1x1
    input becomes a 7x7 copy, as in torchvision's VGG on small images).

    Args:
        output_size: int or pair (OH, OW); None in the pair keeps that input size.

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), H and W at least 1. When H % OH == 0 and W % OW == 0
        it runs the average-pooling kernel (window = stride = H/OH x W/OW), else two small
        GEMMs with the bins' averaging matrices (y = P_H x P_W^T, dx = P_H^T dy P_W).
    """

    def __init__(self, output_size):
        super().__init__()
        pair = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
        if output_size is None or len(pair) != 2:
            raise ValueError(f"AdaptiveAvgPool2d: output_size: expected a positive int or a pair of positive "
                             f"ints or None, got {output_size!r}")
        self._pair = tuple(None if v is None else integer("AdaptiveAvgPool2d", "output_size", v, low=1) for v in pair)
        self.output_size = self._pair if isinstance(output_size, (tuple, list)) else int(output_size)

    def _plan(self, x_shape):
        """(OH, OW) for this input, and the average-pooling kernel when the bins tile it exactly."""
        H, W = x_shape[2:]
        if H < 1 or W < 1:
            raise ValueError(f"AdaptiveAvgPool2d: input: expected a non-empty spatial size, got shape {x_shape}")
        oh, ow = (H if self._pair[0] is None else self._pair[0]), (W if self._pair[1] is None else self._pair[1])
        kernel = (H // oh, W // ow) if H % oh == 0 and W % ow == 0 else None
        return (oh, ow), kernel

    def forward(self, x):
        x = self._check_input(x, ndim=4)
        (oh, ow), kernel = self._plan(x.shape)
        self._save_for_backward(x_shape=x.shape, y_shape=x.shape[:2] + (oh, ow), dtype=x.dtype)
        if (oh, ow) == (1, 1):
            return ops.global_avg_pool2d_forward(x).reshape(x.shape[:2] + (1, 1))
        if kernel is not None:
            return ops.avg_pool2d_forward(x, kernel)
        H, W = x.shape[2:]
        y = np.matmul(x, _adaptive_bins(W, ow, x.dtype).T)           # (N, C, H, OW)
        return np.matmul(_adaptive_bins(H, oh, x.dtype), y)          # (N, C, OH, OW)

    def backward(self, dy):
        saved = self._saved()
        dy = self._check_grad(dy, saved["y_shape"], saved["dtype"])
        x_shape = saved["x_shape"]
        (oh, ow), kernel = self._plan(x_shape)
        if (oh, ow) == (1, 1):
            return ops.global_avg_pool2d_backward(np.ascontiguousarray(dy.reshape(x_shape[:2])), x_shape)
        if kernel is not None:
            return ops.avg_pool2d_backward(np.ascontiguousarray(dy), x_shape, kernel)
        H, W = x_shape[2:]
        dx = np.matmul(_adaptive_bins(H, oh, dy.dtype).T, dy)         # (N, C, H, OW)
        return np.ascontiguousarray(np.matmul(dx, _adaptive_bins(W, ow, dy.dtype)))

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
