"""Activations: forward and backward against float64 NumPy references, on every
ISA, 1 and 2 threads (bit-identical), SIMD tails, extreme values and NaN."""
import math

import numpy as np
import pytest

import gradkit as gk
from gradkit import _core, ops
from nn_helpers import check_backward_contract

SIZES = [0, 1, 15, 17, 31, 33, 1000, 1000003]
ACTS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu"]
FROM_OUTPUT = {"sigmoid", "tanh", "relu"}
ALPHA = {"leaky_relu": 0.01, "elu": 1.0}  # the module defaults
_erfc = np.frompyfunc(math.erfc, 1, 1)


def erfc64(x):
    return _erfc(np.asarray(x, np.float64)).astype(np.float64)


def ref_forward(name, x, alpha=None):
    """float64 reference of the forward."""
    x = np.asarray(x, np.float64)
    a = ALPHA.get(name) if alpha is None else alpha
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "sigmoid":
            e = np.exp(-np.abs(x))
            return np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        if name == "tanh":
            return np.tanh(x)
        if name == "relu":
            return np.where(x < 0, 0.0, x)
        if name == "leaky_relu":
            return np.where(x > 0, x, a * x)
        if name == "elu":
            return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))
        if name == "gelu":
            xc = np.clip(x, -40, 40)
            return np.where(np.isnan(x), np.nan, np.where(x > 40, x, xc * 0.5 * erfc64(-xc / math.sqrt(2))))
    raise ValueError(name)


def ref_backward(name, dy, s, alpha=None):
    """float64 reference of dx from dy and the saved tensor s (y or x, as the kernel)."""
    dy = np.asarray(dy, np.float64)
    s = np.asarray(s, np.float64)
    a = ALPHA.get(name) if alpha is None else alpha
    if name == "sigmoid":
        return dy * s * (1 - s)
    if name == "tanh":
        return dy * (1 - s * s)
    if name == "relu":
        return np.where(s > 0, dy, 0.0)
    if name == "leaky_relu":
        return np.where(s > 0, dy, a * dy)
    if name == "elu":
        return np.where(s > 0, dy, dy * a * np.exp(np.minimum(s, 0)))
    if name == "gelu":
        cdf = 0.5 * erfc64(-s / math.sqrt(2))
        pdf = np.exp(-0.5 * s * s) / math.sqrt(2 * math.pi)
        return dy * (cdf + s * pdf)
    raise ValueError(name)


def forward(name, x, alpha=None, out=None):
    if name in ALPHA:
        return getattr(ops, name)(x, ALPHA[name] if alpha is None else alpha, out=out)
    return getattr(ops, name)(x, out=out)


def backward(name, dy, s, alpha=None):
    fn = getattr(ops, name + "_backward")
    if name in ALPHA:
        return fn(dy, s, ALPHA[name] if alpha is None else alpha)
    return fn(dy, s)


# Tolerances in units in the last place of the float64 reference rounded to the
# dtype (denormal results: units of the smallest denormal).
ULP_TOL = {np.float32: {"sigmoid": 4, "tanh": 4, "relu": 0, "leaky_relu": 1, "elu": 4, "gelu": 8},
           np.float64: {"sigmoid": 4, "tanh": 4, "relu": 0, "leaky_relu": 1, "elu": 4, "gelu": 8192}}  # float64 gelu: erfc(x / sqrt 2) amplifies the rounding of x / sqrt 2 by ~x^2


def assert_ulp(got, ref, dtype, tol, what):
    got64 = got.astype(np.float64)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(got64), nan), f"{what}: NaN where the reference has none (or the reverse)"
    ref, got64 = ref[~nan], got64[~nan]
    inf = np.isinf(ref.astype(dtype))
    assert np.array_equal(got64[inf], ref.astype(dtype)[inf].astype(np.float64)), f"{what}: infinities differ"
    ref, got64 = ref[~inf], got64[~inf]
    if ref.size == 0:
        return
    ulp = np.maximum(np.abs(np.spacing(ref.astype(dtype))).astype(np.float64), float(np.finfo(dtype).smallest_subnormal))
    err = np.abs(got64 - ref) / ulp
    i = int(np.argmax(err))
    assert err[i] <= tol, f"{what}: max error {err[i]:.2f} ulp > {tol} (ref {ref[i]!r}, got {got64[i]!r})"


_cache = {}


def data(n, dtype, seed=0):
    key = (n, np.dtype(dtype).name, seed)
    if key not in _cache:
        rng = np.random.default_rng(seed + n)
        x = rng.standard_normal(n) * 4
        x[::7] *= 6  # some large magnitudes
        _cache[key] = x.astype(dtype)
    return _cache[key]


_ref_cache = {}


def cached_ref(name, n, dtype):
    key = (name, n, np.dtype(dtype).name)
    if key not in _ref_cache:
        _ref_cache[key] = ref_forward(name, data(n, dtype))
    return _ref_cache[key]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", ACTS)
def test_forward_matches_float64(name, n, dtype, isa, threads):
    x = data(n, dtype)
    y = forward(name, x)
    assert y.dtype == dtype and y.shape == x.shape
    assert_ulp(y, cached_ref(name, n, dtype), dtype, ULP_TOL[dtype][name], f"{name} {isa} n={n}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ACTS)
def test_forward_dense_sweep(name, dtype, isa):
    """Every float in steps over [-110, 110] (both saturations, the denormal
    cut-off of exp near -87..-104) and a log sweep of tiny magnitudes."""
    x = np.concatenate([np.linspace(-110, 110, 200001), np.linspace(-3, 3, 100001),
                        -np.logspace(-44, 1, 4000), np.logspace(-44, 1, 4000)]).astype(dtype)
    assert_ulp(forward(name, x), ref_forward(name, x), dtype, ULP_TOL[dtype][name], f"{name} sweep {isa}")


SPECIAL = [0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1e-30, -1e-30, 20.0, -20.0, 88.7, -87.4, 90.0, -90.0,
           103.0, -103.0, 104.0, -104.0, 1e4, -1e4, np.inf, -np.inf, np.nan]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ACTS)
def test_forward_extremes(name, dtype, isa):
    x = np.array(SPECIAL, dtype=dtype)
    y = forward(name, x)
    ref = ref_forward(name, x)
    assert_ulp(y, ref, dtype, ULP_TOL[dtype][name], f"{name} extremes {isa}")
    assert np.isnan(y[-1]), f"{name}(nan) = {y[-1]}, expected nan"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturation_values(dtype, isa):
    x = np.array([-90.0, 90.0, -20.0, 20.0, -1e4, 1e4], dtype=dtype)
    s = ops.sigmoid(x)
    assert s[1] == 1 and s[5] == 1 and s[4] == 0, s
    assert 0 < s[0] < 1e-38, f"sigmoid(-90) = {s[0]!r}, expected the denormal exp(-90) ~ 8.2e-40"
    assert abs(s[0] / math.exp(-90) - 1) < (1e-2 if dtype == np.float32 else 1e-12)
    t = ops.tanh(x)
    assert list(t) == [-1, 1, -1, 1, -1, 1], t
    g = ops.gelu(x)
    assert g[1] == 90 and g[3] == 20 and g[5] == 1e4 and g[0] == 0 and g[4] == 0, g
    e = ops.elu(x)
    assert e[0] == -1 and e[4] == -1, e
    assert np.signbit(ops.tanh(np.array([-0.0], dtype)))[0], "tanh(-0) must be -0"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", ACTS)
def test_backward_matches_float64(name, n, dtype, isa, threads):
    x = data(n, dtype)
    y = forward(name, x)
    s = y if name in FROM_OUTPUT else x
    dy = data(n, dtype, seed=1)
    dx = backward(name, dy, s)
    assert dx.dtype == dtype and dx.shape == x.shape
    ref = ref_backward(name, dy, s)
    eps = float(np.finfo(dtype).eps)
    tol = (16 if name == "gelu" else 4) * eps * (np.abs(ref) + np.abs(dy.astype(np.float64)))
    err = np.abs(dx.astype(np.float64) - ref)
    if n:
        i = int(np.argmax(err - tol))
        assert err[i] <= tol[i], f"{name} backward {isa} n={n}: max error {err[i]:.3g} > {tol[i]:.3g} at x={x[i]!r}"


@pytest.mark.parametrize("name", ACTS)
def test_backward_matches_finite_differences(name):
    """The derivative formulas themselves, in float64: central differences of the forward."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(2001) * 3
    x = x[np.abs(x) > 1e-3]  # away from the kinks of relu / leaky_relu / elu
    h = 1e-6
    num = (forward(name, x + h) - forward(name, x - h)) / (2 * h)
    s = forward(name, x) if name in FROM_OUTPUT else x
    dx = backward(name, np.ones_like(x), s)
    err = np.abs(dx - num)
    assert err.max() < 1e-7, f"{name}: analytic vs numeric derivative, max difference {err.max():.3g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ACTS)
def test_threads_bit_identical(name, dtype, isa):
    x = data(1000003, dtype)
    dy = data(1000003, dtype, seed=1)
    outs = []
    for nt in (1, 2):
        gk.set_num_threads(nt)
        y = forward(name, x)
        outs.append((y, backward(name, dy, y if name in FROM_OUTPUT else x)))
    assert np.array_equal(outs[0][0], outs[1][0], equal_nan=True), f"{name} forward differs between 1 and 2 threads"
    assert np.array_equal(outs[0][1], outs[1][1], equal_nan=True), f"{name} backward differs between 1 and 2 threads"


@pytest.mark.parametrize("name", ACTS)
def test_lanes_independent_of_neighbours(name, isa):
    """A lane's result depends on its own x only: fast paths chosen per vector
    (GELU's polynomial for |x| < 3.875) must agree bit for bit with the path
    taken when a neighbour is out of range, NaN or infinite."""
    x = np.linspace(-3.9, 3.9, 4099).astype(np.float32)
    alone = forward(name, x)
    mixed = x.copy()
    odd = [10.0, -20.0, np.nan, np.inf, -np.inf, 5.0, -4.0]
    where = np.arange(3, x.size, 11)
    mixed[where] = np.resize(np.array(odd, np.float32), where.size)
    got = forward(name, mixed)
    keep = np.ones(x.size, bool)
    keep[where] = False
    assert np.array_equal(got[keep], alone[keep]), f"{name} {isa}: results depend on neighbouring lanes"
    assert_ulp(got[~keep], ref_forward(name, mixed[~keep]), np.float32, ULP_TOL[np.float32][name], f"{name} {isa} odd lanes")


@pytest.mark.parametrize("n", [1, 7, 8, 255, 256, 257, 777, 2053])
@pytest.mark.parametrize("tail_share", [0.0, 0.2, 0.9, 1.0])
def test_gelu_tail_lanes_gathered_across_a_block(isa, threads, n, tail_share):
    """GELU forward gathers the lanes beyond its fast path (|x| >= 3.75 on AVX2, NaN, +-inf) of a block of
    values into full vectors and blends their results back: every element equals GELU of that element
    alone, bit for bit, however many of its neighbours are tails; and within the ULP bound."""
    rng = np.random.default_rng(n)
    x = rng.uniform(-3.7, 3.7, n)
    tail = rng.random(n) < tail_share
    x[tail] = rng.choice([-1.0, 1.0], tail.sum()) * rng.uniform(3.75, 20.0, tail.sum())
    x = x.astype(np.float32)
    specials = np.array([np.nan, np.inf, -np.inf, 3.75, -3.75, 3.7499998, -3.7499998, 0.0, -0.0], np.float32)
    at = rng.permutation(n)[:min(n, specials.size)] if tail_share > 0 else np.array([], int)
    x[at] = specials[:at.size]
    got = ops.gelu(x)
    alone = np.array([ops.gelu(x[i:i + 1])[0] for i in range(n)], np.float32)
    assert got.tobytes() == alone.tobytes(), f"gelu {isa} n={n}: an element depends on its neighbours"
    assert_ulp(got, ref_forward("gelu", x), np.float32, ULP_TOL[np.float32]["gelu"], f"gelu {isa} n={n}")


# in 2^-23 (|GELU'| + 1): simd_math.h's sweeps (AVX2 measures 0.29 since its tail formula; 0.37 was its bound)
GELU_GRAD_BOUND = {"avx512": 0.47, "avx2": 0.37, "generic": 1.34}


def test_gelu_grad_tail_lanes(isa):
    """float32 GELU' beyond the piecewise fast path (|x| >= 3.75 on AVX2, 3.875 on AVX-512), dense from
    3.7 to 16 on both sides and mixed with fast lanes: within simd_math.h's bound of float64, lane by
    lane as when computed alone; NaN stays NaN, and the far tails are 1 and (almost) 0."""
    dtype = np.float32
    a = np.linspace(3.7, 16.0, 40001)
    x = np.concatenate([a, -a, np.random.default_rng(5).uniform(-4.0, 4.0, 4001)]).astype(dtype)
    got = ops.gelu_backward(np.ones_like(x), x).astype(np.float64)
    ref = ref_backward("gelu", np.ones(x.size), x)
    err = np.abs(got - ref) / (float(np.finfo(dtype).eps) * (np.abs(ref) + 1))
    i = int(np.argmax(err))
    assert err[i] <= GELU_GRAD_BOUND[isa], f"gelu' {isa}: error {err[i]:.3f} * 2^-23 (|g| + 1) at x = {x[i]!r}"
    alone = np.array([ops.gelu_backward(np.ones(1, dtype), x[i:i + 1])[0] for i in range(0, x.size, 97)])
    assert alone.tobytes() == got[::97].astype(dtype).tobytes(), "gelu' depends on neighbouring lanes"
    special = ops.gelu_backward(np.ones(3, dtype), np.array([np.nan, 30.0, -30.0], dtype))
    assert np.isnan(special[0]) and special[1] == 1 and abs(special[2]) < 1e-30, special


@pytest.mark.parametrize("name", ACTS)
def test_streaming_and_misaligned_outputs(name, isa, threads):
    """A large output (non-temporal stores) at an unaligned address, and in place."""
    n = (16 << 20) // 4 + 37
    x = data(n, np.float32)
    expected = forward(name, x[:100003])
    buf = np.empty(n + 1, np.float32)
    y = forward(name, x, out=buf[1:])
    assert y.base is buf or y is buf[1:] or np.shares_memory(y, buf)
    assert np.array_equal(y[:100003], expected, equal_nan=True), f"{name}: streamed result differs"
    z = x.copy()
    r = forward(name, z, out=z)
    assert np.shares_memory(r, z)
    assert np.array_equal(z, y, equal_nan=True), f"{name}: in-place result differs"


@pytest.mark.parametrize("name", ["leaky_relu", "elu"])
def test_parameters_alpha(name):
    x = data(1001, np.float64)
    for a in (0.0, 0.2, 2.5, -0.5):
        y = forward(name, x, alpha=a)
        np.testing.assert_allclose(y, ref_forward(name, x, a), rtol=1e-14, atol=0, err_msg=f"{name} alpha={a}")
        dy = data(1001, np.float64, seed=3)
        np.testing.assert_allclose(backward(name, dy, x, alpha=a), ref_backward(name, dy, x, a), rtol=1e-14,
                                   atol=1e-300, err_msg=f"{name} backward alpha={a}")


def test_noncontiguous_and_nd_inputs():
    x = data(3 * 5 * 7 * 4, np.float32).reshape(3, 5, 7, 4)
    view = x[:, ::2, :, 1:]
    y = ops.gelu(view)
    assert y.shape == view.shape and y.flags.c_contiguous
    assert_ulp(y, ref_forward("gelu", view), np.float32, 8, "gelu strided")


# ---- validation -----------------------------------------------------------------------------------


def test_bad_inputs_raise():
    x = np.ones(5, np.float32)
    with pytest.raises(TypeError, match=r"x: expected .*float32 or float64.*int64"):
        ops.sigmoid(np.ones(5, np.int64))
    with pytest.raises(TypeError, match="x: expected"):
        ops.relu([1.0, 2.0])
    with pytest.raises(TypeError, match="float16"):
        ops.tanh(np.ones(3, np.float16))
    with pytest.raises(ValueError, match=r"out: expected shape \(5,\), got shape \(4,\)"):
        ops.relu(x, out=np.empty(4, np.float32))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        ops.relu(x, out=np.empty(5, np.float64))
    with pytest.raises(ValueError, match="out: expected a C-contiguous"):
        ops.relu(x, out=np.empty(10, np.float32)[::2])
    big = np.ones(10, np.float32)
    with pytest.raises(ValueError, match="out: .*partially overlapping"):
        ops.relu(big[:5], out=big[2:7])
    with pytest.raises(ValueError, match=r"dy: expected shape \(5,\), got shape \(6,\)"):
        ops.sigmoid_backward(np.ones(6, np.float32), x)
    with pytest.raises(TypeError, match="y: expected dtype float32"):
        ops.tanh_backward(x, np.ones(5, np.float64))
    with pytest.raises(TypeError, match="x: expected dtype float64"):
        ops.gelu_backward(np.ones(5), x)


MODULES = [(gk.nn.Sigmoid, "sigmoid", {}), (gk.nn.Tanh, "tanh", {}), (gk.nn.ReLU, "relu", {}),
           (gk.nn.LeakyReLU, "leaky_relu", {"negative_slope": 0.2}), (gk.nn.ELU, "elu", {"alpha": 0.7}),
           (gk.nn.GELU, "gelu", {})]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,name,kwargs", MODULES)
def test_modules(cls, name, kwargs, dtype):
    m = cls(**kwargs)
    alpha = next(iter(kwargs.values()), None)
    x = data(2 * 3 * 33, dtype).reshape(2, 3, 33)
    y = m(x)
    assert y.dtype == dtype and y.shape == x.shape
    assert np.array_equal(y, forward(name, x, alpha))
    saved = m._saved()["saved"]
    assert saved is (y if name in FROM_OUTPUT else x), "backward must keep only y (sigmoid, tanh, relu) or x"
    dy = data(2 * 3 * 33, dtype, seed=2).reshape(2, 3, 33)
    dx = m.backward(dy)
    assert np.array_equal(dx, backward(name, dy, y if name in FROM_OUTPUT else x, alpha))
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3, 33\)"):
        m.backward(dy[:1])
    with pytest.raises(TypeError, match="dy: expected dtype"):
        m.backward(dy.astype(np.float16))
    if kwargs:
        assert repr(m) == f"{cls.__name__}({next(iter(kwargs))}={alpha})"
    assert m.parameters() == []


@pytest.mark.parametrize("cls,name,kwargs", MODULES)
def test_module_backward_needs_forward(cls, name, kwargs):
    m = cls(**kwargs)
    check_backward_contract(m, np.ones(3, np.float32))
    with pytest.raises(TypeError, match="expected dtype float32 or float64, got int64"):
        m(np.ones(3, np.int64))


def test_module_argument_validation():
    with pytest.raises(TypeError, match="LeakyReLU: negative_slope: expected a real number"):
        gk.nn.LeakyReLU("0.1")
    with pytest.raises(TypeError, match="ELU: alpha: expected a real number"):
        gk.nn.ELU(None)
    assert gk.nn.LeakyReLU().negative_slope == 0.01 and gk.nn.ELU().alpha == 1.0
