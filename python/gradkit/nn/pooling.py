"""Pooling layers: ``MaxPool2d``, ``AvgPool2d``, ``GlobalAvgPool2d`` (NCHW)."""
from __future__ import annotations

from .. import ops
from .conv import _checked_pair
from .module import Module


class _Pool2d(Module):
    """Shared arguments of MaxPool2d and AvgPool2d (stride defaults to kernel_size)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        cls = type(self).__name__
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        kernel = _checked_pair(kernel_size, "kernel_size", cls, 1)
        _checked_pair(self.stride, "stride", cls, 1)
        pad = _checked_pair(padding, "padding", cls, 0)
        if 2 * pad[0] > kernel[0] or 2 * pad[1] > kernel[1]:
            raise ValueError(f"{cls}: padding: expected at most half the kernel size {kernel}, got {padding!r}")

    def _args(self):
        return self.kernel_size, self.stride, self.padding

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
        y, idx = ops.max_pool2d_forward(x, *self._args())
        self._save_for_backward(idx=idx, x_shape=x.shape, y_shape=y.shape, dtype=x.dtype)
        return y

    def backward(self, dy):
        saved = self._saved()
        dy = self._check_grad(dy, saved["y_shape"], saved["dtype"])
        return ops.max_pool2d_backward(dy, saved["idx"], saved["x_shape"], *self._args())


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
        y = ops.avg_pool2d_forward(x, *self._args())
        self._save_for_backward(x_shape=x.shape, y_shape=y.shape, dtype=x.dtype)
        return y

    def backward(self, dy):
        saved = self._saved()
        dy = self._check_grad(dy, saved["y_shape"], saved["dtype"])
        return ops.avg_pool2d_backward(dy, saved["x_shape"], *self._args())


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
