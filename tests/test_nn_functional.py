"""gk.nn.functional: every op forward and backward against float64 NumPy references, float32 and
float64, odd sizes and batches of 0 and 1; Parameters as arguments; argument errors."""
import math

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn
from gradkit.nn import functional as F


def _erf(x):
    return np.vectorize(math.erf)(x)


def _pool_ref(x, k, s, p, kind):
    n, c, h, w = x.shape
    fill = -np.inf if kind == "max" else 0.0
    xp = np.full((n, c, h + 2 * p, w + 2 * p), fill)
    xp[:, :, p:p + h, p:p + w] = x
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * s:i * s + k, j * s:j * s + k]
            out[:, :, i, j] = win.max(axis=(2, 3)) if kind == "max" else win.mean(axis=(2, 3))
    return out


def _conv_ref(x, w, b, stride, pad, dil, groups):
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, oc, oh, ow))
    ocg = oc // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dil:i * dil + stride * oh:stride, j * dil:j * dil + stride * ow:stride]
                out[:, g * ocg:(g + 1) * ocg] += np.einsum("nchw,oc->nohw", patch, w[g * ocg:(g + 1) * ocg, :, i, j])
    if b is not None:
        out += b[None, :, None, None]
    return out


# name -> (gradkit call, float64 NumPy reference, shapes of the array arguments)
CASES = {
    "add2": (lambda a, b: F.add(a, b), lambda a, b: a + b, [(3, 5), (3, 5)]),
    "add3": (lambda a, b, c: F.add(a, b, c), lambda a, b, c: a + b + c, [(2, 3, 4, 5)] * 3),
    "sub": (F.sub, lambda a, b: a - b, [(4, 7), (4, 7)]),
    "mul": (F.mul, lambda a, b: a * b, [(3, 9), (3, 9)]),
    "mul_channel": (F.mul, lambda a, b: a * b, [(2, 3, 4, 5), (1, 3, 1, 1)]),
    "mul_trailing": (F.mul, lambda a, b: a * b, [(2, 3, 17), (17,)]),
    "cat": (lambda a, b: F.cat([a, b]), lambda a, b: np.concatenate([a, b], 1), [(2, 3, 4, 5), (2, 2, 4, 5)]),
    "cat_dim0": (lambda a, b, c: F.cat((a, b, c), dim=0), lambda a, b, c: np.concatenate([a, b, c], 0),
                 [(1, 7), (3, 7), (2, 7)]),
    "flatten": (F.flatten, lambda x: x.reshape(x.shape[0], 30), [(3, 2, 5, 3)]),
    "flatten2": (lambda x: F.flatten(x, start_dim=2), lambda x: x.reshape(x.shape[0], 2, 15), [(3, 2, 5, 3)]),
    "relu": (F.relu, lambda x: np.maximum(x, 0), [(5, 33)]),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: np.where(x > 0, x, 0.2 * x), [(3, 17)]),
    "elu": (lambda x: F.elu(x, alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0))), [(3, 17)]),
    "gelu": (F.gelu, lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))), [(3, 17)]),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), [(3, 17)]),
    "tanh": (F.tanh, np.tanh, [(3, 17)]),
    "dropout_eval": (lambda x: F.dropout(x, 0.5, training=False), lambda x: x, [(3, 17)]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), lambda x: _pool_ref(x, 2, 2, 0, "max"), [(2, 3, 7, 6)]),
    "max_pool2d_s1p1": (lambda x: F.max_pool2d(x, 3, stride=1, padding=1), lambda x: _pool_ref(x, 3, 1, 1, "max"),
                        [(2, 2, 5, 5)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, stride=2, padding=1), lambda x: _pool_ref(x, 3, 2, 1, "avg"),
                   [(2, 3, 7, 6)]),
    "global_avg_pool2d": (F.global_avg_pool2d, lambda x: x.mean(axis=(2, 3)), [(3, 5, 3, 4)]),
    "linear": (F.linear, lambda x, w: x @ w.T, [(5, 7), (3, 7)]),
    "linear_bias_3d": (F.linear, lambda x, w, b: x @ w.T + b, [(2, 5, 7), (3, 7), (3,)]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
               lambda x, w, b: _conv_ref(x, w, b, 2, 1, 1, 1), [(2, 3, 7, 6), (4, 3, 3, 3), (4,)]),
    "conv2d_groups_dil": (lambda x, w: F.conv2d(x, w, padding=2, dilation=2, groups=2),
                          lambda x, w: _conv_ref(x, w, None, 1, 2, 2, 2), [(2, 4, 6, 5), (6, 2, 3, 3)]),
}


class Apply(nn.Module):
    """A derived-backward module applying one functional op to its inputs."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def _numeric_grads(ref, xs, dy, eps=1e-6):
    """Central differences of sum(ref(*xs) * dy) in float64, for each argument."""
    grads = []
    for k, x in enumerate(xs):
        g = np.zeros_like(x)
        flat = x.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = np.sum(ref(*xs) * dy)
            flat[i] = old - eps
            down = np.sum(ref(*xs) * dy)
            flat[i] = old
            g.reshape(-1)[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def _inputs(shapes, batch, rng):
    xs = []
    for k, s in enumerate(shapes):
        # the batch axis of every argument of the data path (the weights keep their shape)
        s = (batch,) + tuple(s[1:]) if (k == 0 or s[0] == shapes[0][0]) and batch is not None else tuple(s)
        xs.append(rng.standard_normal(s) + (0.05 if k else 0.0))
    return xs


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_and_backward_match_float64_reference(name, dtype, isa, rng):
    fn, ref, shapes = CASES[name]
    xs64 = _inputs(shapes, None, rng)
    xs = [x.astype(dtype) for x in xs64]
    m = Apply(fn)
    y = m(*xs)
    want = ref(*xs64)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    assert y.dtype == dtype and y.shape == want.shape
    err = np.max(np.abs(y - want), initial=0)
    assert err <= tol * (1 + np.max(np.abs(want), initial=0)) * 8, f"{name} forward: max error {err}"
    dy64 = rng.standard_normal(want.shape)
    grads = m.backward(dy64.astype(dtype))
    grads = list(grads) if isinstance(grads, tuple) else [grads]
    expected = _numeric_grads(ref, [x.copy() for x in xs64], dy64)
    tol = 1e-7 if dtype == np.float64 else 2e-5
    for k, (g, e) in enumerate(zip(grads, expected)):
        assert g.dtype == dtype and g.shape == e.shape
        err = np.max(np.abs(g - e), initial=0)
        assert err <= tol * (1 + np.max(np.abs(e), initial=0)) * 8, f"{name} d(argument {k}): max error {err}"


@pytest.mark.parametrize("batch", [0, 1])
@pytest.mark.parametrize("name", ["add2", "mul_channel", "cat", "flatten", "relu", "max_pool2d", "linear", "conv2d",
                                  "global_avg_pool2d"])
def test_batches_of_zero_and_one(name, batch, rng):
    fn, ref, shapes = CASES[name]
    xs = _inputs(shapes, batch, rng)
    m = Apply(fn)
    y = m(*xs)
    np.testing.assert_allclose(y, ref(*xs), rtol=1e-12, atol=1e-12)
    grads = m.backward(np.ones_like(y))
    grads = list(grads) if isinstance(grads, tuple) else [grads]
    assert [g.shape for g in grads] == [x.shape for x in xs]
    if batch:
        expected = _numeric_grads(ref, [x.copy() for x in xs], np.ones(y.shape))
        for g, e in zip(grads, expected):
            np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-7)


def test_dropout_in_training_keeps_the_mask_for_backward(rng):
    x = rng.standard_normal((4, 33)).astype(np.float32)
    m = Apply(lambda x: F.dropout(x, 0.25))
    gk.manual_seed(3)
    y = m(x)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    assert 0 < kept.mean() < 1
    dx = m.backward(np.ones_like(y))
    np.testing.assert_allclose(dx, kept / np.float32(0.75), rtol=1e-6)


class ParamOps(nn.Module):
    """F ops given Parameters: their gradients are added into .grad."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(np.linspace(-1, 1, 12).reshape(3, 4))
        self.bias = nn.Parameter(np.array([0.1, -0.2, 0.3]))
        self.scale = nn.Parameter(np.array([2.0, -1.0, 0.5]))

    def forward(self, x):
        h = F.linear(x, self.weight, self.bias)
        return F.mul(h, self.scale)


def test_parameters_as_arguments_get_their_gradients_added(rng):
    m = ParamOps().double()
    x = rng.standard_normal((5, 4))
    assert gk.gradcheck(m, x)
    m.zero_grad()
    m.weight.grad[...] = 1.0  # backward ADDS
    y = m(x)
    dy = rng.standard_normal(y.shape)
    dx = m.backward(dy)
    s = m.scale.data
    w, b = m.weight.data, m.bias.data
    h = x @ w.T + b
    np.testing.assert_allclose(m.weight.grad, 1.0 + (dy * s).T @ x, rtol=1e-12)
    np.testing.assert_allclose(m.bias.grad, (dy * s).sum(0), rtol=1e-12)
    np.testing.assert_allclose(m.scale.grad, (dy * h).sum(0), rtol=1e-12)
    np.testing.assert_allclose(dx, (dy * s) @ w, rtol=1e-12)


def test_outside_a_recording_the_ops_just_compute(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    y = F.relu(F.add(x, x))
    np.testing.assert_array_equal(y, np.maximum(2 * x, 0))
    assert y.flags.writeable


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.add(np.ones(3, np.float32), np.ones(3)), TypeError, r"add: xs\[1\]: expected dtype float32"),
    (lambda: F.add(np.ones(3), np.ones(4)), ValueError, r"add: xs\[1\]: expected shape \(3,\)"),
    (lambda: F.add(), TypeError, "at least one"),
    (lambda: F.add([1.0, 2.0]), TypeError, r"add: xs\[0\]: expected a numpy.ndarray"),
    (lambda: F.relu(np.ones(3, np.int64)), TypeError, "relu: x: expected dtype float32 or float64, got int64"),
    (lambda: F.mul(np.ones((2, 3)), np.ones((2, 4))), ValueError, "mul: b: expected a shape that broadcasts"),
    (lambda: F.mul(np.ones((3,)), np.ones((2, 3))), ValueError, r"broadcasts to \(3,\)"),
    (lambda: F.cat(np.ones((2, 3))), TypeError, "cat: xs: expected a non-empty list"),
    (lambda: F.cat([np.ones((2, 3)), np.ones((3, 3))]), ValueError, r"cat: xs\[1\]: expected shape"),
    (lambda: F.cat([np.ones((2, 3))], dim=True), TypeError, "cat: dim: expected an int, got bool"),
    (lambda: F.cat([np.ones((2, 3))], dim=2), ValueError, r"cat: dim: expected a value in \[-2, 2\)"),
    (lambda: F.flatten(np.ones((2, 3)), start_dim=5), ValueError, "flatten: start_dim"),
    (lambda: F.leaky_relu(np.ones(3), "a"), TypeError, "leaky_relu: negative_slope: expected a real number"),
    (lambda: F.dropout(np.ones(3), 1.0), ValueError, r"dropout: p: expected a value in \[0, 1\)"),
    (lambda: F.dropout(np.ones(3), 0.5, training=1), TypeError, "dropout: training: expected a bool"),
    (lambda: F.linear(np.ones((2, 3)), np.ones((4, 5))), ValueError, r"linear: x: expected shape \(\*, 5\)"),
    (lambda: F.linear(np.ones((2, 3)), np.ones(3)), ValueError, "linear: weight: expected a 2-D array"),
    (lambda: F.linear(np.ones((2, 3)), np.ones((4, 3)), np.ones(3)), ValueError, r"linear: bias: expected shape \(4,\)"),
    (lambda: F.conv2d(np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3)), stride=0), ValueError, "stride"),
])
def test_bad_arguments_raise_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
