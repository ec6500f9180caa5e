"""The diagnostics' figures (matplotlib, an optional dependency: ``pip install 'gradkit[plot]'``)."""
from __future__ import annotations

import math
import os

import numpy as np

_HINT = ("{who}: needs matplotlib, an optional extra of gradkit: "
         "pip install 'gradkit[plot]' (or pip install matplotlib)")


def _figure(who, figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(_HINT.format(who=who)) from None
    return Figure(figsize=figsize, layout="constrained")


def _save(fig, path):
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def activation_stats(cb, path):
    """One histogram-over-time panel per layer, then std, gradient std, dead and saturated fractions."""
    names = list(cb.stats[0])
    ncols = min(len(names), 4)
    nrows = -(-len(names) // ncols)
    fig = _figure("ActivationStats.plot", (14.0, 2.9 * nrows + 3.0))  # the install hint comes first
    from matplotlib.ticker import MaxNLocator

    top, bottom = fig.subfigures(2, 1, height_ratios=[2.9 * nrows, 3.0])
    x = np.arange(1, len(cb.stats) + 1)
    unit = "epoch" if cb.every_n_batches is None else f"recording (every {cb.every_n_batches} batches)"
    axes = np.atleast_1d(top.subplots(nrows, ncols, squeeze=False)).ravel()
    image = None
    for ax, name in zip(axes, names):
        hist = np.stack([s[name]["hist"] for s in cb.stats], axis=1).astype(np.float64)
        hist /= np.maximum(hist.sum(axis=0, keepdims=True), 1)
        edges = cb.edges[name]
        image = ax.imshow(np.log10(hist + 1e-6), origin="lower", aspect="auto", cmap="viridis", vmin=-4, vmax=0,
                          extent=(0.5, len(cb.stats) + 0.5, edges[0], edges[-1]), interpolation="nearest")
        ax.set_title(f"layer {name} ({cb.types.get(name, 'activation')})", fontsize=9)
        ax.set_xlabel(unit, fontsize=8)
        ax.set_ylabel("output value", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[len(names):]:
        ax.set_visible(False)
    top.colorbar(image, ax=axes[:len(names)].tolist(), label="log10 fraction of outputs", shrink=0.9)
    top.suptitle("Activation histograms over training", fontsize=10)
    panels = [("std", "output std", True), ("grad_std", "std of the incoming gradient", True),
              ("dead", "dead fraction (never > 0)", False), ("saturated", "saturated fraction", False)]
    for ax, (key, title, logy) in zip(bottom.subplots(1, 4), panels):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        drawn = False
        for name in names:
            values = [s[name].get(key) for s in cb.stats]
            if all(v is None for v in values):
                continue
            ax.plot(x, [math.nan if v is None else v for v in values], marker="o", markersize=3, label=name)
            drawn = True
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(unit, fontsize=8)
        if logy and drawn:
            ax.set_yscale("log")
        if not logy:
            ax.set_ylim(-0.02, 1.02)
        if drawn:
            ax.legend(fontsize=7, title="layer", title_fontsize=7)
        else:
            ax.text(0.5, 0.5, "no such layers", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def update_ratio(cb, path):
    fig = _figure("UpdateRatio.plot", (7.5, 4.2))
    ax = fig.add_subplot()
    for name, values in cb.ratios.items():
        if values:
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    ax.axhspan(cb.low, cb.high, color="tab:green", alpha=0.12, label=f"[{cb.low:g}, {cb.high:g}]")
    ax.axhline(1e-3, color="tab:green", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean ||update|| / ||weight|| per step")
    ax.set_title("update / weight ratio per parameter tensor")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def propagation(report, path):
    rows = report.rows
    fig = _figure("propagation report .plot", (max(6.0, 0.45 * len(rows) + 2), 4.2))
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    act = [r["act_std"] for r in rows]
    ax.plot(x, act, marker="o", label="activation std")
    if any(r["grad_std"] is not None for r in rows):
        ax.plot(x, [math.nan if r["grad_std"] is None else r["grad_std"] for r in rows], marker="s",
                label="gradient std")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{r['name']}\n{r['type']}" for r in rows], fontsize=7, rotation=90)
    ax.set_ylabel("std over the batch")
    ax.set_title(report.verdict if len(report.verdict) < 90 else report.verdict[:87] + "...", fontsize=8)
    ax.legend()
    return _save(fig, path)


def lr_find(result, path):
    fig = _figure("lr_find result .plot", (6.0, 4.0))
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, label="loss (smoothed)")
    ax.axvline(result.suggestion, color="tab:red", linestyle="--", label=f"suggestion {result.suggestion:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.legend()
    return _save(fig, path)
