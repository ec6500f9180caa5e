"""``lr_find``: the exponential learning-rate range test (Smith 2017; fastai's lr_find)."""
from __future__ import annotations

import math

import numpy as np

from .. import _random
from .._checks import integer, real
from ..optim.optimizer import check_optimizer_of
from . import _plot
from ._state import Snapshot

# Stop once the smoothed loss exceeds this multiple of the best one (divergence).
DIVERGE = 4.0
# Weight of the exponential moving average of the loss.
SMOOTHING = 0.98


class LRFinderResult:
    """What ``lr_find`` returns: ``.lrs``, ``.losses`` (smoothed, equal length), ``.raw_losses``,
    ``.suggestion``, ``.plot(path)``."""

    def __init__(self, lrs, losses, raw_losses, suggestion):
        self.lrs, self.losses, self.raw_losses, self.suggestion = lrs, losses, raw_losses, suggestion

    def plot(self, path):
        """Save loss against learning rate (log scale) with the suggestion marked as a PNG; returns path."""
        return _plot.lr_find(self, path)

    def __repr__(self):
        return f"LRFinderResult(suggestion={self.suggestion:.3g}, {len(self.lrs)} steps)"


def _suggest(lrs, losses, start_lr, end_lr):
    """The steepest descent of the smoothed loss against log(lr), before its minimum."""
    best = int(np.argmin(losses))
    if best < 2:
        return min(max(lrs[best] / 10, start_lr), end_lr)
    slope = np.gradient(np.asarray(losses[:best + 1]), np.log(np.asarray(lrs[:best + 1])))
    return float(min(max(lrs[int(np.argmin(slope))], start_lr), end_lr))


def lr_find(model, loss, optimizer, x, y, start_lr=1e-7, end_lr=10.0, num_iter=100, batch_size=64):
    """Train with a learning rate growing exponentially from start_lr to end_lr, then undo it all.

    Each step takes the next mini-batch of a shuffled pass over (x, y) (again from the start
    when exhausted), sets every param group's lr, and records the loss; the run stops early
    when the smoothed loss passes 4 times its minimum. The suggestion is the learning rate where
    the smoothed loss falls fastest (before its minimum), a common choice for the peak rate.

    The model (weights, gradients, buffers, mode, caches), the optimizer (state and lrs) and
    the random generator are restored bit for bit afterwards.

    Returns:
        An ``LRFinderResult``: ``.lrs``, ``.losses`` (lists of equal length), ``.suggestion``
        (within [start_lr, end_lr]), ``.plot(path)``.
    """
    from ..nn.module import Module

    if not isinstance(model, Module):
        raise TypeError(f"lr_find: model: expected a gk.nn.Module, got {type(model).__name__}")
    for name, a in (("x", x), ("y", y)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"lr_find: {name}: expected a numpy.ndarray, got {type(a).__name__}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"lr_find: x, y: expected the same number (>= 1) of samples, got {len(x)} and {len(y)}")
    start_lr = real("lr_find", "start_lr", start_lr, low=0, low_open=True)
    end_lr = real("lr_find", "end_lr", end_lr, low=0, low_open=True)
    if not start_lr < end_lr:
        raise ValueError(f"lr_find: start_lr, end_lr: expected start_lr < end_lr, got {start_lr} and {end_lr}")
    num_iter = integer("lr_find", "num_iter", num_iter, low=2)
    batch_size = integer("lr_find", "batch_size", batch_size, low=1)
    check_optimizer_of("lr_find", model, optimizer)
    lrs, losses, raw = [], [], []
    ratio = end_lr / start_lr
    log_start, log_span = math.log(start_lr), math.log(end_lr) - math.log(start_lr)  # when the ratio overflows
    with Snapshot(model, optimizer):
        model.train()
        order = _random.permutation(len(x))
        pos, avg, best = 0, 0.0, math.inf
        for i in range(num_iter):
            t = i / (num_iter - 1)
            lr = start_lr * ratio ** t if math.isfinite(ratio) or not t else math.exp(log_start + log_span * t)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if pos >= len(x):
                order, pos = _random.permutation(len(x)), 0
            idx = order[pos:pos + batch_size]
            pos += batch_size
            optimizer.zero_grad()
            value = float(loss.forward(model(x[idx]), y[idx]))
            if not math.isfinite(value):
                break
            model.backward(loss.backward())
            optimizer.step()
            avg = SMOOTHING * avg + (1 - SMOOTHING) * value
            smoothed = avg / (1 - SMOOTHING ** (i + 1))
            lrs.append(lr)
            raw.append(value)
            losses.append(smoothed)
            best = min(best, smoothed)
            if smoothed > DIVERGE * best:
                break
    if not lrs:
        raise FloatingPointError("lr_find: the loss was not finite at the first step (start_lr "
                                 f"{start_lr:g}); check the data and the model")
    return LRFinderResult(lrs, losses, raw, _suggest(lrs, losses, start_lr, end_lr))
