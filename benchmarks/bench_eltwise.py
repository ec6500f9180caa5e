"""Activations (forward and backward, 16M floats) and softmax cross-entropy (forward + backward)
against NumPy (+ SciPy's erf for GELU) and PyTorch, 2 threads each.

GB/s = (bytes read + bytes written) / median time, reported in extra_info.
Run: PYTHONPATH=python python -m pytest benchmarks/bench_eltwise.py --benchmark-only
"""
import numpy as np
import pytest

import gradkit as gk
from gradkit import ops

N = 16 * 1024 * 1024

try:
    from scipy.special import erf as _erf
except ImportError:  # SciPy is optional: the NumPy GELU column is skipped
    _erf = None


@pytest.fixture(scope="module")
def x16m():
    return np.random.default_rng(0).standard_normal(N).astype(np.float32)


def _numpy_sigmoid(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


NUMPY_ACTS = {
    "tanh": np.tanh,
    "sigmoid": _numpy_sigmoid,
    "relu": lambda x: np.maximum(x, 0),
    "gelu": None if _erf is None else (lambda x: x * 0.5 * (1 + _erf(x * np.float32(0.7071067811865476)))),
}
GK_ACTS = {"tanh": ops.tanh, "sigmoid": ops.sigmoid, "relu": ops.relu, "gelu": ops.gelu}


def _gbps(benchmark, nbytes):
    benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.median / 1e9, 2)


@pytest.mark.parametrize("impl", ["gradkit", "numpy", "torch"])
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu", "gelu"])
def test_activation_forward(benchmark, act, impl, x16m, request):
    benchmark.group = f"{act} fwd 16M f32"
    benchmark.extra_info["impl"] = impl
    if impl == "gradkit":
        fn, arg = GK_ACTS[act], x16m
    elif impl == "numpy":
        fn, arg = NUMPY_ACTS[act], x16m
        if fn is None:
            pytest.skip("SciPy is not installed (erf for the NumPy GELU)")
    else:
        torch = request.getfixturevalue("needs_torch")
        fn = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
              "gelu": torch.nn.functional.gelu}[act]
        arg = torch.from_numpy(x16m)
    benchmark(fn, arg)
    _gbps(benchmark, 2 * x16m.nbytes)


def _numpy_out(act, x, out):
    if act == "tanh":
        np.tanh(x, out=out)
    elif act == "sigmoid":
        with np.errstate(over="ignore"):
            np.exp(-x, out=out)
        out += 1
        np.reciprocal(out, out=out)
    elif act == "relu":
        np.maximum(x, 0, out=out)
    else:
        np.multiply(x, np.float32(0.7071067811865476), out=out)
        _erf(out, out=out)
        out += 1
        out *= x
        out *= 0.5
    return out


@pytest.mark.parametrize("impl", ["gradkit", "numpy", "torch"])
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu", "gelu"])
def test_activation_forward_out(benchmark, act, impl, x16m, request):
    """The same with a preallocated output (out=): the kernel alone, no page faults
    of a fresh 64 MB result."""
    benchmark.group = f"{act} fwd 16M f32 out="
    benchmark.extra_info["impl"] = impl
    out = np.zeros_like(x16m)
    if impl == "gradkit":
        benchmark(GK_ACTS[act], x16m, out=out)
    elif impl == "numpy":
        if act == "gelu" and _erf is None:
            pytest.skip("SciPy is not installed (erf for the NumPy GELU)")
        benchmark(_numpy_out, act, x16m, out)
    else:
        torch = request.getfixturevalue("needs_torch")
        fn = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "gelu": torch._C._nn.gelu}[act]
        xt, ot = torch.from_numpy(x16m), torch.from_numpy(out)
        if act == "relu":
            benchmark(torch.clamp_min, xt, 0, out=ot)
        else:
            benchmark(fn, xt, out=ot)
    _gbps(benchmark, 2 * x16m.nbytes)


def _numpy_backward(act, dy, s, out):
    """NumPy's version of each backward, into `out` (a few passes over memory)."""
    if act == "tanh":
        np.multiply(s, s, out=out)
        np.subtract(1, out, out=out)
    elif act == "sigmoid":
        np.subtract(1, s, out=out)
        out *= s
    elif act == "relu":
        np.greater(s, 0, out=out)  # 1.0 / 0.0
    else:
        np.multiply(s, np.float32(0.7071067811865476), out=out)
        _erf(out, out=out)
        out += 1
        out *= 0.5
        out += s * np.exp(-0.5 * s * s) * np.float32(0.3989422804014327)
    out *= dy
    return out


@pytest.mark.parametrize("impl", ["gradkit", "numpy", "torch"])
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu", "gelu"])
def test_activation_backward_out(benchmark, act, impl, x16m, request):
    """dx from dy and the saved tensor (y for tanh / sigmoid / relu, x for GELU), out=."""
    benchmark.group = f"{act} bwd 16M f32 out="
    benchmark.extra_info["impl"] = impl
    dy = np.random.default_rng(1).standard_normal(N).astype(np.float32)
    s = x16m if act == "gelu" else GK_ACTS[act](x16m)
    out = np.zeros_like(x16m)
    if impl == "gradkit":
        run = lambda: getattr(ops, act + "_backward")(dy, s, out=out)  # noqa: E731
    elif impl == "numpy":
        if act == "gelu" and _erf is None:
            pytest.skip("SciPy is not installed (erf for the NumPy GELU)")
        run = lambda: _numpy_backward(act, dy, s, out)  # noqa: E731
    else:
        torch = request.getfixturevalue("needs_torch")
        aten = torch.ops.aten
        dyt, st, ot = torch.from_numpy(dy), torch.from_numpy(s), torch.from_numpy(out)
        if act == "relu":
            run = lambda: aten.threshold_backward.grad_input(dyt, st, 0, grad_input=ot)  # noqa: E731
        else:
            fn = getattr(aten, act + "_backward").grad_input
            run = lambda: fn(dyt, st, grad_input=ot)  # noqa: E731
    run()
    # all three compute the same thing
    np.testing.assert_allclose(out, getattr(ops, act + "_backward")(dy, s), rtol=1e-5, atol=1e-6)
    benchmark(run)
    _gbps(benchmark, 3 * x16m.nbytes)


def _numpy_cross_entropy(x, y):
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) + m[:, 0] - x[np.arange(len(y)), y]))
    d = e / s
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    return loss, d


@pytest.mark.parametrize("impl", ["gradkit", "numpy", "torch"])
@pytest.mark.parametrize("shape", [(128, 10), (4096, 1000)])
def test_cross_entropy_fwd_bwd(benchmark, shape, impl, request):
    n, c = shape
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, c, n)
    benchmark.group = f"cross-entropy fwd+bwd {n}x{c} f32"
    benchmark.extra_info["impl"] = impl
    if impl == "gradkit":
        loss_fn = gk.nn.CrossEntropyLoss()

        def run():
            loss = loss_fn(x, y)
            return loss, loss_fn.backward()
    elif impl == "numpy":
        def run():
            return _numpy_cross_entropy(x, y)
    else:
        torch = request.getfixturevalue("needs_torch")
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = torch.from_numpy(y)

        def run():
            xt.grad = None
            loss = torch.nn.functional.cross_entropy(xt, yt)
            loss.backward()
            return loss.item(), xt.grad
    loss, d = run()
    assert abs(loss - _numpy_cross_entropy(x, y)[0]) < 1e-4  # all three compute the same thing
    benchmark(run)
    _gbps(benchmark, 2 * x.nbytes)  # logits read, dlogits written
