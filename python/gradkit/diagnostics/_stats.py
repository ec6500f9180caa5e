"""Per-layer activation statistics accumulated by the C++ one-pass kernel (``_core.activation_stats``).

An ``Accumulator`` sums, over any number of tensors (the batches of a recording period), the
moments of the activations and of the gradients arriving at them, a histogram over fixed bins,
the saturated count (sigmoid, tanh) and the channels that were ever positive (ReLU-like layers).
``Recorder`` is the hook the activation layers and fused runs call (``_stats_hook``).
"""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from .._config import is_grad_enabled
from ..nn.activation import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Tanh, _Activation

#: Outputs within this distance of a bound of sigmoid or tanh count as saturated.
SATURATION_MARGIN = 0.01
#: Bins of the fixed histogram of every activation layer.
DEFAULT_BINS = 40

# Layer type -> (histogram range, saturation bounds or None, ReLU-like).
_KINDS = {
    Sigmoid: ((0.0, 1.0), (0.0, 1.0), False),
    Tanh: ((-1.0, 1.0), (-1.0, 1.0), False),
    ReLU: ((0.0, 4.0), None, True),
    LeakyReLU: ((-1.0, 4.0), None, True),
    ELU: ((-1.0, 4.0), None, True),
    GELU: ((-1.0, 4.0), None, True),
}


def layer_kind(module):
    """(histogram range, saturation bounds or None, relu_like) of an activation layer, or None."""
    for cls in type(module).__mro__:
        if cls in _KINDS:
            return _KINDS[cls]
    if isinstance(module, _Activation):
        return (-4.0, 4.0), None, False
    return None


def _moments_std(moments, n):
    if n == 0:
        return math.nan, math.nan
    mean = float(moments[0]) / n  # Python floats: inf - inf is NaN without a warning (overflowed layers)
    var = float(moments[1]) / n - mean * mean
    return mean, (math.sqrt(max(var, 0.0)) if not math.isnan(var) else math.nan)


class Accumulator:
    """Statistics of one layer's outputs (and incoming gradients) over a period.

    Args:
        kind: ``layer_kind(module)``, or None for a layer that is not an activation
            (then only moments, a histogram over (-4, 4) and dead channels are kept).
        bins: number of histogram bins.
    """

    def __init__(self, kind=None, bins=DEFAULT_BINS):
        (self.lo, self.hi), bounds, self.relu_like = kind if kind is not None else ((-4.0, 4.0), None, True)
        if bounds is None:
            self.sat_lo, self.sat_hi = -math.inf, math.inf
        else:
            self.sat_lo, self.sat_hi = bounds[0] + SATURATION_MARGIN, bounds[1] - SATURATION_MARGIN
        self.saturating = bounds is not None
        self.edges = np.linspace(self.lo, self.hi, bins + 1)
        self.bins = bins
        self.reset()

    def reset(self):
        self.moments = np.zeros(2)
        self.counts = np.zeros(self.bins + 1, np.int64)
        self.positive = None
        self.n = 0
        self.grad_moments = np.zeros(2)
        self.grad_n = 0
        self._grad_counts = np.zeros(1, np.int64)

    def add(self, y, scale=None, shift=None, relu=False):
        """Add a tensor of outputs (N, C, ...) (or max(scale * x + shift, 0) per channel)."""
        channels = y.shape[1] if y.ndim >= 2 else 1
        if self.positive is None or len(self.positive) != channels:
            self.positive = np.zeros(channels, np.uint8)
        _core.activation_stats(y, self.moments, self.counts, self.positive, scale, shift, relu,
                               self.lo, self.hi, self.sat_lo, self.sat_hi)
        self.n += y.size

    def add_grad(self, dy, count=None):
        """Add a gradient tensor; ``count`` elements in all (default dy.size; a max-pool's input
        gradient has as many values as dy, the rest being zeros)."""
        _core.activation_stats(dy, self.grad_moments, self._grad_counts)
        self.grad_n += dy.size if count is None else count

    def summary(self) -> dict:
        """{"mean", "std", "hist", "grad_std"} and "saturated" / "dead" where they apply."""
        mean, std = _moments_std(self.moments, self.n)
        out = {"mean": mean, "std": std, "hist": self.counts[:-1].copy()}
        if self.saturating:
            out["saturated"] = float(self.counts[-1]) / self.n if self.n else math.nan
        if self.relu_like:
            out["dead"] = (float(np.count_nonzero(self.positive == 0)) / len(self.positive)
                           if self.positive is not None and len(self.positive) else math.nan)
        out["grad_std"] = _moments_std(self.grad_moments, self.grad_n)[1] if self.grad_n else None
        return out


class Recorder:
    """The ``_stats_hook`` of activation layers: adds training passes (not ``no_grad`` ones) to
    each layer's Accumulator while ``active``."""

    def __init__(self, accumulators):
        self.accumulators = accumulators  # id(module) -> Accumulator
        self.active = True

    def forward(self, module, y):
        if self.active and is_grad_enabled():
            self.accumulators[id(module)].add(y)

    def forward_batch_norm_relu(self, module, x, mean, rstd, weight, bias):
        """The ReLU after a fused BatchNorm2d: measures max(w * (x - mean) * rstd + b, 0)."""
        if self.active and is_grad_enabled():
            scale = rstd if weight is None else rstd * weight
            shift = -mean * scale if bias is None else bias - mean * scale
            self.accumulators[id(module)].add(x, scale, shift, relu=True)

    def backward(self, module, dy):
        if self.active:
            self.accumulators[id(module)].add_grad(dy)

    def backward_pooled(self, module, dy, count):
        if self.active:
            self.accumulators[id(module)].add_grad(dy, count)


def install(model, bins=DEFAULT_BINS):
    """Hook every activation layer of ``model``; returns ({layer name: Accumulator}, the Recorder)."""
    named, accumulators = {}, {}
    for name, m in model.named_modules():
        kind = layer_kind(m)
        if kind is None or not isinstance(m, _Activation):
            continue
        acc = Accumulator(kind, bins)
        acc.type_name = type(m).__name__
        named[name or type(m).__name__] = acc
        accumulators[id(m)] = acc
    recorder = Recorder(accumulators)
    for m in model.modules():
        if id(m) in accumulators:
            object.__setattr__(m, "_stats_hook", recorder)
    return named, recorder


def uninstall(model):
    for m in model.modules():
        if "_stats_hook" in m.__dict__:
            del m.__dict__["_stats_hook"]
