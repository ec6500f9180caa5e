"""The lecture's experiments on Fashion-MNIST, measured with gradkit's diagnostics.

Run: ``python examples/lecture_lab.py [--out runs/lab] [--scale 1.0] [--threads 2]``

Seven experiments, each one figure under ``--out`` plus ``summary.md``:
activation functions, preprocessing, initialization, learning rates, regularization,
optimizers and normalization. Small models on subsets keep the whole lab within about
5 minutes on 2 cores; ``--scale`` multiplies the number of images (e.g. 0.2 for a smoke run).
Validation always uses images held out from the training set; the test set is not used.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import gradkit as gk
from gradkit import nn

COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:gray"]


# -- data and helpers ------------------------------------------------------------------------
def load(scale):
    """Train / validation subsets (from the training images only), as float32 in [0, 1]."""
    (x, y), _ = gk.datasets.load_fashion_mnist()
    n_train, n_val = int(12000 * scale), int(3000 * scale)
    x = x.astype(np.float32) / 255.0
    return (x[:n_train], y[:n_train]), (x[-n_val:], y[-n_val:])


def standardize(x_train, *others):
    norm = gk.data.Standardize().fit(x_train)
    return [norm.transform(a) for a in (x_train,) + others]


def flat(x):
    return np.ascontiguousarray(x.reshape(len(x), -1))


def mlp(sizes, act=nn.ReLU, dropout=0.0, init=None):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        if init is not None:
            init(lin.weight)
            nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(act())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def fit(model, opt, train, val, epochs, batch_size=128, scheduler=None, callbacks=()):
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), opt, scheduler=scheduler, callbacks=list(callbacks))
    return trainer.fit(*train, epochs=epochs, batch_size=batch_size, validation_data=val, verbose=0).history


class BatchLosses(gk.callbacks.Callback):
    """The training loss of every batch (smoothed curves read better than per-epoch points)."""

    def __init__(self):
        super().__init__()
        self.losses = []
        self._last = 0.0

    def on_batch_end(self, batch, logs=None):
        # logs hold the running mean over the epoch so far; recover this batch's loss.
        n = batch + 1
        self.losses.append(logs["loss"] * n - self._last * (n - 1) if n > 1 else logs["loss"])
        self._last = logs["loss"]


def smooth(values, k=15):
    v = np.asarray(values, dtype=np.float64)
    if len(v) < k:
        return v
    return np.convolve(np.pad(v, (k // 2, k - 1 - k // 2), mode="edge"), np.ones(k) / k, mode="valid")


def figure(ncols, nrows=1, width=4.4, height=3.5):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def epochs_axis(ax, n):
    ax.set_xlabel("epoch")
    ax.set_xticks(range(1, n + 1, max(1, n // 8)))


def loss_and_accuracy_axes(row, epochs):
    """Titles, scales and legends of a (smoothed training loss, validation accuracy) pair of axes."""
    row[0].set_yscale("log")
    row[0].set_title("training loss (smoothed over 15 steps)")
    row[0].set_xlabel("epoch")
    row[1].set_title("validation accuracy")
    epochs_axis(row[1], epochs)
    for ax in row:
        ax.legend(fontsize=8)


# -- 1. activation functions -----------------------------------------------------------------
def activations(train, val, out, notes):
    """A 5-layer MLP with each nonlinearity, SGD at the same learning rate."""
    acts = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "ReLU": nn.ReLU, "leaky ReLU": lambda: nn.LeakyReLU(0.01)}
    epochs, results = 4, {}
    for name, act in acts.items():
        gk.manual_seed(0)
        model = mlp([784, 256, 256, 256, 256, 10], act=act)
        stats = gk.callbacks.ActivationStats()
        hist = fit(model, gk.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), train, val, epochs,
                   callbacks=[stats])
        results[name] = (hist, stats)
    fig, axes = figure(4, width=4.0)
    ax = axes[0][0]
    for (name, (hist, _)), c in zip(results.items(), COLORS):
        ax.plot(range(1, epochs + 1), hist["val_accuracy"], marker="o", color=c, label=name)
    ax.set_title("validation accuracy")
    epochs_axis(ax, epochs)
    ax.legend()
    for ax, key, title in ((axes[0][1], "grad_std", "std of the gradient reaching each layer\n(first epoch)"),
                           (axes[0][2], "saturated", "saturated outputs (within 0.01 of a bound)\nfirst epoch"),
                           (axes[0][3], "dead", "dead units (never > 0 in an epoch)\nlast epoch")):
        for (name, (_, stats)), c in zip(results.items(), COLORS):
            rec = stats.stats[0] if key != "dead" else stats.stats[-1]
            values = [rec[layer].get(key) for layer in rec]
            if all(v is not None for v in values):
                ax.plot(range(1, len(values) + 1), values, marker="o", color=c, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("hidden layer (input side first)")
        ax.set_xticks(range(1, 5))
        if key == "grad_std":
            ax.set_yscale("log")
        else:
            ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
    fig.suptitle("Activation functions: 5-layer MLP, SGD + momentum, lr 0.05")
    fig.savefig(os.path.join(out, "activations.png"), dpi=100)
    for name, (hist, stats) in results.items():
        first, last = stats.stats[0], stats.stats[-1]
        layers = list(first)
        grad_ratio = first[layers[0]]["grad_std"] / first[layers[-1]]["grad_std"]
        extra = ""
        if "saturated" in first[layers[0]]:
            extra = f", saturated {max(first[l]['saturated'] for l in layers):.0%} at most"
        if "dead" in last[layers[0]]:
            extra = f", dead units {max(last[l]['dead'] for l in layers):.0%} at most"
        notes.append(f"- {name}: validation accuracy {hist['val_accuracy'][-1]:.3f}; gradient std at the first "
                     f"hidden layer / last = {grad_ratio:.2g}{extra}.")


# -- 2. preprocessing ------------------------------------------------------------------------
def preprocessing(train, val, out, notes):
    (xr, y), (xv, yv) = (flat(train[0]) * 255.0, train[1]), (flat(val[0]) * 255.0, val[1])
    variants = {"raw (0..255)": (xr, xv)}
    zc = gk.data.ZeroCenter().fit(xr)
    variants["zero-centered"] = (zc.transform(xr), zc.transform(xv))
    st = gk.data.Standardize().fit(xr)
    variants["standardized"] = (st.transform(xr), st.transform(xv))
    pca = gk.data.PCAWhiten(eps=10.0).fit(xr)
    variants["PCA-whitened"] = (pca.transform(xr).astype(np.float32), pca.transform(xv).astype(np.float32))
    epochs = 5
    fig, axes = figure(2)
    for (name, (a, b)), c in zip(variants.items(), COLORS):
        gk.manual_seed(0)
        model = mlp([784, 128, 10])
        try:
            hist = fit(model, gk.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), (a, y), (b, yv), epochs)
            acc, loss = hist["val_accuracy"], hist["loss"]
            note = f"validation accuracy {acc[-1]:.3f}"
        except FloatingPointError:
            acc, loss = [np.nan] * epochs, [np.nan] * epochs
            note = "the loss became non-finite"
            name += ": diverged"
        axes[0][0].plot(range(1, epochs + 1), loss, marker="o", color=c, label=name)
        axes[0][1].plot(range(1, epochs + 1), acc, marker="o", color=c, label=name)
        notes.append(f"- {name}: {note}.")
    axes[0][0].set_yscale("log")
    axes[0][0].set_title("training loss")
    axes[0][1].set_title("validation accuracy")
    for ax in axes[0]:
        epochs_axis(ax, epochs)
        ax.legend()
    fig.suptitle("Preprocessing: the same MLP (784-128-10), SGD + momentum, lr 0.01")
    fig.savefig(os.path.join(out, "preprocessing.png"), dpi=100)


# -- 3. initialization -----------------------------------------------------------------------
def initialization(train, out, notes, readme_copy=None):
    x = flat(standardize(train[0][:512])[0])
    inits = {"small Gaussian (std 0.01)": lambda w: nn.init.normal_(w, std=0.01),
             "Xavier": nn.init.xavier_normal_,
             "He": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")}
    fig, axes = figure(2, width=5.2, height=3.8)
    for ax, (act_name, act) in zip(axes[0], (("tanh", nn.Tanh), ("ReLU", nn.ReLU))):
        for (name, init), c in zip(inits.items(), COLORS):
            gk.manual_seed(0)
            model = mlp([784] + [256] * 10 + [10], act=act, init=init)
            report = gk.diagnostics.propagation(model, x, train[1][:512], nn.CrossEntropyLoss())
            stds = [r["act_std"] for r in report.rows if r["type"] == type(act()).__name__]
            ax.plot(range(1, len(stds) + 1), stds, marker="o", color=c, label=name)
            notes.append(f"- {act_name}, {name}: activation std {stds[0]:.2g} at layer 1, {stds[-1]:.2g} at layer "
                         f"10. propagation: \"{report.verdict}\"")
        ax.set_yscale("log")
        ax.set_title(f"10 hidden layers of 256, {act_name}")
        ax.set_xlabel("hidden layer")
        ax.set_ylabel("std of the activations")
        ax.set_xticks(range(1, 11))
        ax.legend(fontsize=8)
    fig.suptitle("Initialization: how activations travel through a deep network (one batch, standardized input)")
    fig.savefig(os.path.join(out, "initialization.png"), dpi=100)
    if readme_copy:
        fig.savefig(readme_copy, dpi=80)


# -- 4. learning rates -----------------------------------------------------------------------
def learning_rates(train, val, out, notes):
    epochs, bs = 5, 128
    steps = epochs * -(-len(train[0]) // bs)
    gk.manual_seed(0)
    model = mlp([784, 256, 10])
    opt = gk.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    found = gk.diagnostics.lr_find(model, nn.CrossEntropyLoss(), opt, *train, start_lr=1e-5, end_lr=10.0)
    lr = found.suggestion
    runs = {
        f"constant {lr:.2g} (lr_find)": (lr, None),
        "step (x0.3 every 2 epochs)": (lr, lambda o: gk.optim.lr_scheduler.StepLR(o, 2, gamma=0.3)),
        "cosine": (lr, lambda o: gk.optim.lr_scheduler.CosineAnnealingLR(o, T_max=epochs)),
        "one-cycle": (lr, lambda o: gk.optim.lr_scheduler.OneCycleLR(o, max_lr=lr, total_steps=steps)),
        f"too high ({30 * lr:.2g})": (30 * lr, None),
        f"too low ({lr / 100:.2g})": (lr / 100, None),
    }
    fig, axes = figure(3, width=4.6)
    ax = axes[0][0]
    ax.plot(found.lrs, found.losses)
    ax.axvline(lr, color="tab:red", linestyle="--", label=f"suggestion {lr:.2g}")
    ax.set_xscale("log")
    ax.set_ylim(min(found.losses) * 0.9, min(max(found.losses), 3 * found.losses[0]))
    ax.set_xlabel("learning rate")
    ax.set_title("lr_find: loss while the lr grows")
    ax.legend()
    for (name, (rate, make)), c in zip(runs.items(), COLORS):
        gk.manual_seed(0)
        model = mlp([784, 256, 10])
        opt = gk.optim.SGD(model.parameters(), lr=rate, momentum=0.9)
        losses = BatchLosses()
        try:
            hist = fit(model, opt, train, val, epochs, bs, scheduler=make(opt) if make else None, callbacks=[losses])
            note = f"validation accuracy {hist['val_accuracy'][-1]:.3f}"
            curve = smooth(losses.losses)
        except FloatingPointError:
            note = f"the loss became non-finite after {len(losses.losses)} steps"
            curve = np.minimum(losses.losses, 9.0)
            name += ": diverged"
        t = np.arange(1, len(curve) + 1) / (steps / epochs)
        axes[0][1].plot(t, curve, color=c, label=name)
        if "diverged" in note:
            axes[0][1].plot(t[-1:], curve[-1:], marker="x", markersize=9, color=c)
        if losses.losses and "diverged" not in note:
            axes[0][2].plot(range(1, epochs + 1), hist["lr"], marker="o", color=c, label=name)
        notes.append(f"- {name}: {note}.")
    axes[0][1].set_yscale("log")
    axes[0][1].set_ylim(0.15, 10)
    axes[0][1].set_title("training loss (smoothed over 15 steps)")
    axes[0][1].set_xlabel("epoch")
    axes[0][1].legend(fontsize=7)
    axes[0][2].set_yscale("log")
    axes[0][2].set_title("learning rate at the end of each epoch")
    epochs_axis(axes[0][2], epochs)
    axes[0][2].legend(fontsize=7)
    fig.suptitle("Learning rates: MLP 784-256-10, SGD + momentum 0.9")
    fig.savefig(os.path.join(out, "learning_rates.png"), dpi=100)
    notes.insert(0, f"- lr_find suggests {lr:.3g} (steepest descent of the smoothed loss).")


# -- 5. regularization -----------------------------------------------------------------------
def regularization(train, val, out, notes):
    n = max(200, len(train[0]) // 12)
    small = (train[0][:n], train[1][:n])
    epochs = 30
    configs = {
        "none": dict(),
        "L2 (weight_decay 2e-2)": dict(weight_decay=2e-2),
        "L1 (l1 2e-3)": dict(l1=2e-3),
        "dropout 0.5": dict(dropout=0.5),
        "early stopping (patience 4)": dict(early=True),
    }
    fig, axes = figure(2, width=5.2)
    gaps = {}
    for (name, cfg), c in zip(configs.items(), COLORS):
        gk.manual_seed(0)
        model = mlp([784, 512, 512, 10], dropout=cfg.get("dropout", 0.0))
        opt = gk.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=cfg.get("weight_decay", 0.0),
                           l1=cfg.get("l1", 0.0))
        cbs = [gk.callbacks.EarlyStopping(patience=4, restore_best_weights=True)] if cfg.get("early") else []
        hist = fit(model, opt, small, val, epochs, batch_size=64, callbacks=cbs)
        e = range(1, len(hist["loss"]) + 1)
        axes[0][0].plot(e, hist["accuracy"], color=c, linestyle=":")
        axes[0][0].plot(e, hist["val_accuracy"], color=c, label=name)
        trainer_eval = gk.Trainer(model, nn.CrossEntropyLoss(), opt)
        tr, va = trainer_eval.evaluate(*small), trainer_eval.evaluate(*val)
        gaps[name] = (tr["accuracy"], va["accuracy"])
        notes.append(f"- {name}: train accuracy {tr['accuracy']:.3f}, validation {va['accuracy']:.3f} "
                     f"(gap {tr['accuracy'] - va['accuracy']:.3f}){'' if len(e) == epochs else f', stopped after {len(e)} epochs'}.")
    axes[0][0].set_title("accuracy: training (dotted) and validation (solid)")
    axes[0][0].set_xlabel("epoch")
    axes[0][0].legend(fontsize=8)
    ax = axes[0][1]
    names = list(gaps)
    pos = np.arange(len(names))
    ax.bar(pos - 0.2, [gaps[k][0] for k in names], 0.4, label="training", color="tab:gray")
    ax.bar(pos + 0.2, [gaps[k][1] for k in names], 0.4, label="validation", color=COLORS[:len(names)])
    ax.set_xticks(pos, [k.split(" (")[0] for k in names], fontsize=8)
    ax.set_ylim(0.6, 1.01)
    ax.set_title("final accuracy: the train/validation gap")
    ax.legend()
    fig.suptitle(f"Regularization: MLP 784-512-512-10 on {n} training images, SGD + momentum, lr 0.01")
    fig.savefig(os.path.join(out, "regularization.png"), dpi=100)


# -- 6. optimizers ---------------------------------------------------------------------------
def optimizers(train, val, out, notes):
    epochs = 4
    opts = {
        "SGD 0.05": lambda p: gk.optim.SGD(p, lr=0.05),
        "momentum 0.9": lambda p: gk.optim.SGD(p, lr=0.01, momentum=0.9),
        "Nesterov 0.9": lambda p: gk.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
        "Adagrad 0.01": lambda p: gk.optim.Adagrad(p, lr=0.01),
        "RMSprop 1e-3": lambda p: gk.optim.RMSprop(p, lr=1e-3),
        "Adam 1e-3": lambda p: gk.optim.Adam(p, lr=1e-3),
    }
    fig, axes = figure(2, width=5.2)
    for (name, make), c in zip(opts.items(), COLORS):
        gk.manual_seed(0)
        model = mlp([784, 256, 256, 10])
        losses = BatchLosses()
        hist = fit(model, make(model.parameters()), train, val, epochs, callbacks=[losses])
        steps_per_epoch = len(losses.losses) / epochs
        axes[0][0].plot(np.arange(1, len(losses.losses) + 1) / steps_per_epoch, smooth(losses.losses), color=c,
                        label=name)
        axes[0][1].plot(range(1, epochs + 1), hist["val_accuracy"], marker="o", color=c, label=name)
        notes.append(f"- {name}: final training loss {hist['loss'][-1]:.3f}, validation accuracy "
                     f"{hist['val_accuracy'][-1]:.3f}.")
    loss_and_accuracy_axes(axes[0], epochs)
    fig.suptitle("Optimizers: the same MLP (784-256-256-10), data and batches")
    fig.savefig(os.path.join(out, "optimizers.png"), dpi=100)


# -- 7. normalization ------------------------------------------------------------------------
def normalization(train, val, out, notes):
    n = max(500, len(train[0]) // 2)
    x, xv = standardize(train[0][:n, None], val[0][:, None])
    tr, va = (x, train[1][:n]), (xv, val[1])
    norms = {
        "none": lambda c, hw: None,
        "batch": lambda c, hw: nn.BatchNorm2d(c),
        "layer": lambda c, hw: nn.LayerNorm((c, hw, hw)),
        "group (4 groups)": lambda c, hw: nn.GroupNorm(4, c),
        "instance": lambda c, hw: nn.InstanceNorm2d(c, affine=True),
    }
    epochs = 3
    fig, axes = figure(2, width=5.2)
    for (name, make), c in zip(norms.items(), COLORS):
        gk.manual_seed(0)
        layers = []
        for cin, cout, hw in ((1, 16, 28), (16, 32, 14)):
            layers.append(nn.Conv2d(cin, cout, 3, padding=1))
            norm = make(cout, hw)
            if norm is not None:
                layers.append(norm)
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
        model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
        losses = BatchLosses()
        hist = fit(model, gk.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), tr, va, epochs,
                   callbacks=[losses])
        steps_per_epoch = len(losses.losses) / epochs
        axes[0][0].plot(np.arange(1, len(losses.losses) + 1) / steps_per_epoch, smooth(losses.losses), color=c,
                        label=name)
        axes[0][1].plot(range(1, epochs + 1), hist["val_accuracy"], marker="o", color=c, label=name)
        notes.append(f"- {name}: validation accuracy {hist['val_accuracy'][-1]:.3f}.")
    loss_and_accuracy_axes(axes[0], epochs)
    fig.suptitle(f"Normalization: a 2-conv CNN on {n} images, SGD + momentum, lr 0.05")
    fig.savefig(os.path.join(out, "normalization.png"), dpi=100)


SECTIONS = [
    ("Activation functions", "activations.png",
     "Sigmoid passes the smallest gradients back to the first layers (its derivative is at most 1/4 and "
     "its outputs are not zero-centered); tanh and the ReLU family keep them alive; some ReLU units die."),
    ("Preprocessing", "preprocessing.png",
     "Raw pixels (0..255) make the first layer's inputs large and all positive; centering and "
     "scaling make the same learning rate work."),
    ("Initialization", "initialization.png",
     "A small Gaussian (0.01) shrinks the activations layer after layer; Xavier keeps tanh alive and He "
     "keeps ReLU alive."),
    ("Learning rates", "learning_rates.png",
     "Too high diverges or stalls, too low crawls; schedules that decay the rate end lower."),
    ("Regularization", "regularization.png",
     "On a small training set the model memorises it; L2, L1, dropout and early stopping narrow the "
     "train/validation gap."),
    ("Optimizers", "optimizers.png", "Momentum and the adaptive methods get further in the same number of steps."),
    ("Normalization", "normalization.png", "Normalization layers let the same high learning rate train faster."),
]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join("runs", "lab"))
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the default number of images")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--readme-figure", default=None, help="also save the initialization figure here")
    p.add_argument("--only", nargs="*", default=None, metavar="SECTION",
                   help="run only these sections (first word, lower case: activation, preprocessing, ...)")
    args = p.parse_args(argv)
    if args.threads:
        gk.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    start, cpu_start, load_before = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    train, val = load(args.scale)
    st_train, st_val = standardize(flat(train[0]), flat(val[0]))
    std_train, std_val = (st_train, train[1]), (st_val, val[1])
    notes, timings = {}, {}
    runs = [
        ("Activation functions", lambda n: activations(std_train, std_val, args.out, n)),
        ("Preprocessing", lambda n: preprocessing(train, val, args.out, n)),
        ("Initialization", lambda n: initialization(train, args.out, n, args.readme_figure)),
        ("Learning rates", lambda n: learning_rates(std_train, std_val, args.out, n)),
        ("Regularization", lambda n: regularization(std_train, std_val, args.out, n)),
        ("Optimizers", lambda n: optimizers(std_train, std_val, args.out, n)),
        ("Normalization", lambda n: normalization(train, val, args.out, n)),
    ]
    if args.only:
        runs = [(title, run) for title, run in runs if title.split()[0].lower() in args.only]
    for title, run in runs:
        t = time.perf_counter()
        notes[title] = []
        run(notes[title])
        timings[title] = time.perf_counter() - t
        print(f"{title}: {timings[title]:.1f} s", flush=True)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    lines = ["# Lecture lab: results", "",
             f"Fashion-MNIST, {len(train[0])} training and {len(val[0])} validation images (held out from the "
             f"training set), {gk.get_num_threads()} threads ({gk._core.get_isa()}). Total {total:.0f} s "
             f"({cpu:.0f} s of CPU time); load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} "
             "at the end.", ""]
    for title, png, lesson in SECTIONS:
        if title not in timings:
            continue
        lines += [f"## {title} ({timings[title]:.0f} s)", "", f"![{title}]({png})", "", lesson, ""] + notes[title] + [""]
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {len(timings)} figures and summary.md to {args.out} in {total:.0f} s ({cpu:.0f} s of CPU time)")


if __name__ == "__main__":
    main()
