"""Normalization forward+backward (training) against NumPy and PyTorch.

Target (PERF.md): batchnorm2d fwd+bwd on 64x64x28x28 in <= 0.8x PyTorch's time.
The end-to-end CNN's batch norms see (128, 32, 28, 28) and (128, 64, 14, 14).
Run: PYTHONPATH=python python -m pytest benchmarks/bench_norm.py --benchmark-only
"""
import numpy as np
import pytest

import gradkit as gk

BN_SHAPES = [(64, 64, 28, 28), (128, 32, 28, 28), (128, 64, 14, 14)]
LN_SHAPES = [(4096, 1024)]


def _data(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32) * 2 + 0.5
    dy = rng.standard_normal(shape, dtype=np.float32)
    return x, dy


# -- NumPy baselines: the textbook float32 formulas ---------------------------------------------
def numpy_batchnorm_fwd_bwd(x, dy, w, b, eps=1e-5):
    axes = (0, 2, 3)
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = xc * rstd
    y = xhat * w.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)
    db = dy.sum(axis=axes)
    dw = (dy * xhat).sum(axis=axes)
    m = x.size // x.shape[1]
    dx = (w.reshape(1, -1, 1, 1) * rstd / m) * (m * dy - db.reshape(1, -1, 1, 1) - xhat * dw.reshape(1, -1, 1, 1))
    return y, dx, dw, db


def numpy_layernorm_fwd_bwd(x, dy, w, b, eps=1e-5):
    mean = x.mean(axis=1, keepdims=True)
    xc = x - mean
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + eps)
    xhat = xc * rstd
    y = xhat * w + b
    g = dy * w
    dx = rstd * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
    return y, dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


# -- the cases: (layer, shape); each implementation builds one training step --------------------
CASES = [("batchnorm2d", s) for s in BN_SHAPES] + [("layernorm", s) for s in LN_SHAPES]


def _case_id(case):
    return f"{case[0]}-{'x'.join(map(str, case[1]))}"


def _setup(benchmark, case, impl):
    layer, shape = case
    benchmark.group = f"{layer} fwd+bwd {'x'.join(map(str, shape))}"
    benchmark.extra_info["impl"] = impl
    return layer, shape, _data(shape)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_norm_gradkit(benchmark, case):
    layer, shape, (x, dy) = _setup(benchmark, case, "gradkit")
    m = gk.nn.BatchNorm2d(shape[1]) if layer == "batchnorm2d" else gk.nn.LayerNorm(shape[-1])

    def step():
        m(x)
        return m.backward(dy)

    benchmark(step)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_norm_numpy(benchmark, case):
    layer, shape, (x, dy) = _setup(benchmark, case, "numpy")
    n = shape[1] if layer == "batchnorm2d" else shape[-1]
    w, b = np.ones(n, np.float32), np.zeros(n, np.float32)
    fn = numpy_batchnorm_fwd_bwd if layer == "batchnorm2d" else numpy_layernorm_fwd_bwd
    benchmark(fn, x, dy, w, b)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_norm_torch(benchmark, needs_torch, case):
    torch = needs_torch
    layer, shape, (x, dy) = _setup(benchmark, case, "torch")
    xt = torch.from_numpy(x).requires_grad_(True)
    dyt = torch.from_numpy(dy)
    m = torch.nn.BatchNorm2d(shape[1]) if layer == "batchnorm2d" else torch.nn.LayerNorm(shape[-1])

    def step():
        xt.grad = None
        m(xt).backward(dyt)
        return xt.grad

    benchmark(step)
