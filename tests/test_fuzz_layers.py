"""Fuzzing every layer of gk.nn with hypothesis (fixed seed per run): random hyperparameters
(some invalid), input shapes with zero and SIMD-tail sizes, views, wrong dtypes. Each case
raises a TypeError/ValueError naming an argument, or (in float64) its forward equals a NumPy
reference and its backward equals central differences along a random direction, for the
input and for a parameter. Each test checks at the end that it checked as many cases as planned."""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradkit as gk
from fuzz_helpers import CASES, FLOATS, check_close, check_error, check_ran, checked, count, fuzz, layouts, planned
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
@checked
def test_layer_forward_and_backward(case, seed, data):
    layer, shape, ref = case
    if isinstance(layer, Exception):
        check_error(layer, ["in_features", "out_features", "kernel_size", "padding", "stride", "groups", "p", "eps",
                            "num_groups", "dilation", "out_channels"])
        count()
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
        count()
        return
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = ref(x, layer)
    check_close(y, expected, np.float64, rtol=1e-9, atol=1e-9, what=type(layer).__name__)
    if y.size == 0:
        count()
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
    count()


MISUSE_LAYERS = {  # layer -> (a new one, whether it takes (n, 3) rows or (n, 2, 4, 4) images)
    "Linear": (lambda: nn.Linear(3, 2), True), "Conv2d": (lambda: nn.Conv2d(2, 2, 3, padding=1), False),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(3), True), "BatchNorm2d": (lambda: nn.BatchNorm2d(2), False),
    "LayerNorm": (lambda: nn.LayerNorm(3), True), "GroupNorm": (lambda: nn.GroupNorm(1, 2), False),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), False), "AvgPool2d": (lambda: nn.AvgPool2d(2), False),
    "GlobalAvgPool2d": (lambda: nn.GlobalAvgPool2d(), False), "Flatten": (lambda: nn.Flatten(), False),
    "ReLU": (lambda: nn.ReLU(), False), "Tanh": (lambda: nn.Tanh(), True), "Dropout": (lambda: nn.Dropout(0.5), False),
    "Residual": (lambda: nn.Residual(nn.Linear(3, 3)), True),
    "Sequential": (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), True),
}
MISUSES = ["backward_first", "no_grad", "wrong_dy_shape", "wrong_dy_dtype"]
BATCHES = [2, 3, 4, 5]  # batch norm refuses one sample per channel (tested in test_nn_normalization.py)
MISUSE_SPACE = list(itertools.product(sorted(MISUSE_LAYERS), FLOATS, BATCHES, MISUSES))
MISUSE_SEEN = set()


@fuzz(len(MISUSE_SPACE))
@given(st.sampled_from(sorted(MISUSE_LAYERS)), st.sampled_from(FLOATS), st.sampled_from(BATCHES),
       st.sampled_from(MISUSES))
@checked
def test_layer_misuse_raises(kind, dtype, n, misuse):
    """backward before any forward or after a forward under no_grad: RuntimeError; a dy of
    another batch size: ValueError naming dy; of the other float dtype: TypeError naming dy."""
    make, rows = MISUSE_LAYERS[kind]
    layer = make()
    if dtype == np.float64:
        layer.double()
    shape = (n, 3) if rows else (n, 2, 4, 4)
    x = (np.arange(np.prod(shape)).reshape(shape) % 7).astype(dtype)
    if misuse in ("backward_first", "no_grad"):
        if misuse == "no_grad":
            with gk.no_grad():
                layer(x)
        with pytest.raises(RuntimeError, match="no cached forward"):
            layer.backward(np.ones((n, 2), dtype))
    else:
        y = layer(x)
        if misuse == "wrong_dy_shape":
            with pytest.raises(ValueError, match="dy"):
                layer.backward(np.ones((y.shape[0] + 1,) + y.shape[1:], dtype))
        else:
            with pytest.raises(TypeError, match="dy"):
                layer.backward(np.ones(y.shape, np.float32 if dtype == np.float64 else np.float64))
    MISUSE_SEEN.add((kind, dtype, n, misuse))
    count()


PLANNED = {"test_layer_forward_and_backward": 1400, "test_layer_misuse_raises": len(MISUSE_SPACE)}


@pytest.fixture(autouse=True)
def _each_test_runs_its_cases(request):
    before = CASES["count"]
    yield
    name = request.node.name
    check_ran(name, before, PLANNED)
    if name == "test_layer_forward_and_backward":  # most cases must reach the gradient checks
        checked = CASES.get("layer_gradients", 0)
        assert checked >= 0.5 * planned(PLANNED[name]), f"only {checked} cases checked gradients"
    if name == "test_layer_misuse_raises":  # the plan is the whole space: as many distinct combinations ran
        assert len(MISUSE_SEEN) >= planned(len(MISUSE_SPACE)), f"{len(MISUSE_SEEN)} of {len(MISUSE_SPACE)} combinations"
