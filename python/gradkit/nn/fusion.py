"""Fused runs of layers inside ``Sequential``: the same numbers, fewer passes over memory.

``Sequential`` looks for ``BatchNorm2d -> ReLU -> MaxPool2d(2)`` (kernel 2, stride 2, no
padding) and runs it as one kernel (``ops.batch_norm_relu_pool2_forward``): two passes over
the input (statistics, then normalise-ReLU-pool) instead of seven, and the full-size
normalised and activated tensors are never written. Backward is one kernel too. The three
layers keep their parameters, buffers and running-statistics updates; only their own caches
stay empty (the run's cache lives in the Sequential), so calling one of them's backward
alone after a fused forward raises the usual "no cached forward" error.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from .activation import ReLU
from .normalization import BatchNorm2d
from .pooling import MaxPool2d


def _pool2(pool) -> bool:
    try:
        return (ops._pair(pool.kernel_size, "kernel_size", "MaxPool2d") == (2, 2)
                and ops._pair(pool.stride, "stride", "MaxPool2d") == (2, 2)
                and ops._pair(pool.padding, "padding", "MaxPool2d") == (0, 0))
    except (TypeError, ValueError):
        return False


def fusable_runs(modules) -> dict:
    """{index of a run's first layer: its length} for the runs of ``modules`` that can be fused."""
    runs = {}
    i = 0
    while i + 2 < len(modules):
        bn, relu, pool = modules[i:i + 3]
        if type(bn) is BatchNorm2d and type(relu) is ReLU and type(pool) is MaxPool2d and _pool2(pool):
            runs[i] = 3
            i += 3
        else:
            i += 1
    return runs


def fits(x) -> bool:
    """True when x is an input the fused kernel takes (else the layers run one by one, with their checks)."""
    return isinstance(x, np.ndarray) and x.ndim == 4 and x.shape[2] >= 2 and x.shape[3] >= 2


def bn_relu_pool2_forward(bn, relu, pool, x):
    """``pool(relu(bn(x)))`` in one kernel; returns (y, cache for the backward or None)."""
    x = bn._batched(bn._check_input(x))
    use_batch_stats, update, momentum, running = bn._stats_args()
    weight = None if bn.weight is None else bn.weight.data
    y, code, mean, rstd = ops.batch_norm_relu_pool2_forward(x, weight, bn._bias_data(), *running,
                                                            training=use_batch_stats, momentum=momentum, eps=bn.eps)
    if update:
        bn.num_batches_tracked += 1
    for m in (bn, relu, pool):
        m._cache = None
    return y, dict(x=x, code=code, mean=mean, rstd=rstd, batch_stats=use_batch_stats, y_shape=y.shape)


def bn_relu_pool2_backward(bn, pool, cache, dy, input_grad: bool):
    """Adds bn's parameter gradients; returns dx (None with ``input_grad=False``)."""
    x = cache["x"]
    dy = pool._check_grad(dy, cache["y_shape"], x.dtype)
    weight, dweight, dbias = bn._affine_args()
    dx = ops.batch_norm_relu_pool2_backward(dy, x, cache["code"], cache["mean"], cache["rstd"], weight, dweight,
                                            dbias, training=cache["batch_stats"])
    return dx if input_grad else None
