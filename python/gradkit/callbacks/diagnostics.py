"""``ActivationStats`` and ``UpdateRatio``: the training diagnostics (``gk.diagnostics``) as Trainer callbacks."""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from .._checks import integer, real
from ..diagnostics import _plot, _stats
from .base import Callback

__all__ = ["ActivationStats", "UpdateRatio"]


class ActivationStats(Callback):
    """Statistics of every activation layer's outputs during training, computed in C++.

    Every ``sample_every``-th training batch (the first of each period included) adds each
    activation layer's output (ReLUs fused with a preceding BatchNorm2d, Linear or Conv2d
    included) and the gradient arriving there to running sums; validation passes are not
    counted. One recording is made per epoch, or every ``every_n_batches`` batches, from the
    batches measured in that period.

    Args:
        every_n_batches (None): record every this many batches instead of once per epoch.
        sample_every (8): measure one batch in this many (1: every batch). One measured batch of
            the quickstart CNN costs about a quarter of a training step (one more pass over each
            activation and gradient), so the default keeps the epoch within a few percent.
        bins (40): histogram bins, over a fixed range per layer type: sigmoid (0, 1), tanh (-1, 1),
            ReLU (0, 4), other ReLU-like layers (-1, 4); values outside count in the end bins.

    Attributes:
        stats: one dict per recording: layer name (as in ``named_modules``) -> {"mean", "std",
            "hist" (counts per bin), "grad_std" (std of the gradient w.r.t. the output; None if no
            backward ran), "saturated" (sigmoid, tanh: fraction of outputs within 0.01 of a bound),
            "dead" (ReLU-like: fraction of units, or channels for NCHW, never positive in the
            batches measured in the period)}.
        edges: layer name -> the histogram's bin edges.
        steps: the number of batches seen at each recording.
    """

    def __init__(self, every_n_batches=None, bins=_stats.DEFAULT_BINS, sample_every=8):
        super().__init__()
        self.every_n_batches = (None if every_n_batches is None
                                else integer("ActivationStats", "every_n_batches", every_n_batches, 1))
        self.bins = integer("ActivationStats", "bins", bins, 1)
        self.sample_every = integer("ActivationStats", "sample_every", sample_every, 1)
        self.stats, self.steps, self.edges, self.types = [], [], {}, {}
        self._layers, self._model, self._recorder, self._seen, self._pending = {}, None, None, 0, 0

    def on_train_begin(self, logs=None):
        self.stats, self.steps, self._seen, self._pending = [], [], 0, 0
        self._model = self.model
        self._layers, self._recorder = _stats.install(self.model, self.bins)
        self.edges = {name: acc.edges for name, acc in self._layers.items()}
        self.types = {name: acc.type_name for name, acc in self._layers.items()}

    def _record(self):
        self.stats.append({name: acc.summary() for name, acc in self._layers.items()})
        self.steps.append(self._seen)
        for acc in self._layers.values():
            acc.reset()
        self._pending = 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.every_n_batches is None:
            self._pending = 0

    def on_batch_begin(self, batch, logs=None):
        self._recorder.active = self._pending % self.sample_every == 0

    def on_batch_end(self, batch, logs=None):
        self._seen += 1
        self._pending += 1
        if self.every_n_batches is not None and self._pending == self.every_n_batches:
            self._record()

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_batches is None:
            self._record()

    def on_train_end(self, logs=None):
        self.detach()

    def detach(self):
        """Unhook the model's layers (``on_train_end`` does it; call it after an interrupted fit)."""
        if self._model is not None:
            _stats.uninstall(self._model)
            self._model = None

    def plot(self, path):
        """Save per-layer histograms over time (bins against recordings, log colour) and the
        dead / saturated fractions and standard deviations per recording as a PNG; returns path."""
        if not self.stats:
            raise ValueError("ActivationStats.plot: nothing to plot (no recording was made; train first)")
        if not self.stats[0]:
            raise ValueError("ActivationStats.plot: nothing to plot: the model has no activation layers "
                             "(ReLU, Tanh, Sigmoid, GELU, ...) to record")
        return _plot.activation_stats(self, path)


class UpdateRatio(Callback):
    """||applied update|| / ||weight|| per parameter tensor and step, averaged per epoch.

    The update is the change the optimizer actually made (any optimizer, learning rate,
    momentum and weight decay included), measured by comparing the weights before and after
    each step; norms are summed in double in C++. The rule of thumb is about 1e-3: much lower and
    the tensor barely learns, much higher and it is unstable.

    Args:
        low (1e-4), high (1e-2): ``flagged()`` reports tensors whose last epoch's mean ratio falls
            outside [low, high].

    Attributes:
        ratios: parameter name -> list of per-epoch mean ratios (steps where the weight norm was
            zero are left out of the mean; NaN if every step was). Parameters frozen
            (``requires_grad=False``) when training begins are left out: their update is zero.
    """

    def __init__(self, low=1e-4, high=1e-2):
        super().__init__()
        # Both types first, then the bounds together (a NaN bound is refused there, naming both).
        low, high = (value if isinstance(value, (float, np.floating)) and math.isnan(value)
                     else real("UpdateRatio", name, value, finite=False)
                     for name, value in (("low", low), ("high", high)))
        if not (0 < low < high < math.inf):
            raise ValueError(f"UpdateRatio: low, high: expected 0 < low < high, got {low!r}, {high!r}")
        self.low, self.high = float(low), float(high)
        self.ratios = {}
        self._params, self._before, self._sums, self._steps = [], [], None, None

    def on_train_begin(self, logs=None):
        self.ratios = {}
        self._params = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]
        self._before = [np.empty_like(p.data) for _, p in self._params]
        for name, _ in self._params:
            self.ratios[name] = []
        self._reset()

    def _reset(self):
        self._sums = np.zeros(len(self._params))
        self._steps = np.zeros(len(self._params), np.int64)

    def on_batch_begin(self, batch, logs=None):
        for (_, p), before in zip(self._params, self._before):
            np.copyto(before, p.data)

    def on_batch_end(self, batch, logs=None):
        counts = np.zeros(1, np.int64)
        for i, ((_, p), before) in enumerate(zip(self._params, self._before)):
            weight, update = np.zeros(2), np.zeros(2)
            _core.activation_stats(before.reshape(-1), weight, counts)
            np.subtract(p.data, before, out=before)
            _core.activation_stats(before.reshape(-1), update, counts)
            if weight[1] > 0:
                self._sums[i] += math.sqrt(update[1] / weight[1])
                self._steps[i] += 1

    def on_epoch_end(self, epoch, logs=None):
        for i, (name, _) in enumerate(self._params):
            self.ratios[name].append(float(self._sums[i] / self._steps[i]) if self._steps[i] else math.nan)
        self._reset()

    def flagged(self) -> dict:
        """{name: "too small" or "too large"} for tensors whose last mean ratio is outside [low, high]."""
        out = {}
        for name, values in self.ratios.items():
            if values and not math.isnan(values[-1]):
                if values[-1] < self.low:
                    out[name] = "too small"
                elif values[-1] > self.high:
                    out[name] = "too large"
        return out

    def plot(self, path):
        """Save the per-epoch ratios of every tensor (log scale) with the 1e-3 band as a PNG; returns path."""
        if not any(self.ratios.values()):
            raise ValueError("UpdateRatio.plot: nothing to plot (no epoch was recorded; train first)")
        return _plot.update_ratio(self, path)
