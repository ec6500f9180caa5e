"""One optimizer step over 11.3M float32 parameters in 26 tensors (a VGG-like CNN's sizes).

Every optimizer, each with no penalty, weight_decay=1e-4 and l1=1e-5: gradkit (one
fused multi-tensor C++ call) against in-place NumPy and PyTorch's fastest CPU paths
(Adam/AdamW ``fused=True``, the others ``foreach=True``) when torch is installed.
PyTorch has no L1 term: its l1 column is its step without any penalty (less work).
Each gradkit row prints its effective GB/s (the bytes the update must move / time) and
that rate over the streaming bandwidth measured in this process by
``test_stream_bandwidth`` (relu with ``out=`` over as many bytes as an Adam step).
Targets (shared/PERF.md): <= 1.0x torch's time, >= 0.8x streaming bandwidth.
benchmarks/interleaved_optim.py times gradkit, torch and the stream call by call instead.
"""
import math

import numpy as np
import pytest

import gradkit as gk
from gradkit.nn import Parameter

# Conv weights (OC, C, 3, 3) with their bias and batch-norm vectors, then a classifier.
SHAPES = ([(128, 64, 3, 3), (256, 128, 3, 3), (512, 256, 3, 3), (512, 512, 3, 3), (512, 512, 3, 3)]
          + [(1024, 4608), (256, 1024), (10, 256)]
          + [(128,)] * 3 + [(256,)] * 3 + [(512,)] * 9 + [(1024,), (256,), (10,)])
TOTAL = sum(math.prod(s) for s in SHAPES)
GROUP = f"{{}} step {TOTAL / 1e6:.1f}M params float32 in {len(SHAPES)} tensors"

# name -> (gradkit class, hyperparameters, PyTorch's fastest CPU path)
OPTIMIZERS = {
    "SGD momentum": ("SGD", dict(lr=1e-2, momentum=0.9), dict(foreach=True)),
    "SGD nesterov": ("SGD", dict(lr=1e-2, momentum=0.9, nesterov=True), dict(foreach=True)),
    "Adagrad": ("Adagrad", dict(lr=1e-2), dict(foreach=True)),
    "RMSprop": ("RMSprop", dict(lr=1e-3), dict(foreach=True)),
    "RMSprop centered momentum": ("RMSprop", dict(lr=1e-3, momentum=0.9, centered=True), dict(foreach=True)),
    "Adam": ("Adam", dict(lr=1e-3), dict(fused=True)),
    "AdamW": ("AdamW", dict(lr=1e-3), dict(fused=True)),
    "Adam amsgrad": ("Adam", dict(lr=1e-3, amsgrad=True), dict(fused=True)),
}
PENALTIES = {"no penalty": dict(weight_decay=0.0), "weight_decay=1e-4": dict(weight_decay=1e-4),
             "l1=1e-5": dict(weight_decay=0.0, l1=1e-5)}
CASES = [(o, p) for o in OPTIMIZERS for p in PENALTIES]


def state_arrays(name, kw):
    """How many state arrays of the parameter's size the update reads and writes."""
    if name == "SGD":
        return int(kw.get("momentum", 0) != 0)
    if name == "Adagrad":
        return 1
    if name == "RMSprop":
        return 1 + int(kw.get("momentum", 0) > 0) + int(kw.get("centered", False))
    return 2 + int(kw.get("amsgrad", False))


def bytes_moved(opt_name, pen_name, itemsize=4):
    """Bytes one fused pass must move: it reads p, g and the state, and writes p and the state."""
    name, kw, _ = OPTIMIZERS[opt_name]
    return (3 + 2 * state_arrays(name, {**kw, **PENALTIES[pen_name]})) * itemsize * TOTAL


def make_problem(seed=0):
    rng = np.random.default_rng(seed)
    data = [rng.standard_normal(s, dtype=np.float32) for s in SHAPES]
    grads = [rng.standard_normal(s, dtype=np.float32) for s in SHAPES]
    return data, grads


class NumpyOptimizer:
    """Every rule with in-place NumPy ops per tensor (a careful NumPy baseline)."""

    def __init__(self, name, params, grads, lr, momentum=0.0, nesterov=False, alpha=0.99, centered=False,
                 betas=(0.9, 0.999), amsgrad=False, weight_decay=0.0, l1=0.0, eps=None):
        self.name, self.p, self.g, self.lr = name, params, grads, lr
        self.mom, self.nesterov, self.alpha, self.centered = momentum, nesterov, alpha, centered
        (self.b1, self.b2), self.amsgrad, self.wd, self.l1 = betas, amsgrad, weight_decay, l1
        self.eps = eps if eps is not None else (1e-10 if name == "Adagrad" else 1e-8)
        self.state = [[np.zeros_like(p) for _ in range(3)] for p in params]
        self.t = 0

    def _grad(self, p, g):
        wd = 0.0 if self.name == "AdamW" else self.wd  # AdamW decays p instead
        if wd == 0 and self.l1 == 0:
            return g
        d = g + wd * p if wd != 0 else g.copy()
        if self.l1 != 0:
            d += self.l1 * np.sign(p)
        return d

    def step(self):
        self.t += 1
        for p, g, (a, b, c) in zip(self.p, self.g, self.state):
            g = self._grad(p, g)
            if self.name == "SGD":
                a *= self.mom
                a += g
                p -= self.lr * (g + self.mom * a if self.nesterov else a)
            elif self.name == "Adagrad":
                a += g * g
                d = np.sqrt(a)
                d += self.eps
                np.divide(g, d, out=d)
                d *= self.lr
                p -= d
            elif self.name == "RMSprop":
                a *= self.alpha
                a += (1 - self.alpha) * g * g
                if self.centered:
                    c *= self.alpha
                    c += (1 - self.alpha) * g
                    d = np.sqrt(a - c * c)
                else:
                    d = np.sqrt(a)
                d += self.eps
                np.divide(g, d, out=d)
                if self.mom > 0:
                    b *= self.mom
                    b += d
                    d = b
                p -= self.lr * d
            else:
                if self.name == "AdamW" and self.wd != 0:
                    p *= 1 - self.lr * self.wd
                a *= self.b1
                a += (1 - self.b1) * g
                b *= self.b2
                b += (1 - self.b2) * g * g
                if self.amsgrad:
                    np.maximum(c, b, out=c)
                d = np.sqrt(c if self.amsgrad else b)
                d /= math.sqrt(1 - self.b2 ** self.t)
                d += self.eps
                np.divide(a, d, out=d)
                d *= self.lr / (1 - self.b1 ** self.t)
                p -= d


def make_step(opt_name, pen_name, impl, problem):
    """A ready-to-time step function: state already created by one step outside the timing."""
    data, grads = problem
    name, kw, torch_kw = OPTIMIZERS[opt_name]
    kw = {**kw, **PENALTIES[pen_name]}
    if impl == "gradkit":
        params = [Parameter(d.copy()) for d in data]
        for p, g in zip(params, grads):
            p.grad[...] = g
        opt = getattr(gk.optim, name)(params, **kw)
    elif impl == "numpy":
        opt = NumpyOptimizer(name, [d.copy() for d in data], grads, **kw)
    else:
        import torch
        params = [torch.nn.Parameter(torch.from_numpy(d.copy())) for d in data]
        for p, g in zip(params, grads):
            p.grad = torch.from_numpy(g.copy())
        kw.pop("l1", None)  # PyTorch has no L1 term: its step without it
        opt = getattr(torch.optim, name)(params, **kw, **torch_kw)
    opt.step()
    return opt.step


def make_stream(nbytes):
    """relu(x, out=y) over x and y of nbytes / 2 each: streaming read + write of nbytes."""
    x = np.random.default_rng(1).standard_normal(nbytes // 8, dtype=np.float32)
    y = np.empty_like(x)
    gk.ops.relu(x, out=y)
    return lambda: gk.ops.relu(x, out=y), 2 * x.nbytes


@pytest.fixture(scope="module")
def problem():
    return make_problem()


def test_stream_bandwidth(benchmark):
    run, nbytes = make_stream(bytes_moved("Adam", "no penalty"))
    benchmark.group = "streaming bandwidth: relu out="
    benchmark.extra_info["bandwidth"] = True
    benchmark(run)
    benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.median / 1e9, 1)


@pytest.mark.parametrize("impl", ["gradkit", "numpy", "torch"])
@pytest.mark.parametrize("opt_name,pen_name", CASES)
def test_optimizer_step(benchmark, problem, opt_name, pen_name, impl, request):
    if impl == "torch":
        request.getfixturevalue("needs_torch")
    step = make_step(opt_name, pen_name, impl, problem)
    benchmark.group = GROUP.format(f"{opt_name}, {pen_name},")
    benchmark.extra_info["impl"] = impl
    benchmark(step)
    benchmark.extra_info["GB/s"] = round(bytes_moved(opt_name, pen_name) / benchmark.stats.stats.median / 1e9, 1)
