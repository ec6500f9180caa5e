"""One training step (forward, backward, Adam) of the MLP 784-256-128-10 and of the
shared/PERF.md CNN at batch 128: gradkit vs pure NumPy (numpy_models.py) vs PyTorch.

Run: PYTHONPATH=python python -m pytest benchmarks/bench_train_step.py --benchmark-only
All three start from the same weights and see the same batch.

On a shared, loaded machine, also run it as a script: the three implementations then take
turns step by step, so the load hits them alike (min and median per implementation):
    PYTHONPATH=python python benchmarks/bench_train_step.py --threads 1 --rounds 20
"""
import os
import sys

import numpy as np
import pytest

import gradkit as gk

sys.path.insert(0, os.path.dirname(__file__))
import numpy_models as nm  # noqa: E402

BATCH = 128
MLP_GROUP = "train step: MLP 784-256-128-10, Adam, batch 128"
CNN_GROUP = "train step: PERF.md CNN (28x28), Adam, batch 128"


def _needs(*names):
    """Skip (saying what is missing) unless gradkit has every name: "ReLU" in gk.nn, "optim.Adam" in gk."""
    def has(name):
        owner, _, attr = name.rpartition(".")
        return hasattr(getattr(gk, owner, None) if owner else gk.nn, attr)

    missing = [n for n in names if not has(n)]
    if missing:
        pytest.skip(f"gradkit does not have {', '.join(missing)} yet")


def _batch(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((BATCH,) + shape).astype(np.float32), rng.integers(0, 10, BATCH)


def _copy_into(params, arrays):
    """Copy the NumPy baseline's initial weights into another model's parameters (same order)."""
    assert len(params) == len(arrays)
    for p, a in zip(params, arrays):
        if isinstance(p, gk.nn.Parameter):
            p.data[...] = a
        else:  # a torch parameter
            import torch

            with torch.no_grad():
                p.copy_(torch.from_numpy(a))


def _gk_step(model, loss_fn, opt, x, y):
    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward(), input_grad=False)  # as torch: no gradient for the data
        opt.step()
        return loss

    return step


def _torch_step(torch, model, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def _run(benchmark, group, impl, step, rounds):
    benchmark.group = group
    benchmark.extra_info["impl"] = impl
    step()  # warm-up: lazy optimizer state, scratch buffers
    loss = benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=1)
    assert np.isfinite(float(loss))


# -- the models -------------------------------------------------------------------------------------
def build(nn, kind):
    """The model in ``nn``: gk.nn or torch.nn, whose layers have the same names and arguments."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))


MODELS = {"mlp": (nm.MLP, (784,), MLP_GROUP, 30), "cnn": (nm.CNN, (1, 28, 28), CNN_GROUP, 10)}
NEEDS = {"mlp": ("ReLU", "CrossEntropyLoss", "optim.Adam"),
         "cnn": ("Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Dropout", "CrossEntropyLoss", "optim.Adam")}


def steps(kind, impl, torch=None):
    """A closure running one training step of ``kind`` ("mlp" or "cnn") in ``impl``."""
    baseline, shape, _, _ = MODELS[kind]
    x, y = _batch(shape)
    ref = baseline()
    if impl == "numpy":
        return lambda: ref.step(x, y)
    if impl == "torch":
        model = build(torch.nn, kind)
        _copy_into(list(model.parameters()), ref.params)
        return _torch_step(torch, model, x, y)
    model = build(gk.nn, kind)
    _copy_into(model.parameters(), ref.params)
    return _gk_step(model, gk.nn.CrossEntropyLoss(), gk.optim.Adam(model.parameters()), x, y)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_train_step_numpy(benchmark, kind):
    _, _, group, rounds = MODELS[kind]
    _run(benchmark, group, "numpy", steps(kind, "numpy"), rounds // 2)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_train_step_gradkit(benchmark, kind):
    _needs(*NEEDS[kind])
    _, _, group, rounds = MODELS[kind]
    _run(benchmark, group, "gradkit", steps(kind, "gradkit"), rounds)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_train_step_torch(benchmark, needs_torch, kind):
    _, _, group, rounds = MODELS[kind]
    _run(benchmark, group, "torch", steps(kind, "torch", needs_torch), rounds)


# -- the Linear layer alone (forward + backward), the MLP's largest layer --------------------------
LINEAR_GROUP = "Linear 784->256 forward+backward, batch 128"


def _linear_data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((BATCH, 784)).astype(np.float32), rng.standard_normal((BATCH, 256)).astype(np.float32),
            rng.standard_normal((256, 784)).astype(np.float32) * 0.03, np.zeros(256, np.float32))


def test_linear_gradkit(benchmark):
    x, dy, w, b = _linear_data()
    m = gk.nn.Linear(784, 256)
    m.weight.data[...], m.bias.data[...] = w, b

    def step():
        m(x)
        return m.backward(dy)

    benchmark.group, benchmark.extra_info["impl"] = LINEAR_GROUP, "gradkit"
    benchmark(step)


def test_linear_numpy(benchmark):
    x, dy, w, b = _linear_data()
    dw, db = np.zeros_like(w), np.zeros_like(b)

    def step():
        y = x @ w.T + b
        dw[...] += dy.T @ x
        db[...] += dy.sum(0)
        return dy @ w, y

    benchmark.group, benchmark.extra_info["impl"] = LINEAR_GROUP, "numpy"
    benchmark(step)


def test_linear_torch(benchmark, needs_torch):
    torch = needs_torch
    x, dy, w, b = _linear_data()
    m = torch.nn.Linear(784, 256)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(w))
        m.bias.copy_(torch.from_numpy(b))
    xt = torch.from_numpy(x).requires_grad_(True)
    dyt = torch.from_numpy(dy)

    def step():
        m(xt).backward(dyt)
        return xt.grad

    benchmark.group, benchmark.extra_info["impl"] = LINEAR_GROUP, "torch"
    benchmark(step)


def _interleaved(threads: int, rounds: int) -> None:
    import time

    import torch
    from threadpoolctl import threadpool_limits

    gk.set_num_threads(threads)
    torch.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        for kind in MODELS:
            fns = {impl: steps(kind, impl, torch) for impl in ("gradkit", "numpy", "torch")}
            times = {impl: [] for impl in fns}
            for fn in fns.values():
                fn()  # warm-up
            for _ in range(rounds):
                for impl, fn in fns.items():
                    t0 = time.perf_counter()
                    fn()
                    times[impl].append(time.perf_counter() - t0)
            g_min, g_med = min(times["gradkit"]), float(np.median(times["gradkit"]))
            row = [f"{MODELS[kind][2]}, {threads} thread(s): gradkit {g_min * 1e3:.2f} / {g_med * 1e3:.2f} ms (min / median)"]
            for impl in ("numpy", "torch"):
                mn, md = min(times[impl]), float(np.median(times[impl]))
                row.append(f"{impl} {mn * 1e3:.2f} / {md * 1e3:.2f} ms ({mn / g_min:.2f}x / {md / g_med:.2f}x)")
            print(" | ".join(row), flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    _interleaved(args.threads, args.rounds)
