"""Weight initialization, in place on a Parameter or a float array (PyTorch's formulas).

Every draw comes from the library generator, so ``gk.manual_seed`` makes it reproducible.
Each function returns its argument.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from .._checks import real
from .parameter import Parameter, _FLOAT_DTYPES

__all__ = [
    "calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_", "xavier_uniform_", "xavier_normal_",
    "kaiming_uniform_", "kaiming_normal_",
]


def _array(t, fn: str) -> np.ndarray:
    """The array to fill: ``t.data`` for a Parameter, ``t`` itself for a writeable float ndarray."""
    arr = t.data if isinstance(t, Parameter) else t
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{fn}: tensor: expected a gk.nn.Parameter or numpy.ndarray, got {type(t).__name__}")
    if arr.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: tensor: expected dtype float32 or float64, got {arr.dtype}")
    if not arr.flags.writeable:
        raise ValueError(f"{fn}: tensor: expected a writeable array, got a read-only one")
    return arr


def _fill(arr: np.ndarray, draw) -> None:
    if arr.flags.c_contiguous:
        draw(arr)
    else:  # the generator fills contiguous buffers
        tmp = np.empty(arr.shape, dtype=arr.dtype)
        draw(tmp)
        arr[...] = tmp


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for an activation (PyTorch's table).

    linear, conv*, sigmoid: 1; tanh: 5/3; relu: sqrt(2); leaky_relu: sqrt(2 / (1 + slope^2))
    with slope = ``param`` (default 0.01); selu: 3/4.
    """
    linear_fns = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else real("calculate_gain", "param", param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"calculate_gain: nonlinearity: expected one of {', '.join(linear_fns)}, sigmoid, tanh, relu, "
                     f"leaky_relu, selu; got {nonlinearity!r}")


def _fans(arr: np.ndarray, fn: str):
    """(fan_in, fan_out): shape[1] * receptive field and shape[0] * receptive field.

    A conv weight (out, in/groups, kh, kw) has fan_in = in/groups * kh * kw.
    """
    if arr.ndim < 2:
        raise ValueError(f"{fn}: tensor: expected at least 2 dimensions to compute fan in and fan out, "
                         f"got shape {arr.shape}")
    receptive = math.prod(arr.shape[2:])
    return arr.shape[1] * receptive, arr.shape[0] * receptive


def _fan(arr: np.ndarray, mode: str, fn: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{fn}: mode: expected 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(arr, fn)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a: float = 0.0, b: float = 1.0):
    """Fill with U(a, b)."""
    arr = _array(tensor, "uniform_")
    a, b = real("uniform_", "a", a), real("uniform_", "b", b)
    if a > b:
        raise ValueError(f"uniform_: b: expected b >= a = {a}, got {b}")
    _fill(arr, lambda out: _core.rng_uniform(out, a, b))
    return tensor


def normal_(tensor, mean: float = 0.0, std: float = 0.01):
    """Fill with N(mean, std^2); the default is the small Gaussian N(0, 0.01^2)."""
    arr = _array(tensor, "normal_")
    mean, std = real("normal_", "mean", mean), real("normal_", "std", std)
    if std < 0:
        raise ValueError(f"normal_: std: expected a value >= 0, got {std}")
    _fill(arr, lambda out: _core.rng_normal(out, mean, std))
    return tensor


def constant_(tensor, val: float):
    """Fill with ``val``."""
    arr = _array(tensor, "constant_")
    arr.fill(real("constant_", "val", val))
    return tensor


def zeros_(tensor):
    """Fill with 0."""
    _array(tensor, "zeros_").fill(0)
    return tensor


def ones_(tensor):
    """Fill with 1."""
    _array(tensor, "ones_").fill(1)
    return tensor


def _scaled_(tensor, fn: str, std_of, uniform: bool):
    """Fill with N(0, std^2), or with U(-sqrt(3) std, sqrt(3) std) (the same variance), std = std_of(array)."""
    arr = _array(tensor, fn)
    if arr.size == 0:  # PyTorch skips empty tensors (their fan may be 0)
        _fans(arr, fn)
        return tensor
    std = std_of(arr)
    if uniform:
        return uniform_(tensor, -math.sqrt(3.0) * std, math.sqrt(3.0) * std)
    return normal_(tensor, 0.0, std)


def _xavier_std(gain, fn):
    gain = real(fn, "gain", gain)
    return lambda arr: gain * math.sqrt(2.0 / sum(_fans(arr, fn)))


def _kaiming_std(a, mode, nonlinearity, fn):
    gain = calculate_gain(nonlinearity, a)
    return lambda arr: gain / math.sqrt(_fan(arr, mode, fn))


def xavier_uniform_(tensor, gain: float = 1.0):
    """Glorot: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    return _scaled_(tensor, "xavier_uniform_", _xavier_std(gain, "xavier_uniform_"), uniform=True)


def xavier_normal_(tensor, gain: float = 1.0):
    """Glorot: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    return _scaled_(tensor, "xavier_normal_", _xavier_std(gain, "xavier_normal_"), uniform=False)


def kaiming_uniform_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """He: U(-bound, bound) with bound = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a)."""
    return _scaled_(tensor, "kaiming_uniform_", _kaiming_std(a, mode, nonlinearity, "kaiming_uniform_"), uniform=True)


def kaiming_normal_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """He: N(0, std^2) with std = gain / sqrt(fan), gain = calculate_gain(nonlinearity, a)."""
    return _scaled_(tensor, "kaiming_normal_", _kaiming_std(a, mode, nonlinearity, "kaiming_normal_"), uniform=False)
