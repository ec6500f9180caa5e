"""sgemm: gk.ops.matmul vs numpy.matmul (OpenBLAS) and torch.mm, all on 2 threads.

Square sizes and the training shapes (M x N x K: a Linear forward / backward of
the Fashion-MNIST CNN and a conv weight gradient), in NN, NT and TN layouts.
Run: PYTHONPATH=python python -m pytest benchmarks/bench_gemm.py --benchmark-only
"""
import numpy as np
import pytest

import gradkit as gk

SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048), (256, 256, 256), (64, 64, 64),
          (128, 784, 256), (128, 3136, 128), (64, 64, 50176)]
LAYOUTS = ["NN", "NT", "TN"]


def _operands(m, n, k, layout):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if layout == "TN" else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if layout == "NT" else (k, n)).astype(np.float32)
    return a, b


def _setup(benchmark, m, n, k, layout, impl):
    benchmark.group = f"sgemm {m}x{n}x{k} {layout}"
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info["gflop"] = 2.0 * m * n * k / 1e9


PARAMS = [pytest.param(s, lay, id=f"{s[0]}x{s[1]}x{s[2]}-{lay}") for s in SHAPES for lay in LAYOUTS]


@pytest.mark.parametrize("shape,layout", PARAMS)
def test_gradkit(benchmark, shape, layout):
    m, n, k = shape
    a, b = _operands(m, n, k, layout)
    out = np.empty((m, n), np.float32)
    _setup(benchmark, m, n, k, layout, "gradkit")
    benchmark(gk.ops.matmul, a, b, trans_a=layout == "TN", trans_b=layout == "NT", out=out)


@pytest.mark.parametrize("shape,layout", PARAMS)
def test_numpy(benchmark, shape, layout):
    m, n, k = shape
    a, b = _operands(m, n, k, layout)
    a = a.T if layout == "TN" else a
    b = b.T if layout == "NT" else b
    out = np.empty((m, n), np.float32)
    _setup(benchmark, m, n, k, layout, "numpy")
    benchmark(np.matmul, a, b, out=out)


@pytest.mark.parametrize("shape,layout", PARAMS)
def test_torch(benchmark, needs_torch, shape, layout):
    torch = needs_torch
    m, n, k = shape
    a, b = _operands(m, n, k, layout)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    ta = ta.t() if layout == "TN" else ta
    tb = tb.t() if layout == "NT" else tb
    out = torch.empty((m, n), dtype=torch.float32)
    _setup(benchmark, m, n, k, layout, "torch")
    benchmark(torch.mm, ta, tb, out=out)
