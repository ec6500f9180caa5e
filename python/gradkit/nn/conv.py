"""``Conv2d``: 2-D convolution over NCHW images (PyTorch's layer, weights and init)."""
from __future__ import annotations

import math

from .. import _core, _random
from .._checks import integer, pair
from .module import Module
from .parameter import Parameter


def _read_only(name: str) -> property:
    """A hyperparameter fixed at construction: checked once there, then passed to the kernels as it is."""
    return property(lambda self: getattr(self, "_" + name),
                    doc=f"``{name}``, as checked at construction (read-only: build a new layer to change it).")


class Conv2d(Module):
    r"""2-D convolution (cross-correlation) over (N, C, H, W) inputs.

    .. math:: y_{n,o} = b_o + \sum_{c \in g(o)} \sum_{i,j} w_{o,c,i,j}\, x_{n,c,\,s_h h + d_h i - p_h,\, s_w w + d_w j - p_w}

    Args:
        in_channels, out_channels: C and OC (both divisible by ``groups``).
        kernel_size: int or (kh, kw).
        stride: int or pair (default 1). padding: int or pair of zeros on each side (default 0).
        dilation: int or pair (default 1). groups: channel groups (default 1; ``in_channels`` is depthwise).
        bias: learn an additive bias (default True).

    Attributes:
        weight: Parameter (out_channels, in_channels // groups, kh, kw); bias: Parameter (out_channels,) or None.
            Both ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels // groups * kh * kw (PyTorch's init).

    Shape:
        input (N, C, H, W) -> output (N, OC, OH, OW), OH = (H + 2 p_h - d_h (kh - 1) - 1) // s_h + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super().__init__()
        cls = "Conv2d"
        self.in_channels = integer(cls, "in_channels", in_channels, low=1)
        self.out_channels = integer(cls, "out_channels", out_channels, low=1)
        self._groups = integer(cls, "groups", groups, low=1)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{cls}: groups: expected a divisor of in_channels ({self.in_channels}) and "
                             f"out_channels ({self.out_channels}), got {self.groups}")
        self.kernel_size = pair(cls, "kernel_size", kernel_size, low=1)
        self._stride = pair(cls, "stride", stride, low=1)
        self._padding = pair(cls, "padding", padding, low=0)
        self._dilation = pair(cls, "dilation", dilation, low=1)
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = Parameter(_random.uniform((self.out_channels, self.in_channels // self.groups, kh, kw),
                                                -bound, bound))
        self.bias = Parameter(_random.uniform((self.out_channels,), -bound, bound)) if bias else None

    # Passed to the kernels unchecked (the binding trusts them): read-only, so never unchecked.
    stride, padding, dilation, groups = map(_read_only, ("stride", "padding", "dilation", "groups"))

    def _args(self):
        return self._stride, self._padding, self._dilation, self._groups

    def forward(self, x):
        return self._forward(x)

    def _forward(self, x, activation: str = "none"):
        """forward, with ``activation`` ("none" or "relu") applied in the output pass (for a fused
        Conv2d -> ReLU: the caller then applies the activation's gradient before ``backward``)."""
        x = self._check_input(x, ndim=4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d: input: expected {self.in_channels} channels (shape[1]), got shape {x.shape}")
        bias = self.bias.data if self.bias is not None else None
        y = _core.conv2d_forward(x, self.weight.data, bias, *self._args(), activation)
        self._save_for_backward(x=x, y_shape=y.shape)
        return y

    _input_grad_optional = True

    def backward(self, dy, input_grad: bool = True):
        """Add dW and db into the gradients (each skipped when that parameter is frozen); return
        dx (None with ``input_grad=False``, which skips the costliest part, as for a model's
        first layer)."""
        saved = self._saved()
        x = saved["x"]
        dy = self._check_grad(dy, saved["y_shape"], x.dtype)
        need_dw = self.weight.requires_grad
        need_db = self.bias is not None and self.bias.requires_grad
        if not (input_grad or need_dw or need_db):
            return None
        dx, _, _ = _core.conv2d_backward(dy, x, self.weight.data, *self._args(),
                                         dweight=self.weight.grad if need_dw else None,
                                         dbias=self.bias.grad if need_db else None,
                                         need_dx=bool(input_grad), need_dweight=need_dw, need_dbias=need_db)
        return dx

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
