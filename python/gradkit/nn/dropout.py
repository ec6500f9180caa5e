"""Dropout."""
from __future__ import annotations

import numpy as np

from .. import ops
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p`` and
    scale the others by ``1 / (1 - p)``; in eval mode (or p = 0), the identity.

    The mask is drawn from the library's seeded counter-based generator
    (``gk.manual_seed``): a seed gives the same mask for any thread count. Only
    the mask (one bit per element) is kept for backward.

    Args:
        p: drop probability in [0, 1) (default 0.5).

    Shape: any; output like the input.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = ops._check_p("Dropout", p)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x)
        if not self.training or self.p == 0.0:
            self._save_for_backward(mask=None, shape=x.shape, dtype=x.dtype)
            return x
        y, mask = ops.dropout(x, self.p)
        self._save_for_backward(mask=mask, shape=x.shape, dtype=x.dtype)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        c = self._saved()
        dy = self._check_grad(dy, c["shape"], c["dtype"])
        if c["mask"] is None:
            return dy
        return ops.dropout_backward(dy, c["mask"], self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
