"""Helpers shared by the layer tests (imported as a plain module from tests/)."""
import numpy as np

import gradkit as gk

# float32 results against float64 references: (atol, rtol)
TOL = {np.float32: (2e-5, 2e-4), np.float64: (1e-12, 1e-10)}


def assert_close(actual, expected, dtype=np.float64, what="value", scale=1.0):
    """Compare with the tolerance of ``dtype`` (times ``scale``), printing the max difference."""
    atol, rtol = TOL[np.dtype(dtype).type]
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    diff = np.abs(actual - expected)
    bound = scale * (atol + rtol * np.abs(expected))
    ok = diff <= bound
    if not ok.all():
        worst = np.unravel_index(int(np.argmax(diff - bound)), diff.shape)
        raise AssertionError(f"{what}: max difference {diff.max():.3g} (worst at {worst}: got {actual[worst]!r}, "
                             f"expected {expected[worst]!r}, tolerance {bound[worst]:.3g})")


def seeded(rng, shape, dtype, low=-1.0, high=1.0):
    return rng.uniform(low, high, size=shape).astype(dtype)


class Scale(gk.nn.Module):
    """A toy layer for the base-class tests: y = x * weight + bias (per feature), with a buffer
    counting forward calls and a running mean of x (updated in training mode)."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.weight = gk.nn.Parameter(np.arange(1, n + 1, dtype=np.float32))
        self.bias = gk.nn.Parameter(np.zeros(n, dtype=np.float32))
        self.register_buffer("running_mean", np.zeros(n, dtype=np.float32))
        self.register_buffer("calls", np.zeros((), dtype=np.int64))

    def forward(self, x):
        x = self._check_input(x, ndim=2)
        if x.shape[1] != self.n:
            raise ValueError(f"Scale: input: expected (N, {self.n}), got {x.shape}")
        if self.training:
            self.running_mean[...] = 0.9 * self.running_mean + 0.1 * x.mean(axis=0)
            self.calls += 1
        self._save_for_backward(x=x)
        return x * self.weight.data + self.bias.data

    def backward(self, dy):
        x = self._saved()["x"]
        dy = self._check_grad(dy, x.shape, x.dtype)
        self.weight.grad += (dy * x).sum(axis=0)
        self.bias.grad += dy.sum(axis=0)
        return dy * self.weight.data

    def extra_repr(self):
        return f"n={self.n}"


def check_backward_contract(module, x, name=None):
    """backward before forward and after a no_grad forward raise RuntimeError naming the module;
    a dy of the wrong shape raises ValueError naming the expected (the output's) shape."""
    import re

    import pytest

    name = name or type(module).__name__
    object.__setattr__(module, "_cache", None)
    with pytest.raises(RuntimeError, match=rf"{name}.backward: no cached forward pass"):
        module.backward(np.ones(1, dtype=x.dtype))
    with gk.no_grad():
        y = module(x)
    with pytest.raises(RuntimeError, match="no_grad"):
        module.backward(np.ones_like(y))
    y = module(x)
    bad = np.ones(y.shape[:-1] + (y.shape[-1] + 1,), dtype=y.dtype)
    with pytest.raises(ValueError, match=rf"dy: expected shape {re.escape(str(y.shape))}.*got {re.escape(str(bad.shape))}"):
        module.backward(bad)
    return y
