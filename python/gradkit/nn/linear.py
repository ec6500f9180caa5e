"""``Linear``: a fully connected layer on the GEMM kernel (bias fused in its epilogue)."""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from .._checks import integer
from . import init
from .module import Module
from .parameter import Parameter


class Linear(Module):
    r"""``y = x W^T + b``.

    Args:
        in_features: size of each input row.
        out_features: size of each output row.
        bias: learn an additive bias (default True).

    Shape:
        input (*, in_features) -> output (*, out_features); ``*`` is any number of
        leading dimensions (at least one array dimension in all).

    Parameters are initialized as PyTorch's: ``weight`` (out_features, in_features) and
    ``bias`` (out_features,) from U(-1/sqrt(in_features), 1/sqrt(in_features)).

    Forward is one GEMM ``x @ W^T`` with the bias added in its epilogue. Backward is
    ``dx = dy @ W``, ``dW += dy^T @ x`` (a GEMM with beta = 1 straight into ``weight.grad``)
    and ``db += sum of dy over rows``; the ``dW`` GEMM and the ``db`` sum are skipped for a
    frozen (``requires_grad=False``) weight or bias.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = integer("Linear", "in_features", in_features, low=0)
        self.out_features = integer("Linear", "out_features", out_features, low=0)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=np.float32))
        self.register_parameter("bias", Parameter(np.empty(self.out_features, dtype=np.float32)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform_(a=sqrt(5)) for weight, U(+-1/sqrt(fan_in)) for bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._forward(x)

    def _forward(self, x: np.ndarray, activation: str = "none") -> np.ndarray:
        """forward, with ``activation`` ("none" or "relu") applied in the GEMM epilogue (for a fused
        Linear -> ReLU: the caller then applies the activation's gradient before ``backward``)."""
        x = self._check_input(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input: expected shape (*, {self.in_features}) (last dimension = in_features), "
                             f"got {x.shape}")
        x2 = x.reshape(math.prod(x.shape[:-1]), self.in_features)  # (-1, 0) would be ambiguous
        bias = self.bias.data if self.bias is not None else None
        y2 = ops.matmul(x2, self.weight.data, trans_b=True, bias=bias, activation=activation)
        out_shape = x.shape[:-1] + (self.out_features,)
        self._save_for_backward(x2=x2, out_shape=out_shape)
        return y2.reshape(out_shape)

    _input_grad_optional = True

    def backward(self, dy: np.ndarray, input_grad: bool = True):
        """Add ``dy^T x`` to weight.grad and the column sums of dy to bias.grad; return ``dy @ W``
        (or None, skipping that GEMM, with ``input_grad=False``)."""
        saved = self._saved()
        x2 = saved["x2"]
        dy = self._check_grad(dy, saved["out_shape"], self.weight.data.dtype)
        dy2 = dy.reshape(x2.shape[0], self.out_features)
        if dy2.shape[0] > 0:
            if self.weight.requires_grad:
                ops.matmul(dy2, x2, trans_a=True, out=self.weight.grad, beta=1.0)
            if self.bias is not None and self.bias.requires_grad:
                self.bias.grad += dy2.sum(axis=0)
        if not input_grad:
            return None
        dx2 = ops.matmul(dy2, self.weight.data)
        return dx2.reshape(saved["out_shape"][:-1] + (self.in_features,))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
