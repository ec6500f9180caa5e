"""The ONNX form of each recorded call: one builder per layer type and functional op.

A builder takes the graph being built (``_Graph``) and the call's arguments (a layer builder:
the module and its input; an op builder: the ``gk.nn.functional`` op's own arguments, so
Python binds them as the op does), appends ONNX nodes and initializers, and returns the name
of the result. One without an ONNX form raises ValueError saying why; ``_Graph.convert``
names the layer or op.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import nn
from ..nn.pooling import _adaptive_bins


def _pair(value) -> tuple:
    return (int(value), int(value)) if isinstance(value, numbers.Integral) else tuple(int(v) for v in value)


def _pads(padding) -> list:
    """ONNX's pads (top, left, bottom, right) for PyTorch's symmetric (ph, pw)."""
    ph, pw = _pair(padding)
    return [ph, pw, ph, pw]


# -- functional ops (the signatures of gk.nn.functional) -------------------------------------

def conv2d(g, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    inputs = [g.tensor(x), g.tensor(weight)] + ([] if bias is None else [g.tensor(bias)])
    return g.emit("Conv", inputs, kernel_shape=list(g.shape(weight)[2:]), strides=list(_pair(stride)),
                  pads=_pads(padding), dilations=list(_pair(dilation)), group=int(groups))


def linear(g, x, weight, bias=None):
    """Gemm (transB=1, the weight as stored) for a 2-D input; MatMul with the transposed weight
    (+ Add) for any other rank, as Linear takes (*, in_features)."""
    w = g.tensor(weight)
    b = [] if bias is None else [g.tensor(bias)]
    if len(g.shape(x)) == 2:
        return g.emit("Gemm", [g.tensor(x), w] + b, transB=1)
    y = g.emit("MatMul", [g.tensor(x), g.emit("Transpose", [w], perm=[1, 0])])
    return g.emit("Add", [y] + b) if b else y


def relu(g, x):
    return g.emit("Relu", [g.tensor(x)])


def sigmoid(g, x):
    return g.emit("Sigmoid", [g.tensor(x)])


def tanh(g, x):
    return g.emit("Tanh", [g.tensor(x)])


def leaky_relu(g, x, negative_slope=0.01):
    return g.emit("LeakyRelu", [g.tensor(x)], alpha=float(negative_slope))


def elu(g, x, alpha=1.0):
    return g.emit("Elu", [g.tensor(x)], alpha=float(alpha))


def gelu(g, x):
    """Gelu from opset 20; below, its erf form x * 0.5 * (1 + erf(x / sqrt 2))."""
    if g.opset >= 20:
        return g.emit("Gelu", [g.tensor(x)])
    xn, dtype = g.tensor(x), g.dtype(x)
    erf = g.emit("Erf", [g.emit("Div", [xn, g.scalar(math.sqrt(2.0), dtype)])])
    half_x = g.emit("Mul", [xn, g.scalar(0.5, dtype)])
    return g.emit("Mul", [half_x, g.emit("Add", [erf, g.scalar(1.0, dtype)])])


def _pool(g, op, x, kernel_size, stride, padding, **attrs):
    kernel = _pair(kernel_size)
    return g.emit(op, [g.tensor(x)], kernel_shape=list(kernel),
                  strides=list(kernel if stride is None else _pair(stride)), pads=_pads(padding), **attrs)


def max_pool2d(g, x, kernel_size, stride=None, padding=0):
    return _pool(g, "MaxPool", x, kernel_size, stride, padding)


def avg_pool2d(g, x, kernel_size, stride=None, padding=0):
    return _pool(g, "AveragePool", x, kernel_size, stride, padding, count_include_pad=1)


def global_avg_pool2d(g, x):
    """(N, C, H, W) -> (N, C): GlobalAveragePool, then Flatten drops the 1x1."""
    return g.emit("Flatten", [g.emit("GlobalAveragePool", [g.tensor(x)])], axis=1)


def flatten(g, x, start_dim=1, end_dim=-1):
    """Flatten when the dimensions from 1 on merge; else Reshape keeping the leading dimensions
    (0: copy the input's, so the batch stays free) and the trailing ones."""
    shape = g.shape(x)
    rank = len(shape)
    start, end = start_dim % rank, end_dim % rank
    if start == 1 and end == rank - 1:
        return g.emit("Flatten", [g.tensor(x)], axis=1)
    return g.emit("Reshape", [g.tensor(x), g.ints([0] * start + [-1] + list(shape[end + 1:]))])


def add(g, *xs):
    y = g.tensor(xs[0])
    for x in xs[1:]:
        y = g.emit("Add", [y, g.tensor(x)])
    return y


def sub(g, a, b):
    return g.emit("Sub", [g.tensor(a), g.tensor(b)])


def mul(g, a, b):
    """b of a's shape, or broadcast over a (NumPy's rules, as ONNX's)."""
    return g.emit("Mul", [g.tensor(a), g.tensor(b)])


def cat(g, xs, dim=1):
    return g.emit("Concat", [g.tensor(x) for x in xs], axis=int(dim))


def dropout(g, x, p=0.5, training=True):
    """The identity: an exported model is an inference model."""
    return g.tensor(x)


FUNCTIONS = {f.__name__: f for f in (conv2d, linear, relu, sigmoid, tanh, leaky_relu, elu, gelu, max_pool2d,
                                     avg_pool2d, global_avg_pool2d, flatten, add, sub, mul, cat, dropout)}


# -- layers ----------------------------------------------------------------------------------

def _ones_or(g, param, shape, dtype, fill: float):
    """The parameter's initializer, or a constant filled with ``fill`` for a layer without it."""
    return g.tensor(param) if param is not None else g.array(np.full(shape, fill, dtype=dtype))


def batch_norm(g, m, x):
    """BatchNormalization in its inference form with the running statistics (not folded into a
    preceding Conv: runtimes fold it themselves, and the graph keeps the layer's parameters)."""
    if m.running_mean is None:
        raise ValueError("track_running_stats=False normalises with each batch's statistics in eval mode; "
                         "ONNX's BatchNormalization needs running statistics")
    shape, dtype = m.running_mean.shape, m.running_mean.dtype
    inputs = [g.tensor(x), _ones_or(g, m.weight, shape, dtype, 1.0), _ones_or(g, m.bias, shape, dtype, 0.0),
              g.tensor(m.running_mean), g.tensor(m.running_var)]
    return g.emit("BatchNormalization", inputs, epsilon=m.eps)


def layer_norm(g, m, x):
    g.need_opset(17, "LayerNormalization")
    dtype = g.dtype(x)
    inputs = [g.tensor(x), _ones_or(g, m.weight, m.normalized_shape, dtype, 1.0)]
    inputs += [] if m.bias is None else [g.tensor(m.bias)]
    return g.emit("LayerNormalization", inputs, axis=-len(m.normalized_shape), epsilon=m.eps,
                  stash_type=g.elem_type(dtype))


def _per_channel(g, param, rank: int):
    """A (C,) parameter reshaped to (C, 1, ...) so that it broadcasts over (N, C, *) of ``rank``."""
    return g.emit("Reshape", [g.tensor(param), g.ints([-1] + [1] * (rank - 2))])


def group_norm(g, m, x):
    """GroupNormalization from opset 21 (per-channel scale and bias); below, the groups as the
    channels of an InstanceNormalization of x reshaped to (N, G, -1), then the affine part."""
    dtype = g.dtype(x)
    if g.opset >= 21:
        c = (m.num_channels,)
        inputs = [g.tensor(x), _ones_or(g, m.weight, c, dtype, 1.0), _ones_or(g, m.bias, c, dtype, 0.0)]
        return g.emit("GroupNormalization", inputs, num_groups=m.num_groups, epsilon=m.eps)
    xn, groups = g.tensor(x), m.num_groups
    grouped = g.emit("Reshape", [xn, g.ints([0, groups, -1])])
    normed = g.emit("InstanceNormalization", [grouped, g.array(np.ones(groups, dtype)),
                                              g.array(np.zeros(groups, dtype))], epsilon=m.eps)
    y = g.emit("Reshape", [normed, g.emit("Shape", [xn])])
    if m.weight is None:
        return y
    rank = len(g.shape(x))
    return g.emit("Add", [g.emit("Mul", [y, _per_channel(g, m.weight, rank)]), _per_channel(g, m.bias, rank)])


def instance_norm(g, m, x):
    if len(g.shape(x)) != 4:
        raise ValueError(f"expected a batched (N, C, H, W) input, got shape {g.shape(x)}")
    dtype, c = g.dtype(x), (m.num_features,)
    inputs = [g.tensor(x), _ones_or(g, m.weight, c, dtype, 1.0), _ones_or(g, m.bias, c, dtype, 0.0)]
    return g.emit("InstanceNormalization", inputs, epsilon=m.eps)


def adaptive_avg_pool2d(g, m, x):
    """GlobalAveragePool for a 1x1 output, AveragePool when the bins tile the input (the identity
    when the sizes are equal, e.g. torchvision's VGG at 224x224), else PyTorch's bins exactly as
    two MatMuls with their averaging matrices (y = P_H x P_W^T; e.g. 1x1 -> 7x7 copies)."""
    (h, w), (oh, ow) = g.shape(x)[2:], g.out_shape()[2:]
    xn = g.tensor(x)
    if (oh, ow) == (1, 1):
        return g.emit("GlobalAveragePool", [xn])
    if (oh, ow) == (h, w):
        return xn
    if h % oh == 0 and w % ow == 0:
        kernel = [h // oh, w // ow]
        return g.emit("AveragePool", [xn], kernel_shape=kernel, strides=kernel)
    dtype = g.dtype(x)
    y = g.emit("MatMul", [xn, g.array(np.ascontiguousarray(_adaptive_bins(w, ow, dtype).T))])
    return g.emit("MatMul", [g.array(_adaptive_bins(h, oh, dtype)), y])


def _identity(g, m, x):
    return g.tensor(x)


MODULES = {
    nn.AdaptiveAvgPool2d: adaptive_avg_pool2d,
    nn.Conv2d: lambda g, m, x: conv2d(g, x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups),
    nn.Linear: lambda g, m, x: linear(g, x, m.weight, m.bias),
    nn.ReLU: lambda g, m, x: relu(g, x),
    nn.Sigmoid: lambda g, m, x: sigmoid(g, x),
    nn.Tanh: lambda g, m, x: tanh(g, x),
    nn.LeakyReLU: lambda g, m, x: leaky_relu(g, x, m.negative_slope),
    nn.ELU: lambda g, m, x: elu(g, x, m.alpha),
    nn.GELU: lambda g, m, x: gelu(g, x),
    nn.MaxPool2d: lambda g, m, x: max_pool2d(g, x, m.kernel_size, m.stride, m.padding),
    nn.AvgPool2d: lambda g, m, x: avg_pool2d(g, x, m.kernel_size, m.stride, m.padding),
    nn.GlobalAvgPool2d: lambda g, m, x: global_avg_pool2d(g, x),
    nn.Flatten: lambda g, m, x: flatten(g, x, m.start_dim, m.end_dim),
    nn.Dropout: _identity,
    nn.Sequential: _identity,  # a leaf only when empty
    nn.BatchNorm1d: batch_norm,
    nn.BatchNorm2d: batch_norm,
    nn.SyncBatchNorm: batch_norm,  # a plain batch norm in eval mode
    nn.LayerNorm: layer_norm,
    nn.GroupNorm: group_norm,
    nn.InstanceNorm2d: instance_norm,
}


def module_builder(m):
    """The builder of a leaf module: its class's, or the nearest base class's when the subclass
    keeps that class's forward (a subclass with a forward of its own computes something else)."""
    for cls in type(m).__mro__:
        build = MODULES.get(cls)
        if build is not None:
            if type(m).forward is not cls.forward:
                raise ValueError(f"it overrides {cls.__name__}.forward, so its computation has no known ONNX form")
            return build
    raise ValueError("the exporter knows no ONNX form for this layer type (export a model built from "
                     "gk.nn layers, gk.nn.functional ops and modules calling them)")
