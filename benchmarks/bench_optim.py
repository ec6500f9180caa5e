"""One optimizer step over ~10M float32 parameters in tensors of mixed sizes.

gradkit (one fused multi-tensor C++ call) against an in-place NumPy
implementation and PyTorch's fastest CPU paths (Adam(fused=True),
SGD(foreach=True)) when torch is installed.
Target (shared/PERF.md): <= 1.0x torch fused time, >= 15x faster than NumPy.
"""
import math

import numpy as np
import pytest

import gradkit as gk
from gradkit.nn import Parameter

# A CNN/MLP-like mix: big weight matrices, medium ones, many small biases (~10.2M elements).
SHAPES = ([(2048, 2048), (1024, 2048), (1024, 1024), (2048, 512), (512, 1024), (3136, 128)] + [(256, 256)] * 8
          + [(64, 32, 3, 3)] * 6 + [(1024,)] * 12 + [(128,)] * 20 + [(10,)] * 4)
TOTAL = sum(math.prod(s) for s in SHAPES)
GROUP = f"{{}} step {TOTAL / 1e6:.1f}M params float32 in {len(SHAPES)} tensors"


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(s, dtype=np.float32) for s in SHAPES]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in SHAPES]
    return data, grads


def gradkit_params(problem):
    data, grads = problem
    params = [Parameter(d) for d in data]
    for p, g in zip(params, grads):
        p.grad[...] = g
    return params


def torch_params(torch, problem):
    data, grads = problem
    params = [torch.nn.Parameter(torch.from_numpy(d.copy())) for d in data]
    for p, g in zip(params, grads):
        p.grad = torch.from_numpy(g.copy())
    return params


class NumpyAdam:
    """Adam with in-place NumPy ops (a careful NumPy baseline: no temporaries beyond two per tensor)."""

    def __init__(self, params, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.p, self.g = params, grads
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.lr, (self.b1, self.b2), self.eps, self.t = lr, betas, eps, 0

    def step(self):
        self.t += 1
        step_size = self.lr / (1 - self.b1 ** self.t)
        bc2_sqrt = math.sqrt(1 - self.b2 ** self.t)
        for p, g, m, v in zip(self.p, self.g, self.m, self.v):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            denom = np.sqrt(v)
            denom /= bc2_sqrt
            denom += self.eps
            np.divide(m, denom, out=denom)
            denom *= step_size
            p -= denom


class NumpySGD:
    """SGD with momentum, in-place NumPy ops."""

    def __init__(self, params, grads, lr=1e-2, momentum=0.9):
        self.p, self.g, self.lr, self.mu = params, grads, lr, momentum
        self.buf = [g.copy() for g in grads]

    def step(self):
        for p, g, b in zip(self.p, self.g, self.buf):
            b *= self.mu
            b += g
            p -= self.lr * b


def make_step(opt_name, impl, problem):
    """A ready-to-time step function: state already created by one step outside the timing."""
    data, grads = problem
    if impl == "gradkit":
        params = gradkit_params(problem)
        opt = (gk.optim.Adam(params, lr=1e-3) if opt_name == "Adam"
               else gk.optim.SGD(params, lr=1e-2, momentum=0.9))
    elif impl == "numpy":
        copies = [d.copy() for d in data]
        opt = NumpyAdam(copies, grads) if opt_name == "Adam" else NumpySGD(copies, grads)
    else:
        import torch
        params = torch_params(torch, problem)
        opt = (torch.optim.Adam(params, lr=1e-3, fused=True) if opt_name == "Adam"
               else torch.optim.SGD(params, lr=1e-2, momentum=0.9, foreach=True))
    opt.step()
    return opt.step


@pytest.mark.parametrize("impl", ["gradkit", "numpy", "torch"])
@pytest.mark.parametrize("opt_name", ["Adam", "SGD momentum"])
def test_optimizer_step(benchmark, problem, opt_name, impl, request):
    if impl == "torch":
        request.getfixturevalue("needs_torch")
    step = make_step(opt_name.split()[0], impl, problem)
    benchmark.group = GROUP.format(opt_name)
    benchmark.extra_info["impl"] = impl
    benchmark(step)
    # Bytes one fused pass must move per element: Adam reads p, g, m, v and writes p, m, v;
    # SGD with momentum reads p, g, buf and writes p, buf.
    per_elem = 4 * (7 if opt_name == "Adam" else 5)
    benchmark.extra_info["GB/s"] = round(per_elem * TOTAL / benchmark.stats.stats.median / 1e9, 1)
