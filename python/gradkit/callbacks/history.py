"""``History``: what ``Trainer.fit`` returns (per-epoch metrics, learning rate, timings)."""
from __future__ import annotations

import os

from .._mpi import is_writer

__all__ = ["History"]

_PLOT_HINT = ("History.plot needs matplotlib, an optional extra of gradkit: "
              "pip install 'gradkit[plot]' (or pip install matplotlib)")


class History:
    """Per-epoch records of one ``fit`` call.

    Attributes:
        history: dict of lists, one value per epoch: "loss", each metric, the
            same with a "val_" prefix when validating, and "lr".
        epoch: the epoch numbers (0-based) the lists refer to.
        epoch_time: wall seconds per epoch (training + validation).
        train_time: wall seconds per epoch spent training (shuffle and steps only).
        params: fit's settings (epochs, batch_size, samples, ...).
    """

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.epoch_time = []
        self.train_time = []
        self.params = {}

    def append(self, epoch: int, logs: dict, seconds: float, train_seconds=None) -> None:
        """Record one epoch's logs (keys first seen late are padded with NaN before)."""
        n = len(self.epoch)
        for key, value in logs.items():
            self.history.setdefault(key, [float("nan")] * n).append(float(value))
        for key, values in self.history.items():
            if len(values) == n:
                values.append(float("nan"))
        self.epoch.append(int(epoch))
        self.epoch_time.append(float(seconds))
        self.train_time.append(float(seconds if train_seconds is None else train_seconds))

    def plot(self, path, metrics=None):
        """Save the loss and metric curves (training and validation) as a PNG.

        Args:
            path: output file (the format follows its extension; use .png).
            metrics (None): names to plot, default every non-"val_" entry
                except "lr" ("lr" gets its own panel when it changed).

        Returns:
            The path written. Raises ImportError with install instructions
            when matplotlib is missing.
        """
        if not is_writer():  # distributed: rank 0 writes the file
            return os.fspath(path)
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError:
            raise ImportError(_PLOT_HINT) from None
        if not self.epoch:
            raise ValueError("History.plot: nothing to plot (no epoch was recorded)")
        if metrics is None:
            metrics = [k for k in self.history if not k.startswith("val_") and k != "lr"]
            lrs = self.history.get("lr", [])
            if len(set(lrs)) > 1:
                metrics.append("lr")
        else:
            metrics = [metrics] if isinstance(metrics, str) else list(metrics)
            unknown = [m for m in metrics if m not in self.history]
            if unknown:
                raise ValueError(f"History.plot: metrics: {unknown} not recorded; available: {sorted(self.history)}")
        epochs = [e + 1 for e in self.epoch]
        fig = Figure(figsize=(4.5 * len(metrics), 3.6), layout="constrained")
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        for ax, name in zip(axes, metrics):
            ax.plot(epochs, self.history[name], marker="o", label="train" if name != "lr" else "lr")
            if "val_" + name in self.history:
                ax.plot(epochs, self.history["val_" + name], marker="o", label="validation")
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if name == "lr":
                ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            ax.legend()
        path = os.fspath(path)
        fig.savefig(path, dpi=100)
        return path

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"
