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


# -- normalization ----------------------------------------------------------------------------
# Forward functions return (y, mean, rstd): the statistics used, as float64 arrays
# (rstd = 1 / sqrt(var + eps)), which the matching backward takes back.
__all__ += [
    "batch_norm_forward", "batch_norm_backward", "layer_norm_forward", "layer_norm_backward",
    "group_norm_forward", "group_norm_backward", "instance_norm_forward", "instance_norm_backward",
]

def batch_norm_forward(x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                       running_mean: np.ndarray | None = None, running_var: np.ndarray | None = None, *,
                       training: bool = True, momentum: float = 0.1, eps: float = 1e-5):
    """Batch normalization over every axis but the channel axis 1.

    ``y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]``. With
    ``training`` (or without running statistics) mean and the biased var are
    the batch's, and the running statistics, when given, are updated in place:
    ``r = (1 - momentum) * r + momentum * s`` with the unbiased variance
    (as PyTorch). Otherwise the running statistics normalise.

    Args:
        x: (N, C, *) float32 or float64.
        weight, bias: (C,) or None (scale 1, shift 0).
        running_mean, running_var: (C,) C-contiguous writeable arrays of x's dtype, or None.
        training: use the batch statistics. momentum: the running-average factor. eps: added to var.

    Returns:
        (y, mean, rstd): y like x; mean and rstd (C,) float64, for ``batch_norm_backward``.

    Raises:
        ValueError: N * prod(spatial) == 1 with batch statistics ("Expected more than 1 value per
            channel when training"), or shapes that do not match C.
    """
    return _core.batch_norm_forward(x, weight, bias, running_mean, running_var, bool(training), float(momentum),
                                    float(eps))


def batch_norm_backward(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, rstd: np.ndarray,
                        weight: np.ndarray | None = None, dweight: np.ndarray | None = None,
                        dbias: np.ndarray | None = None, *, training: bool = True) -> np.ndarray:
    """Gradient of ``batch_norm_forward``: returns dx and ADDS into dweight, dbias (when given).

    Args:
        dy, x: (N, C, *). mean, rstd: (C,) float64 from the forward. weight: (C,) or None.
        dweight, dbias: (C,) writeable arrays of x's dtype, or None.
        training: the forward used batch statistics (their gradient flows into dx).
    """
    return _core.batch_norm_backward(dy, x, mean, rstd, weight, dweight, dbias, bool(training))


def layer_norm_forward(x: np.ndarray, normalized_shape, weight: np.ndarray | None = None,
                       bias: np.ndarray | None = None, eps: float = 1e-5):
    """Layer normalization over the trailing ``normalized_shape`` dimensions.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, statistics per leading index.

    Args:
        x: (*, *normalized_shape). normalized_shape: int or tuple.
        weight, bias: normalized_shape arrays, or None.

    Returns:
        (y, mean, rstd): mean and rstd float64 of shape x.shape[:-len(normalized_shape)].
    """
    return _core.layer_norm_forward(x, _shape_tuple(normalized_shape), weight, bias, float(eps))


def layer_norm_backward(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, rstd: np.ndarray, normalized_shape,
                        weight: np.ndarray | None = None, dweight: np.ndarray | None = None,
                        dbias: np.ndarray | None = None) -> np.ndarray:
    """Gradient of ``layer_norm_forward``: returns dx and ADDS into dweight, dbias (when given)."""
    return _core.layer_norm_backward(dy, x, mean, rstd, _shape_tuple(normalized_shape), weight, dweight, dbias)


def group_norm_forward(x: np.ndarray, num_groups: int, weight: np.ndarray | None = None,
                       bias: np.ndarray | None = None, eps: float = 1e-5):
    """Group normalization: channels split into ``num_groups`` groups, statistics per (sample, group).

    Args:
        x: (N, C, *) with C divisible by num_groups. weight, bias: (C,) or None.

    Returns:
        (y, mean, rstd): mean and rstd (N, num_groups) float64.
    """
    return _core.group_norm_forward(x, _int_arg(num_groups, "num_groups"), weight, bias, float(eps))


def group_norm_backward(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, rstd: np.ndarray, num_groups: int,
                        weight: np.ndarray | None = None, dweight: np.ndarray | None = None,
                        dbias: np.ndarray | None = None) -> np.ndarray:
    """Gradient of ``group_norm_forward``: returns dx and ADDS into dweight, dbias (when given)."""
    return _core.group_norm_backward(dy, x, mean, rstd, _int_arg(num_groups, "num_groups"), weight, dweight, dbias)


def instance_norm_forward(x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                          eps: float = 1e-5):
    """Instance normalization: statistics per (sample, channel) over the spatial axes
    (group norm with one channel per group). x (N, C, *); returns (y, mean (N, C), rstd (N, C))."""
    return group_norm_forward(x, _channels(x), weight, bias, eps)


def instance_norm_backward(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, rstd: np.ndarray,
                           weight: np.ndarray | None = None, dweight: np.ndarray | None = None,
                           dbias: np.ndarray | None = None) -> np.ndarray:
    """Gradient of ``instance_norm_forward``: returns dx and ADDS into dweight, dbias (when given)."""
    return group_norm_backward(dy, x, mean, rstd, _channels(x), weight, dweight, dbias)


def _int_arg(value, name: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}") from None


def _shape_tuple(normalized_shape) -> tuple:
    """normalized_shape as a tuple of ints (an int means a 1-tuple)."""
    if isinstance(normalized_shape, (int, np.integer)):
        return (operator.index(normalized_shape),)
    try:
        return tuple(operator.index(s) for s in normalized_shape)
    except TypeError:
        raise TypeError(f"normalized_shape: expected an int or a sequence of ints, "
                        f"got {normalized_shape!r}") from None


def _channels(x) -> int:
    if not isinstance(x, np.ndarray) or x.ndim < 2:
        shape = getattr(x, "shape", None)
        raise ValueError(f"input: expected an array of rank >= 2 (N, C, ...), got shape {shape}")
    return max(x.shape[1], 1)
