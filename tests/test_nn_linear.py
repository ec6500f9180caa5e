"""Linear: forward/backward against float64 NumPy, gradcheck, init, accumulation, errors."""
import math

import numpy as np
import pytest

import gradkit as gk
from gradkit.nn import Linear
from nn_helpers import assert_close, check_backward_contract

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1, 1), (0, 3, 2), (3, 0, 2), (2, 3, 0), (7, 17, 5), (33, 19, 31), (64, 40, 10)]


def make(in_f, out_f, dtype, rng, bias=True):
    m = Linear(in_f, out_f, bias=bias).to(dtype)
    m.weight.data[...] = rng.uniform(-1, 1, m.weight.shape)
    if bias:
        m.bias.data[...] = rng.uniform(-1, 1, m.bias.shape)
    return m


def reference(m, x, dy, magnitude=False):
    """y, dx, dweight, dbias in float64; with `magnitude`, the same sums over the |terms|."""
    f = np.abs if magnitude else np.asarray
    w = f(m.weight.data.astype(np.float64))
    x64, dy64 = f(x.astype(np.float64)), f(dy.astype(np.float64))
    b = f(m.bias.data.astype(np.float64)) if m.bias is not None else 0.0
    return x64 @ w.T + b, dy64 @ w, dy64.T @ x64, dy64.sum(axis=0)


def check_sums(got, want, size, length, dtype, what):
    """Each entry of `got` is a sum of `length` terms (products of float inputs, exact in float64)
    whose |values| add up to `size`: in any order, with or without FMA, rounding leaves it within
    (length + 1) u * size of the exact sum (u = eps / 2); checked at twice that."""
    assert got.dtype == dtype and got.shape == want.shape, f"{what}: {got.dtype} {got.shape}"
    err = np.abs(got.astype(np.float64) - want)
    bound = (length + 1) * np.finfo(dtype).eps * size
    worst = np.max(err / np.maximum(bound, 1e-300)) if err.size else 0.0
    assert np.all(err <= bound), f"{what}: max difference {err.max():.3g}, {worst:.2g}x the bound"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,in_f,out_f", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_forward_backward_match_numpy(dtype, n, in_f, out_f, bias, rng, isa, threads):
    m = make(in_f, out_f, dtype, rng, bias)
    x = rng.uniform(-1, 1, (n, in_f)).astype(dtype)
    dy = rng.uniform(-1, 1, (n, out_f)).astype(dtype)
    y_ref, dx_ref, dw_ref, db_ref = reference(m, x, dy)
    y = m(x)
    assert y.dtype == dtype and y.shape == (n, out_f)
    dx = m.backward(dy)
    assert dx.dtype == dtype and dx.shape == (n, in_f)
    sizes = reference(m, x, dy, magnitude=True)
    check_sums(y, y_ref, sizes[0], in_f + 1, dtype, "y")
    check_sums(dx, dx_ref, sizes[1], out_f, dtype, "dx")
    check_sums(m.weight.grad, dw_ref, sizes[2], n, dtype, "dweight")
    if bias:
        check_sums(m.bias.grad, db_ref, sizes[3], n, dtype, "dbias")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_accumulate_in_place_across_two_backward_calls(dtype, rng):
    m = make(6, 4, dtype, rng)
    x1, x2 = rng.standard_normal((5, 6)).astype(dtype), rng.standard_normal((3, 6)).astype(dtype)
    dy1, dy2 = rng.standard_normal((5, 4)).astype(dtype), rng.standard_normal((3, 4)).astype(dtype)
    wgrad, bgrad = m.weight.grad, m.bias.grad
    m(x1)
    m.backward(dy1)
    m(x2)
    m.backward(dy2)
    assert m.weight.grad is wgrad and m.bias.grad is bgrad  # accumulated into the same arrays
    _, _, dw1, db1 = reference(m, x1, dy1)
    _, _, dw2, db2 = reference(m, x2, dy2)
    _, _, sw1, sb1 = reference(m, x1, dy1, magnitude=True)
    _, _, sw2, sb2 = reference(m, x2, dy2, magnitude=True)
    check_sums(m.weight.grad, dw1 + dw2, sw1 + sw2, 5 + 3, dtype, "dweight")  # two sums and their sum
    check_sums(m.bias.grad, db1 + db2, sb1 + sb2, 5 + 3, dtype, "dbias")


def test_leading_dimensions_and_strided_input(rng):
    m = make(5, 3, np.float64, rng)
    big = rng.standard_normal((2, 4, 10))
    x = big[:, :, ::2]  # (2, 4, 5), not contiguous
    dy = rng.standard_normal((2, 4, 3))
    y = m(x)
    assert y.shape == (2, 4, 3)
    dx = m.backward(dy)
    x2, dy2 = x.reshape(-1, 5), dy.reshape(-1, 3)
    y_ref, dx_ref, dw_ref, db_ref = reference(m, x2, dy2)
    assert_close(y.reshape(-1, 3), y_ref, np.float64, "y")
    assert_close(dx.reshape(-1, 5), dx_ref, np.float64, "dx")
    assert_close(m.weight.grad, dw_ref, np.float64, "dweight")
    x1 = rng.standard_normal(5)  # one sample without a batch dimension, as PyTorch
    assert_close(m(x1), m.weight.data @ x1 + m.bias.data, np.float64, "1-D y")
    assert m.backward(np.ones(3)).shape == (5,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradcheck(dtype, rng):
    m = make(7, 4, dtype, rng)
    assert gk.gradcheck(m, rng.standard_normal((3, 7)).astype(dtype))
    assert gk.gradcheck(make(3, 2, dtype, rng, bias=False), rng.standard_normal((2, 3)).astype(dtype))
    assert m.weight.dtype == dtype  # the check ran on a float64 copy


def test_default_init_is_pytorchs():
    gk.manual_seed(0)
    m = Linear(400, 300)
    bound = 1 / math.sqrt(400)
    for p in (m.weight, m.bias):
        assert p.dtype == np.float32
        assert -bound <= p.data.min() and p.data.max() <= bound
    # U(-b, b) has std b/sqrt(3): 120000 draws pin it within 1%
    assert abs(m.weight.data.std() - bound / math.sqrt(3)) < 0.01 * bound
    assert abs(m.weight.data.mean()) < 0.01 * bound
    assert m.bias.data.max() > 0.9 * bound and m.bias.data.min() < -0.9 * bound
    gk.manual_seed(0)
    again = Linear(400, 300)
    np.testing.assert_array_equal(again.weight.data, m.weight.data)
    np.testing.assert_array_equal(again.bias.data, m.bias.data)
    assert not np.array_equal(Linear(400, 300).weight.data, m.weight.data)


def test_zero_in_features_init():
    m = Linear(0, 3)
    np.testing.assert_array_equal(m.bias.data, np.zeros(3))
    np.testing.assert_array_equal(m(np.ones((2, 0), dtype=np.float32)), np.zeros((2, 3)))


def test_names_state_dict_repr():
    m = Linear(3, 2)
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    assert m.weight.shape == (2, 3) and m.bias.shape == (2,)
    assert repr(m) == "Linear(in_features=3, out_features=2, bias=True)"
    n = Linear(3, 2, bias=False)
    assert n.bias is None and list(n.state_dict()) == ["weight"]
    assert repr(n) == "Linear(in_features=3, out_features=2, bias=False)"
    n.load_state_dict({"weight": m.weight.data})
    np.testing.assert_array_equal(n.weight.data, m.weight.data)
    with pytest.raises(ValueError, match=r"weight: expected shape \(2, 3\), got \(3, 2\)"):
        n.load_state_dict({"weight": m.weight.data.T})


def test_constructor_validation():
    with pytest.raises(ValueError, match="in_features: expected an integer >= 0, got -1"):
        Linear(-1, 2)
    with pytest.raises(TypeError, match="out_features: expected an int, got float"):
        Linear(2, 2.0)


def test_bad_inputs():
    m = Linear(4, 3)
    with pytest.raises(ValueError, match=r"Linear: input: expected shape \(\*, 4\) .* got \(2, 5\)"):
        m(np.ones((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected shape \(\*, 4\).*got \(\)"):
        m(np.ones((), dtype=np.float32))
    with pytest.raises(TypeError, match="Linear: input: expected dtype float32 .* got float64"):
        m(np.ones((2, 4)))
    with pytest.raises(TypeError, match="got int64"):
        m(np.ones((2, 4), dtype=np.int64))
    check_backward_contract(m, np.ones((2, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="dy: expected dtype float32, got float64"):
        m.backward(np.ones((2, 3)))
    assert not m.weight.grad.any()  # failed calls added nothing


def test_no_grad_forward_matches_and_keeps_nothing(rng):
    m = make(5, 2, np.float32, rng)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    y = m(x)
    with gk.no_grad():
        y2 = m(x)
    np.testing.assert_array_equal(y, y2)
    assert m._cache is None


def test_backward_without_input_grad_skips_the_dx_gemm(rng, monkeypatch):
    a, b = make(6, 4, np.float64, rng), make(6, 4, np.float64, rng)
    b.load_state_dict(a.state_dict())
    x, dy = rng.standard_normal((5, 6)), rng.standard_normal((5, 4))
    a(x)
    a.backward(dy)
    calls = []
    real = gk.ops.matmul
    monkeypatch.setattr(gk.ops, "matmul", lambda *args, **kw: (calls.append(kw), real(*args, **kw))[1])
    b(x)
    assert b.backward(dy, input_grad=False) is None
    assert len(calls) == 2 and calls[1].get("trans_a") and calls[1].get("beta") == 1.0  # forward, then dW only
    np.testing.assert_array_equal(b.weight.grad, a.weight.grad)
    np.testing.assert_array_equal(b.bias.grad, a.bias.grad)
