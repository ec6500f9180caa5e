"""Low-level kernels: NumPy arrays in and out, float32 fast, float64 exact.

Every kernel the layers use is reachable here. Inputs of the wrong dtype raise
TypeError, wrong shapes raise ValueError; kernels release the GIL and run on
``gk.get_num_threads()`` threads.
"""
from __future__ import annotations

import numpy as np

from . import _core

__all__ = ["matmul"]


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
