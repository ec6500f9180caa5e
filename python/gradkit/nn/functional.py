"""``gk.nn.functional``: the ops a forward calls between layers, each with its backward.

NumPy in, NumPy out, float32 or float64. Inside the forward of a derived-backward module (a
``Module`` subclass defining only ``forward``) each call is recorded, and that module's backward
replays it (nn/_record.py). Elsewhere an op just computes. Where an op takes an array it also
takes a ``Parameter`` (``F.linear(x, self.weight)``): its gradient is then ADDED to ``.grad``
(unless the parameter is frozen).
"""
from __future__ import annotations

import math

import numpy as np

from .. import _core, ops
from .._checks import boolean, integer, real
from ._record import Function, call_function
from .activation import _elu, _elu_backward, _leaky_relu, _leaky_relu_backward
from .parameter import Parameter

__all__ = ["add", "sub", "mul", "cat", "flatten", "relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh",
           "dropout", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "linear", "conv2d"]


# -- argument checks --------------------------------------------------------------------------------
def _array(x, op: str, name: str):
    """A float32/float64 ndarray or Parameter (returned as given)."""
    data = x.data if isinstance(x, Parameter) else x
    if not isinstance(data, np.ndarray):
        raise TypeError(f"{op}: {name}: expected a numpy.ndarray or gk.nn.Parameter, got {type(x).__name__}")
    if data.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: {name}: expected dtype float32 or float64, got {data.dtype}")
    return x


def _same_dtype(op: str, arrays, names) -> None:
    dtypes = [(a.data if isinstance(a, Parameter) else a).dtype for a in arrays]
    for name, dt in zip(names[1:], dtypes[1:]):
        if dt != dtypes[0]:
            raise TypeError(f"{op}: {name}: expected dtype {dtypes[0]} (that of {names[0]}), got {dt}")


def _shape(x):
    return (x.data if isinstance(x, Parameter) else x).shape


def _unbroadcast(g: np.ndarray, shape) -> np.ndarray:
    """Sum ``g`` over the axes NumPy broadcast to reach its shape from ``shape``."""
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


# -- element-wise joins -----------------------------------------------------------------------------------
class _Add(Function):
    name = "add"

    def backward(self, dys, want):
        return [self.to_input(i, want, lambda: dys[0]) for i in range(len(want))]


def add(*xs):
    """``xs[0] + xs[1] + ...`` for arrays of one shape and dtype (a residual join: ``F.add(out, identity)``)."""
    if not xs:
        raise TypeError("add: expected at least one array, got none")
    names = [f"xs[{i}]" for i in range(len(xs))]
    xs = [_array(x, "add", n) for x, n in zip(xs, names)]
    _same_dtype("add", xs, names)
    for name, x in zip(names[1:], xs[1:]):
        if _shape(x) != _shape(xs[0]):
            raise ValueError(f"add: {name}: expected shape {_shape(xs[0])} (that of xs[0]), got {_shape(x)}")

    def compute(fn, *d):
        out = d[0] + d[1] if len(d) > 1 else d[0].copy()
        for e in d[2:]:
            out += e
        return out
    return call_function(_Add, xs, {}, compute)


class _Sub(Function):
    name = "sub"

    def backward(self, dys, want):
        return [self.to_input(0, want, lambda: dys[0]), self.to_input(1, want, lambda: -dys[0])]


def sub(a, b):
    """``a - b`` for arrays of one shape and dtype."""
    a, b = _array(a, "sub", "a"), _array(b, "sub", "b")
    _same_dtype("sub", (a, b), ("a", "b"))
    if _shape(b) != _shape(a):
        raise ValueError(f"sub: b: expected shape {_shape(a)} (that of a), got {_shape(b)}")
    return call_function(_Sub, (a, b), {}, lambda fn, x, y: x - y)


class _Mul(Function):
    name = "mul"

    def backward(self, dys, want):
        a, b = self.saved
        dy = dys[0]
        return [self.to_input(0, want, lambda: dy * b),
                self.to_input(1, want, lambda: _unbroadcast(dy * a, b.shape))]


def mul(a, b):
    """``a * b``: of one shape, or ``b`` broadcast over ``a`` as NumPy does (e.g. a per-channel
    scale of shape (1, C, 1, 1)); the result has ``a``'s shape."""
    a, b = _array(a, "mul", "a"), _array(b, "mul", "b")
    _same_dtype("mul", (a, b), ("a", "b"))
    try:
        shape = np.broadcast_shapes(_shape(a), _shape(b))
    except ValueError:
        shape = None
    if shape != _shape(a):
        raise ValueError(f"mul: b: expected a shape that broadcasts to {_shape(a)} (that of a), got {_shape(b)}")

    def compute(fn, x, y):
        fn.saved = (x, y)
        return x * y
    return call_function(_Mul, (a, b), {}, compute)


class _Cat(Function):
    name = "cat"

    def backward(self, dys, want):
        dim, sizes = self.saved
        pieces = np.split(dys[0], np.cumsum(sizes)[:-1], axis=dim)
        return [self.to_input(i, want, lambda i=i: pieces[i]) for i in range(len(want))]


def cat(xs, dim: int = 1):
    """Concatenate arrays along ``dim`` (the channels by default); their other sizes must match."""
    if not isinstance(xs, (list, tuple)) or not xs:
        raise TypeError(f"cat: xs: expected a non-empty list or tuple of arrays, got {type(xs).__name__}")
    names = [f"xs[{i}]" for i in range(len(xs))]
    xs = [_array(x, "cat", n) for x, n in zip(xs, names)]
    _same_dtype("cat", xs, names)
    dim = integer("cat", "dim", dim)
    nd = len(_shape(xs[0]))
    if not -nd <= dim < nd:
        raise ValueError(f"cat: dim: expected a value in [{-nd}, {nd}) for {nd}-D arrays, got {dim}")
    dim %= nd
    ref = _shape(xs[0])
    for name, x in zip(names[1:], xs[1:]):
        s = _shape(x)
        if len(s) != nd or s[:dim] + s[dim + 1:] != ref[:dim] + ref[dim + 1:]:
            raise ValueError(f"cat: {name}: expected shape {ref[:dim] + ('*',) + ref[dim + 1:]} (that of xs[0] "
                             f"except along dim {dim}), got {s}")

    def compute(fn, *d):
        fn.saved = (dim, [e.shape[dim] for e in d])
        return np.concatenate(d, axis=dim)
    return call_function(_Cat, xs, {"dim": dim}, compute, trace_args=[list(xs)])


class _Flatten(Function):
    name = "flatten"

    def backward(self, dys, want):
        return [self.to_input(0, want, lambda: dys[0].reshape(self.saved))]


def flatten(x, start_dim: int = 1):
    """Merge the dimensions from ``start_dim`` on into one: (N, C, H, W) -> (N, C*H*W)."""
    x = _array(x, "flatten", "x")
    start_dim = integer("flatten", "start_dim", start_dim)
    shape = _shape(x)
    nd = len(shape)
    if not -nd <= start_dim < nd:
        raise ValueError(f"flatten: start_dim: expected a value in [{-nd}, {nd}) for a {nd}-D array, got {start_dim}")
    start = start_dim % nd
    out_shape = shape[:start] + (math.prod(shape[start:]),)

    def compute(fn, d):
        fn.saved = d.shape
        return d.reshape(out_shape)
    return call_function(_Flatten, (x,), {"start_dim": start_dim}, compute)


# -- activations -----------------------------------------------------------------------------------------
class _Activation(Function):
    """``y = forward(x, *extra)``; backward from y (``from_output``) or x."""

    def backward(self, dys, want):
        saved, extra = self.saved
        return [self.to_input(0, want, lambda: type(self).grad(dys[0], saved, *extra))]


def _activation(name, forward, backward, from_output):
    cls = type(f"_{name}", (_Activation,), {"name": name, "fwd": staticmethod(forward),
                                            "grad": staticmethod(backward), "from_output": from_output})
    cls.__qualname__ = cls.__name__  # a module-level class: instances (in a cache) pickle
    return cls


_Relu = _activation("relu", ops.relu, ops.relu_backward, True)
_Sigmoid = _activation("sigmoid", ops.sigmoid, ops.sigmoid_backward, True)
_Tanh = _activation("tanh", ops.tanh, ops.tanh_backward, True)
_Gelu = _activation("gelu", ops.gelu, ops.gelu_backward, False)
_LeakyRelu = _activation("leaky_relu", _leaky_relu, _leaky_relu_backward, False)  # slope checked at the call
_Elu = _activation("elu", _elu, _elu_backward, False)
globals().update({c.__name__: c for c in (_Relu, _Sigmoid, _Tanh, _Gelu, _LeakyRelu, _Elu)})


def _apply(cls, x, kwargs=None, extra=()):
    x = _array(x, cls.name, "x")

    def compute(fn, d):
        y = cls.fwd(d, *extra)
        fn.saved = (y if cls.from_output else d, extra)
        return y
    return call_function(cls, (x,), kwargs or {}, compute)


def relu(x):
    """``max(x, 0)``."""
    return _apply(_Relu, x)


def sigmoid(x):
    """``1 / (1 + exp(-x))``."""
    return _apply(_Sigmoid, x)


def tanh(x):
    """``tanh(x)``."""
    return _apply(_Tanh, x)


def gelu(x):
    """``x * Phi(x)`` (the erf form)."""
    return _apply(_Gelu, x)


def leaky_relu(x, negative_slope: float = 0.01):
    """``x`` where positive, ``negative_slope * x`` elsewhere."""
    slope = real("leaky_relu", "negative_slope", negative_slope)
    return _apply(_LeakyRelu, x, {"negative_slope": slope}, (slope,))


def elu(x, alpha: float = 1.0):
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere."""
    alpha = real("elu", "alpha", alpha)
    return _apply(_Elu, x, {"alpha": alpha}, (alpha,))


class _Dropout(Function):
    name = "dropout"

    def backward(self, dys, want):
        mask, p = self.saved
        return [self.to_input(0, want, lambda: dys[0] if mask is None else ops.dropout_backward(dys[0], mask, p))]


def dropout(x, p: float = 0.5, training: bool = True):
    """Inverted dropout (as ``nn.Dropout``): in training zero each element with probability ``p`` and
    scale the rest by ``1 / (1 - p)``; the identity when ``training`` is False or p = 0."""
    x = _array(x, "dropout", "x")
    p = ops._check_p("dropout", p)
    training = boolean("dropout", "training", training)

    def compute(fn, d):
        if not training or p == 0.0:
            fn.saved = (None, p)
            return d
        y, mask = ops.dropout(d, p)
        fn.saved = (mask, p)
        return y
    return call_function(_Dropout, (x,), {"p": p, "training": training}, compute)


# -- pooling ---------------------------------------------------------------------------------------------
class _MaxPool(Function):
    name = "max_pool2d"

    def backward(self, dys, want):
        idx, shape, args = self.saved
        return [self.to_input(0, want, lambda: _core.max_pool2d_backward(dys[0], idx, shape, *args))]


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max pooling over (N, C, H, W) (as ``nn.MaxPool2d``); stride defaults to kernel_size."""
    x = _array(x, "max_pool2d", "x")
    args = ops._pool_args("max_pool2d", kernel_size, stride, padding)  # checked once, here

    def compute(fn, d):
        y, idx = _core.max_pool2d_forward(d, *args)
        fn.saved = (idx, d.shape, args)
        return y
    return call_function(_MaxPool, (x,), {"kernel_size": kernel_size, "stride": stride, "padding": padding}, compute)


class _AvgPool(Function):
    name = "avg_pool2d"

    def backward(self, dys, want):
        shape, args = self.saved
        return [self.to_input(0, want, lambda: _core.avg_pool2d_backward(dys[0], shape, *args))]


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Average pooling over (N, C, H, W), padded zeros counted (as ``nn.AvgPool2d``)."""
    x = _array(x, "avg_pool2d", "x")
    args = ops._pool_args("avg_pool2d", kernel_size, stride, padding)  # checked once, here

    def compute(fn, d):
        fn.saved = (d.shape, args)
        return _core.avg_pool2d_forward(d, *args)
    return call_function(_AvgPool, (x,), {"kernel_size": kernel_size, "stride": stride, "padding": padding}, compute)


class _GlobalAvgPool(Function):
    name = "global_avg_pool2d"

    def backward(self, dys, want):
        return [self.to_input(0, want, lambda: ops.global_avg_pool2d_backward(dys[0], self.saved))]


def global_avg_pool2d(x):
    """Mean over H and W: (N, C, H, W) -> (N, C)."""
    x = _array(x, "global_avg_pool2d", "x")

    def compute(fn, d):
        fn.saved = d.shape
        return ops.global_avg_pool2d_forward(d)
    return call_function(_GlobalAvgPool, (x,), {}, compute)


# -- layers as functions -------------------------------------------------------------------------------
def _layer_arrays(op: str, x, weight, bias) -> list:
    """``[x, weight]`` (+ ``bias`` unless None), checked as arrays of one float dtype."""
    arrays = [_array(x, op, "x"), _array(weight, op, "weight")] + ([] if bias is None else [_array(bias, op, "bias")])
    _same_dtype(op, arrays, ["x", "weight", "bias"])
    return arrays


class _Linear(Function):
    name = "linear"

    def backward(self, dys, want):
        x2, w, out_shape = self.saved
        dy2 = dys[0].reshape(x2.shape[0], w.shape[0])
        grads = [self.to_input(0, want, lambda: ops.matmul(dy2, w).reshape(out_shape[:-1] + (w.shape[1],))),
                 self.to_input(1, want, lambda: ops.matmul(dy2, x2, trans_a=True),
                               add_into=lambda g: dy2.shape[0] and ops.matmul(dy2, x2, trans_a=True, out=g, beta=1.0))]
        if len(want) == 3:
            grads.append(self.to_input(2, want, lambda: dy2.sum(axis=0)))
        return grads


def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` (as ``nn.Linear``): x (*, in), weight (out, in), bias (out,) or None."""
    arrays = _layer_arrays("linear", x, weight, bias)
    ws = _shape(weight)
    if len(ws) != 2:
        raise ValueError(f"linear: weight: expected a 2-D array (out_features, in_features), got shape {ws}")
    xs = _shape(x)
    if len(xs) < 1 or xs[-1] != ws[1]:
        raise ValueError(f"linear: x: expected shape (*, {ws[1]}) (last dimension = weight's in_features), got {xs}")
    if bias is not None and _shape(bias) != (ws[0],):
        raise ValueError(f"linear: bias: expected shape ({ws[0]},), got {_shape(bias)}")

    def compute(fn, d, w, b=None):
        x2 = d.reshape(math.prod(d.shape[:-1]), w.shape[1])
        out_shape = d.shape[:-1] + (w.shape[0],)
        fn.saved = (x2, w, out_shape)
        return ops.matmul(x2, w, trans_b=True, bias=b).reshape(out_shape)
    return call_function(_Linear, arrays, {}, compute, trace_args=[x, weight, bias])


class _Conv2d(Function):
    name = "conv2d"

    def backward(self, dys, want):
        x, w, args = self.saved
        has_bias = len(want) == 3
        need = [self.needs(i, want) for i in range(len(want))]
        dweight = self.grad_buffer(1)
        dbias = self.grad_buffer(2) if has_bias else None
        dx, dw, db = _core.conv2d_backward(dys[0], x, w, *args, dweight=dweight, dbias=dbias, need_dx=need[0],
                                           need_dweight=need[1], need_dbias=has_bias and need[2])
        out = [dx if need[0] else None, None if dweight is not None else dw]
        if has_bias:
            out.append(None if dbias is not None else db)
        return out


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (as ``nn.Conv2d``): x (N, C, H, W), weight (OC, C/groups, KH, KW), bias (OC,) or None."""
    arrays = _layer_arrays("conv2d", x, weight, bias)
    args = ops._conv_args("conv2d", stride, padding, dilation, groups)  # checked once, here

    def compute(fn, d, w, b=None):
        fn.saved = (d, w, args)
        return _core.conv2d_forward(d, w, b, *args)
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return call_function(_Conv2d, arrays, kwargs, compute, trace_args=[x, weight, bias])
