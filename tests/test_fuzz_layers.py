"""Fuzzing every layer of gk.nn with hypothesis (fixed seed per run): random hyperparameters
(some invalid), input shapes with zero and SIMD-tail sizes, views, wrong dtypes. Each case
raises a TypeError/ValueError naming an argument, or (in float64) its forward equals a NumPy
reference and its backward equals central differences along a random direction, for the
input and for a parameter. The case count is checked at the end."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradkit as gk
from fuzz_helpers import CASES, SMALL, check_close, check_error, check_ran, count, fuzz, layouts, planned
from test_fuzz_ops import ACTS, conv_ref, pool_ref

nn = gk.nn


def norm_ref(x, axes, eps):
    return (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


@st.composite
def layer_case(draw):
    """(layer or the exception its constructor raised, input shape, forward reference or None)."""
    kind = draw(st.sampled_from(["Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Flatten", "Sigmoid",
                                 "Tanh", "ReLU", "LeakyReLU", "ELU", "GELU", "Dropout", "BatchNorm1d", "BatchNorm2d",
                                 "LayerNorm", "GroupNorm", "InstanceNorm2d", "Residual", "Sequential"]))
    n = draw(st.sampled_from([1, 2, 3, 5]))
    c = draw(st.sampled_from([1, 2, 3, 4]))
    hw = (draw(st.sampled_from([1, 2, 5, 8])), draw(st.sampled_from([1, 3, 4, 9, 17])))
    img = (n, c) + hw
    flat = (n, draw(st.sampled_from([1, 3, 8, 17, 33])))
    act = {"Sigmoid": "sigmoid", "Tanh": "tanh", "ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu", "GELU": "gelu"}
    try:
        if kind == "Linear":
            out = draw(st.sampled_from([0, 1, 5, 16, -1]))
            layer = nn.Linear(flat[1], out, bias=draw(st.booleans()))
            ref = lambda x, m: x @ m.weight.data.T + (0 if m.bias is None else m.bias.data)  # noqa: E731
            return layer, flat, ref
        if kind == "Conv2d":
            k = draw(st.sampled_from([1, 2, 3, 0]))
            s, p, d = draw(st.sampled_from([1, 2])), draw(st.sampled_from([0, 1, -1])), draw(st.sampled_from([1, 2]))
            g = draw(st.sampled_from([1, c]))
            layer = nn.Conv2d(c, g * draw(st.sampled_from([1, 2])), k, stride=s, padding=p, dilation=d, groups=g,
                              bias=draw(st.booleans()))
            ref = lambda x, m: conv_ref(x, m.weight.data, None if m.bias is None else m.bias.data, (s, s), (p, p),  # noqa
                                        (d, d), g)
            return layer, img, ref
        if kind in ("MaxPool2d", "AvgPool2d"):
            k, s, p = draw(st.sampled_from([1, 2, 3, 0])), draw(st.sampled_from([None, 1, 2])), draw(st.sampled_from([0, 1]))
            layer = getattr(nn, kind)(k, stride=s, padding=p)
            ref = lambda x, m: pool_ref(kind[:3].lower(), x, (k, k), None if s is None else (s, s), (p, p))  # noqa
            return layer, img, ref
        if kind == "GlobalAvgPool2d":
            return nn.GlobalAvgPool2d(), img, lambda x, m: x.mean(axis=(2, 3))
        if kind == "Flatten":
            return nn.Flatten(), img, lambda x, m: x.reshape(x.shape[0], -1)
        if kind in act:
            args = {"LeakyReLU": [draw(st.sampled_from([0.01, 0.3]))], "ELU": [draw(st.sampled_from([1.0, 0.5]))]}.get(kind, [])
            fn = ACTS[act[kind]][0]
            return getattr(nn, kind)(*args), draw(st.sampled_from([flat, img])), lambda x, m: fn(x, *args)
        if kind == "Dropout":
            p = draw(st.sampled_from([0.0, 0.5, 1.0, -0.2]))
            layer = nn.Dropout(p)
            layer.eval()
            return layer, flat, lambda x, m: x
        if kind in ("BatchNorm1d", "BatchNorm2d"):
            eps = draw(st.sampled_from([1e-5, 0.1, -1.0]))
            layer = getattr(nn, kind)(c, eps=eps)
            shape = (n, c) if kind == "BatchNorm1d" else img
            axes = (0,) if kind == "BatchNorm1d" else (0, 2, 3)
            return layer, shape, lambda x, m: norm_ref(x, axes, eps) * m.weight.data.reshape((1, c) + (1,) * (x.ndim - 2)) \
                + m.bias.data.reshape((1, c) + (1,) * (x.ndim - 2))
        if kind == "LayerNorm":
            layer = nn.LayerNorm(flat[1:])
            return layer, flat, lambda x, m: norm_ref(x, (1,), 1e-5) * m.weight.data + m.bias.data
        if kind == "GroupNorm":
            g = draw(st.sampled_from([1, 2, 3]))
            layer = nn.GroupNorm(g, c)
            return layer, img, lambda x, m: (norm_ref(x.reshape(x.shape[0], g, -1), (2,), 1e-5).reshape(x.shape)
                                             * m.weight.data.reshape(1, c, 1, 1) + m.bias.data.reshape(1, c, 1, 1))
        if kind == "InstanceNorm2d":
            return nn.InstanceNorm2d(c), img, lambda x, m: norm_ref(x, (2, 3), 1e-5)
        if kind == "Residual":
            layer = nn.Residual(nn.Linear(flat[1], flat[1]))
            return layer, flat, lambda x, m: x + x @ m.block.weight.data.T + m.block.bias.data
        layer = nn.Sequential(nn.Linear(flat[1], 7), nn.ReLU(), nn.Linear(7, 3))
        return layer, flat, lambda x, m: (np.maximum(x @ m[0].weight.data.T + m[0].bias.data, 0) @ m[2].weight.data.T
                                          + m[2].bias.data)
    except (TypeError, ValueError) as e:
        return e, None, None


@fuzz(1400)
@given(layer_case(), st.integers(0, 2**31), st.data())
def test_layer_forward_and_backward(case, seed, data):
    count()
    layer, shape, ref = case
    if isinstance(layer, Exception):
        check_error(layer, ["in_features", "out_features", "kernel_size", "padding", "stride", "groups", "p", "eps",
                            "num_groups", "dilation", "out_channels"])
        return
    layer.double()
    rng = np.random.default_rng(seed)
    for p in layer.parameters():  # random affine parameters, not just the init's ones and zeros
        p.data[...] = rng.standard_normal(p.data.shape)
    x = data.draw(layouts(rng.standard_normal(shape)))
    gk.manual_seed(seed)
    try:
        y = layer(x)
    except (TypeError, ValueError) as e:  # e.g. a kernel larger than the input, one value per channel
        check_error(e, ["input", "x", "kernel_size", "padding"])
        return
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = ref(x, layer)
    check_close(y, expected, np.float64, rtol=1e-9, atol=1e-9, what=type(layer).__name__)
    if y.size == 0:
        return
    # backward against central differences along random directions (input and first parameter)
    CASES["layer_gradients"] = CASES.get("layer_gradients", 0) + 1
    dy = rng.standard_normal(y.shape)
    layer.zero_grad()
    dx = layer.backward(dy)
    h = 1e-6

    def f(xv):
        gk.manual_seed(seed)
        return float(np.sum(layer(xv) * dy))

    v = rng.standard_normal(x.shape)
    fd = (f(x + h * v) - f(x - h * v)) / (2 * h)
    assert abs(fd - np.sum(dx * v)) <= 1e-5 * (1 + abs(fd)), f"d input: {np.sum(dx * v)} vs differences {fd}"
    params = layer.parameters()
    if params:
        p = params[0]
        u = rng.standard_normal(p.data.shape)
        base = p.data.copy()
        p.data[...] = base + h * u
        plus = f(x)
        p.data[...] = base - h * u
        minus = f(x)
        p.data[...] = base
        fd = (plus - minus) / (2 * h)
        assert abs(fd - np.sum(p.grad * u)) <= 1e-5 * (1 + abs(fd)), f"d param: {np.sum(p.grad * u)} vs {fd}"
    # the same input in float32 against a float32 layer gives TypeError naming the dtype (parameters are float64)
    if params:
        with pytest.raises(TypeError, match="dtype"):
            layer(x.astype(np.float32))


@fuzz(300)
@given(st.sampled_from(["Linear", "Conv2d", "BatchNorm2d", "ReLU"]), st.sampled_from(SMALL),
       st.sampled_from(["backward_first", "wrong_dy", "no_grad"]))
def test_layer_misuse_raises(kind, n, misuse):
    count()
    layer = {"Linear": lambda: nn.Linear(3, 2), "Conv2d": lambda: nn.Conv2d(2, 2, 3, padding=1),
             "BatchNorm2d": lambda: nn.BatchNorm2d(2), "ReLU": lambda: nn.ReLU()}[kind]()
    x = np.ones((n, 3) if kind == "Linear" else (n, 2, 4, 4), np.float32) + np.arange(n)[:, None].reshape(
        (n, 1) if kind == "Linear" else (n, 1, 1, 1)).astype(np.float32)
    if misuse == "backward_first":
        with pytest.raises(RuntimeError, match="no cached forward"):
            layer.backward(np.ones((n, 2), np.float32))
    elif misuse == "no_grad":
        with gk.no_grad():
            layer(x)
        with pytest.raises(RuntimeError, match="no cached forward"):
            layer.backward(np.ones((n, 2), np.float32))
    else:
        y = layer(x)
        with pytest.raises(ValueError, match="dy"):
            layer.backward(np.ones((y.shape[0] + 1,) + y.shape[1:], np.float32))


PLANNED = {"test_layer_forward_and_backward": 1400, "test_layer_misuse_raises": 60}


@pytest.fixture(autouse=True)
def _each_test_runs_its_cases(request):
    before = CASES["count"]
    yield
    name = request.node.name
    check_ran(name, before, PLANNED)
    if name == "test_layer_forward_and_backward":  # most cases must reach the gradient checks
        checked = CASES.get("layer_gradients", 0)
        assert checked >= 0.5 * planned(PLANNED[name]), f"only {checked} cases checked gradients"
