"""Training-epoch time, gradkit vs PyTorch, for the shared/PERF.md Fashion-MNIST models.

Both train the same architecture from the same weights with Adam (lr 1e-3),
batch 128, cross-entropy, on 2 threads, with a fresh shuffle every epoch; the
PyTorch loop is the plain idiomatic one (index a tensor by a permutation,
slice batches), so neither side pays a DataLoader.

pytest (part of ``python -m pytest benchmarks --benchmark-only``): one timed
pass over GRADKIT_BENCH_EPOCH_SAMPLES images (default 6400 = 50 steps) per
round; the closing table prints the torch/gradkit ratio (target >= 2.5, i.e.
gradkit's epoch at most 0.4x PyTorch's).

Script: ``python benchmarks/bench_epoch.py [--model cnn|mlp] [--samples 60000] [--epochs 2]``
times whole epochs side by side (alternating) and prints seconds per epoch and the ratio.
"""
from __future__ import annotations

import baseline_isa  # noqa: F401  (first: holds NumPy and PyTorch to GRADKIT_ISA)
import argparse
import os
import time

import numpy as np
import pytest

import gradkit as gk
from gradkit.examples.fashion_mnist import MODELS

BATCH = 128
SAMPLES = int(os.environ.get("GRADKIT_BENCH_EPOCH_SAMPLES", "6400"))


def synthetic(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, size=n).astype(np.int64)


def torch_model(kind):
    import torch.nn as tnn

    if kind == "cnn":
        return tnn.Sequential(
            tnn.Conv2d(1, 32, 3, padding=1), tnn.BatchNorm2d(32), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(32, 64, 3, padding=1), tnn.BatchNorm2d(64), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Flatten(), tnn.Linear(3136, 128), tnn.ReLU(), tnn.Dropout(0.3), tnn.Linear(128, 10))
    return tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 512), tnn.ReLU(), tnn.Dropout(0.2),
                          tnn.Linear(512, 256), tnn.ReLU(), tnn.Dropout(0.2), tnn.Linear(256, 10))


def copy_weights(gk_model, t_model):
    """Start both from the same numbers (the layouts match PyTorch's, no transposes)."""
    import torch

    state = {k: torch.from_numpy(np.array(v)) for k, v in gk_model.state_dict().items()}
    t_state = t_model.state_dict()
    for k in state:
        if k in t_state and t_state[k].shape == state[k].shape:
            t_state[k] = state[k].to(t_state[k].dtype)
    t_model.load_state_dict(t_state)


def gradkit_runner(kind, x, y):
    gk.manual_seed(0)
    model = MODELS[kind]()
    trainer = gk.Trainer(model, gk.nn.CrossEntropyLoss(), gk.optim.Adam(model.parameters(), lr=1e-3))

    def epoch():
        trainer.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)

    return model, epoch


def torch_runner(kind, x, y, like=None):
    import torch

    torch.manual_seed(0)
    model = torch_model(kind)
    if like is not None:
        copy_weights(like, model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    n = len(xt)

    def epoch():
        model.train()
        perm = torch.randperm(n)
        xs, ys = xt[perm], yt[perm]
        for lo in range(0, n, BATCH):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xs[lo:lo + BATCH]), ys[lo:lo + BATCH])
            loss.backward()
            opt.step()

    return model, epoch


@pytest.fixture(scope="module")
def data():
    return synthetic(SAMPLES)


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_epoch_gradkit(benchmark, data, kind):
    _, epoch = gradkit_runner(kind, *data)
    benchmark.group = f"{kind} train {SAMPLES} imgs b{BATCH}"
    benchmark.extra_info["impl"] = "gradkit"
    benchmark.pedantic(epoch, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_epoch_torch(benchmark, needs_torch, data, kind):
    _, epoch = torch_runner(kind, *data)
    benchmark.group = f"{kind} train {SAMPLES} imgs b{BATCH}"
    benchmark.extra_info["impl"] = "torch"
    benchmark.pedantic(epoch, rounds=3, iterations=1, warmup_rounds=1)


def main(argv=None):
    p = argparse.ArgumentParser(description="Seconds per training epoch, gradkit vs PyTorch (2 threads).")
    p.add_argument("--model", choices=sorted(MODELS), default="cnn")
    p.add_argument("--samples", type=int, default=60000)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per library (alternating)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    gk.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    x, y = synthetic(args.samples)
    gk_model, gk_epoch = gradkit_runner(args.model, x, y)
    _, t_epoch = torch_runner(args.model, x, y, like=gk_model)
    times = {"gradkit": [], "torch": []}
    with threadpool_limits(limits=args.threads):
        for _ in range(args.epochs):
            for name, fn in (("gradkit", gk_epoch), ("torch", t_epoch)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
                print(f"{name:8s} epoch {len(times[name])}: {times[name][-1]:7.2f} s", flush=True)
    g, t = min(times["gradkit"]), min(times["torch"])  # the best epoch: the least disturbed by other load
    print(baseline_isa.describe())
    print(f"{args.model}, {args.samples} images, batch {BATCH}, {args.threads} threads: "
          f"gradkit {g:.2f} s/epoch, torch {t:.2f} s/epoch, gradkit/torch = {g / t:.2f}x "
          f"(torch/gradkit = {t / g:.2f}x; target gradkit <= 0.4x torch)")
    return times


if __name__ == "__main__":
    main()
