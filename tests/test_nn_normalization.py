"""Normalization kernels and layers against float64 NumPy references.

Covers batch norm (train/eval, running statistics as PyTorch updates them,
track_running_stats=False, cumulative momentum), layer norm, group norm and
instance norm; forward and backward; every ISA and 1/2 threads; odd sizes;
bit-identical results across thread counts; data with mean 1e4 and std 1e-2.
"""
import numpy as np
import pytest

import gradkit as gk
from gradkit import ops

# Tolerances (max abs error relative to max(1, |reference|)) per dtype.
TOL = {np.float32: 2e-5, np.float64: 1e-11}


def assert_close(got, want, tol, what):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if got.size == 0:
        return
    err = np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))
    assert err <= tol, f"{what}: max scaled difference {err:.3e} > tol {tol:.1e}"


# -- float64 references ---------------------------------------------------------------------------
def norm_ref(xg, eps):
    """xg (groups, elements) float64 -> xhat, mean, biased var, rstd (per group)."""
    mean = xg.mean(axis=1, keepdims=True)
    var = ((xg - mean) ** 2).mean(axis=1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    return (xg - mean) * rstd, mean[:, 0], var[:, 0], rstd[:, 0]


def norm_backward_ref(dxhat, xhat, rstd):
    """Gradient through xhat = (x - mean) * rstd with batch statistics, per group row."""
    return rstd[:, None] * (dxhat - dxhat.mean(axis=1, keepdims=True)
                            - xhat * (dxhat * xhat).mean(axis=1, keepdims=True))


def channel_first(x):
    """(N, C, *) -> (C, N * S)."""
    n, c = x.shape[:2]
    return np.moveaxis(x.reshape(n, c, -1), 1, 0).reshape(c, -1)


def from_channel_first(xc, shape):
    n, c = shape[:2]
    return np.moveaxis(xc.reshape(c, n, -1), 0, 1).reshape(shape)


def bn_ref(x, w, b, dy, eps):
    """Training batch norm: y, mean, biased var, dx, dw, db (float64)."""
    x64 = x.astype(np.float64)
    xhat_c, mean, var, rstd = norm_ref(channel_first(x64), eps)
    xhat = from_channel_first(xhat_c, x.shape)
    cshape = (1, -1) + (1,) * (x.ndim - 2)
    w64 = np.ones(x.shape[1]) if w is None else w.astype(np.float64)
    b64 = np.zeros(x.shape[1]) if b is None else b.astype(np.float64)
    y = xhat * w64.reshape(cshape) + b64.reshape(cshape)
    dy64 = dy.astype(np.float64)
    dxhat = dy64 * w64.reshape(cshape)
    dx = from_channel_first(norm_backward_ref(channel_first(dxhat), xhat_c, rstd), x.shape)
    axes = (0,) + tuple(range(2, x.ndim))
    return y, mean, var, dx, (dy64 * xhat).sum(axis=axes), dy64.sum(axis=axes)


def gn_ref(x, groups, w, b, dy, eps):
    """Group norm: y, mean (N, G), rstd (N, G), dx, dw, db (float64)."""
    n, c = x.shape[:2]
    x64 = x.astype(np.float64)
    xhat_g, mean, _, rstd = norm_ref(x64.reshape(n * groups, int(np.prod(x.shape[1:])) // groups), eps)
    xhat = xhat_g.reshape(x.shape)
    cshape = (1, -1) + (1,) * (x.ndim - 2)
    w64 = np.ones(c) if w is None else w.astype(np.float64)
    b64 = np.zeros(c) if b is None else b.astype(np.float64)
    y = xhat * w64.reshape(cshape) + b64.reshape(cshape)
    dy64 = dy.astype(np.float64)
    dxhat = (dy64 * w64.reshape(cshape)).reshape(xhat_g.shape)
    dx = norm_backward_ref(dxhat, xhat_g, rstd).reshape(x.shape)
    axes = (0,) + tuple(range(2, x.ndim))
    return (y, mean.reshape(n, groups), rstd.reshape(n, groups), dx, (dy64 * xhat).sum(axis=axes),
            dy64.sum(axis=axes))


def ln_ref(x, nshape, w, b, dy, eps):
    """Layer norm: y, mean, rstd, dx, dw, db (float64)."""
    k = len(nshape)
    lead = x.shape[:x.ndim - k]
    d = int(np.prod(nshape))
    x64 = x.astype(np.float64).reshape(-1, d)
    xhat, mean, _, rstd = norm_ref(x64, eps)
    w64 = np.ones(d) if w is None else w.astype(np.float64).reshape(d)
    b64 = np.zeros(d) if b is None else b.astype(np.float64).reshape(d)
    y = xhat * w64 + b64
    dy64 = dy.astype(np.float64).reshape(-1, d)
    dx = norm_backward_ref(dy64 * w64, xhat, rstd)
    return (y.reshape(x.shape), mean.reshape(lead), rstd.reshape(lead), dx.reshape(x.shape),
            (dy64 * xhat).sum(axis=0).reshape(nshape), dy64.sum(axis=0).reshape(nshape))


def rand(rng, shape, dtype, loc=0.0, scale=1.0):
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


DTYPES = [np.float32, np.float64]


def case(rng, shape, dtype, pshape, affine, loc, scale):
    """x (mean loc, std scale), dy, and weight and bias of shape pshape (None unless affine)."""
    x, dy = rand(rng, shape, dtype, loc=loc, scale=scale), rand(rng, shape, dtype)
    w, b = (rand(rng, pshape, dtype), rand(rng, pshape, dtype)) if affine else (None, None)
    return x, dy, w, b


def run_and_check(kind, arg, x, dy, w, b, eps, tol, tol_dx, scale_dx=1.0):
    """Forward and backward of one kernel ("ln": arg = normalized_shape, "gn": arg = num_groups,
    "bn": batch statistics) against the float64 reference; the parameter gradients are
    ADDED to non-zero arrays. dx is compared after dividing by scale_dx (its natural size)."""
    rng = np.random.default_rng(99)
    pshape = () if w is None else w.shape
    dw0, db0 = rand(rng, pshape, x.dtype), rand(rng, pshape, x.dtype)
    dw, db = (dw0.copy(), db0.copy()) if w is not None else (None, None)
    if kind == "ln":
        y, mean, rstd = ops.layer_norm_forward(x, arg, w, b, eps=eps)
        dx = ops.layer_norm_backward(dy, x, mean, rstd, arg, w, dw, db)
        y_ref, mean_ref, rstd_ref, dx_ref, dw_ref, db_ref = ln_ref(x, arg, w, b, dy, eps)
    elif kind == "gn":
        y, mean, rstd = ops.group_norm_forward(x, arg, w, b, eps=eps)
        dx = ops.group_norm_backward(dy, x, mean, rstd, arg, w, dw, db)
        y_ref, mean_ref, rstd_ref, dx_ref, dw_ref, db_ref = gn_ref(x, arg, w, b, dy, eps)
    else:
        y, mean, rstd = ops.batch_norm_forward(x, w, b, training=True, eps=eps)
        dx = ops.batch_norm_backward(dy, x, mean, rstd, w, dw, db, training=True)
        y_ref, mean_ref, var_ref, dx_ref, dw_ref, db_ref = bn_ref(x, w, b, dy, eps)
        rstd_ref = 1 / np.sqrt(var_ref + eps)
    assert y.dtype == x.dtype and dx.dtype == x.dtype and mean.dtype == np.float64
    assert_close(y, y_ref, tol, "y")
    # the mean's error in units of the standard deviation (what the normalised output sees)
    assert_close((mean - mean_ref) * rstd_ref, np.zeros_like(mean_ref), tol, "mean")
    assert_close(rstd / rstd_ref, np.ones_like(rstd_ref), tol, "rstd")
    assert_close(dx / scale_dx, dx_ref / scale_dx, tol_dx, "dx")
    if w is not None:
        assert_close(dw, dw0 + dw_ref, tol_dx, "dweight")
        assert_close(db, db0 + db_ref, tol_dx, "dbias")


# -- batch norm -----------------------------------------------------------------------------------
def check_running_stats(rm, rv, rm0, rv0, mean_ref, var_ref, count, tol):
    """PyTorch's running update (momentum 0.1): biased var normalises, the unbiased one is averaged in."""
    assert_close(rm, 0.9 * rm0.astype(np.float64) + 0.1 * mean_ref, tol, "running_mean")
    assert_close(rv, 0.9 * rv0.astype(np.float64) + 0.1 * var_ref * count / (count - 1), tol, "running_var")


BN_SHAPES = [(2, 1), (5, 3), (33, 17), (70, 130), (4, 3, 7), (2, 3, 5, 7), (3, 5, 1, 1), (1, 4, 3, 3),
             (4, 19, 9, 9), (8, 16, 28, 28)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train_matches_reference(isa, threads, rng, dtype, shape, affine):
    c = shape[1]
    x, dy, w, b = case(rng, shape, dtype, c, affine, loc=0.5, scale=2.0)
    rm0, rv0 = rand(rng, c, dtype), (1.0 + rng.random(c)).astype(dtype)
    rm, rv = rm0.copy(), rv0.copy()
    y, mean, rstd = ops.batch_norm_forward(x, w, b, rm, rv, training=True, momentum=0.1, eps=1e-5)
    y_ref, mean_ref, var_ref, dx_ref, dw_ref, db_ref = bn_ref(x, w, b, dy, 1e-5)
    tol = TOL[dtype]
    assert y.dtype == dtype and mean.dtype == np.float64
    assert_close(y, y_ref, tol * 10, "y")
    assert_close(mean, mean_ref, tol, "mean")
    assert_close(rstd, 1 / np.sqrt(var_ref + 1e-5), tol, "rstd")
    check_running_stats(rm, rv, rm0, rv0, mean_ref, var_ref, x.size // c, tol)
    dw0 = rand(rng, c, dtype)
    db0 = rand(rng, c, dtype)
    dw, db = (dw0.copy(), db0.copy()) if affine else (None, None)
    dx = ops.batch_norm_backward(dy, x, mean, rstd, w, dw, db, training=True)
    assert_close(dx, dx_ref, tol * 10, "dx")
    if affine:  # backward ADDS into the parameter gradients
        assert_close(dw, dw0 + dw_ref, tol * 10, "dweight")
        assert_close(db, db0 + db_ref, tol * 10, "dbias")


def bn_relu_ref(x, w, b, res, dy, eps):
    """relu(batch_norm(x) + res) in float64: y, its pre-activation, dx, dres, dw, db."""
    y_bn, _, _, _, _, _ = bn_ref(x, w, b, dy, eps)
    pre = y_bn + (0.0 if res is None else res.astype(np.float64))
    g = np.where(pre > 0, dy.astype(np.float64), 0.0)  # the gradient the ReLU passes
    _, _, _, dx, dw, db = bn_ref(x, w, b, g, eps)
    return np.maximum(pre, 0.0), pre, dx, g, dw, db


BN_RELU_SHAPES = [(2, 1), (5, 3), (70, 130), (1, 4, 3, 3), (2, 3, 5, 7), (3, 5, 1, 1), (4, 19, 9, 9),
                  (8, 16, 28, 28), (3, 17, 4, 13)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_RELU_SHAPES, ids=str)
@pytest.mark.parametrize("with_res", [False, True], ids=["relu", "add_relu"])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_relu_matches_reference(isa, threads, rng, dtype, shape, with_res, affine):
    c = shape[1]
    x, dy, w, b = case(rng, shape, dtype, c, affine, loc=0.5, scale=2.0)
    res = rand(rng, shape, dtype) if with_res else None
    rm0, rv0 = rand(rng, c, dtype), (1.0 + rng.random(c)).astype(dtype)
    rm, rv = rm0.copy(), rv0.copy()
    y, mean, rstd = ops.batch_norm_relu_forward(x, w, b, rm, rv, residual=res, training=True, eps=1e-5)
    y_ref, pre, dx_ref, dres_ref, dw_ref, db_ref = bn_relu_ref(x, w, b, res, dy, 1e-5)
    _, mean_ref, var_ref, _, _, _ = bn_ref(x, w, b, dy, 1e-5)
    tol = TOL[dtype] * 10
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, y_ref, tol, "y")
    assert_close(mean, mean_ref, tol, "mean")
    assert_close(rstd, 1 / np.sqrt(var_ref + 1e-5), tol, "rstd")
    check_running_stats(rm, rv, rm0, rv0, mean_ref, var_ref, x.size // c, tol)
    # the mask of the gradient from the kernel's own y (a pre-activation within rounding of 0 may
    # fall either side): the reference's gradient where both agree
    agree = (y > 0) == (pre > 0)
    dw0, db0 = rand(rng, c, dtype), rand(rng, c, dtype)
    dw, db = (dw0.copy(), db0.copy()) if affine else (None, None)
    dx, dres = ops.batch_norm_relu_backward(dy, y, x, mean, rstd, w, dw, db, need_dresidual=with_res)
    assert (dres is None) == (not with_res)
    if not agree.all():  # rare: recompute the reference with the kernel's mask
        g = np.where(y > 0, dy.astype(np.float64), 0.0)
        _, _, _, dx_ref, dw_ref, db_ref = bn_ref(x, w, b, g, 1e-5)
        dres_ref = g
    assert_close(dx, dx_ref, tol, "dx")
    if with_res:
        assert dres.dtype == dtype
        assert_close(dres, dres_ref, 0.0, "dresidual")
    if affine:  # ADDED into the parameter gradients
        assert_close(dw, dw0 + dw_ref, tol, "dweight")
        assert_close(db, db0 + db_ref, tol, "dbias")
    # the same as the unfused ops: batch norm, add, relu; their backward
    y_bn, mean2, rstd2 = ops.batch_norm_forward(x, w, b, training=True, eps=1e-5)
    y_sep = ops.relu(y_bn + res if with_res else y_bn)
    assert_close(y, y_sep, tol, "y vs the unfused ops")
    dx_sep = ops.batch_norm_backward(ops.relu_backward(dy, y_sep), x, mean2, rstd2, w)
    if ((y_sep > 0) == (y > 0)).all():
        assert_close(dx, dx_sep, tol, "dx vs the unfused ops")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 5, 7)], ids=str)
@pytest.mark.parametrize("with_res", [False, True], ids=["relu", "add_relu"])
def test_batch_norm_relu_eval_and_no_param_grads(isa, threads, rng, dtype, shape, with_res):
    """Running statistics: one pass each way; dresidual still written without a sums pass."""
    c = shape[1]
    x, dy = rand(rng, shape, dtype, loc=0.5), rand(rng, shape, dtype)
    res = rand(rng, shape, dtype) if with_res else None
    w, b = rand(rng, c, dtype), rand(rng, c, dtype)
    rm, rv = rand(rng, c, dtype), (1.0 + rng.random(c)).astype(dtype)
    y, mean, rstd = ops.batch_norm_relu_forward(x, w, b, rm, rv, residual=res, training=False)
    cshape = (1, -1) + (1,) * (x.ndim - 2)
    a = w.astype(np.float64) / np.sqrt(rv.astype(np.float64) + 1e-5)
    pre = (x - rm.reshape(cshape)) * a.reshape(cshape) + b.reshape(cshape) + (0.0 if res is None else res)
    assert_close(y, np.maximum(pre, 0.0), TOL[dtype] * 10, "y")
    dx, dres = ops.batch_norm_relu_backward(dy, y, x, mean, rstd, w, need_dresidual=with_res, training=False)
    g = np.where(y > 0, dy.astype(np.float64), 0.0)
    assert_close(dx, g * a.reshape(cshape), TOL[dtype] * 10, "dx")
    if with_res:
        assert_close(dres, g, 0.0, "dresidual")


def test_batch_norm_relu_nan_and_empty(isa):
    x = np.array([[1.0, np.nan], [2.0, 3.0], [0.5, 1.0]], np.float32)
    y, mean, rstd = ops.batch_norm_relu_forward(x)
    assert np.isnan(y[:, 1]).all() and not np.isnan(y[:, 0]).any()
    dx, dres = ops.batch_norm_relu_backward(np.ones_like(x), y, x, mean, rstd, need_dresidual=True)
    assert np.isnan(dx[:, 1]).all()
    assert (dres[:, 1] == 1).all()  # a NaN output passes its gradient, as relu_backward
    e = np.zeros((0, 3, 4, 4), np.float32)
    y, mean, rstd = ops.batch_norm_relu_forward(e, residual=e)
    assert y.shape == e.shape
    dx, dres = ops.batch_norm_relu_backward(e, y, e, mean, rstd, need_dresidual=True)
    assert dx.shape == e.shape and dres.shape == e.shape


def test_batch_norm_relu_validation():
    x = np.ones((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="residual"):
        ops.batch_norm_relu_forward(x, residual=np.ones((2, 3, 4, 5), np.float32))
    with pytest.raises(TypeError, match="residual"):
        ops.batch_norm_relu_forward(x, residual=np.ones((2, 3, 4, 4), np.float64))
    y, mean, rstd = ops.batch_norm_relu_forward(x + np.arange(4, dtype=np.float32))
    with pytest.raises(ValueError, match="output"):
        ops.batch_norm_relu_backward(x, y[:1], x, mean, rstd)
    with pytest.raises(ValueError, match="dy"):
        ops.batch_norm_relu_backward(x[:1], y, x, mean, rstd)
    with pytest.raises(ValueError, match="more than 1 value"):
        ops.batch_norm_relu_forward(np.ones((1, 3), np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 3), (70, 130), (2, 3, 5, 7), (4, 19, 9, 9)], ids=str)
def test_batch_norm_eval_uses_running_stats(isa, threads, rng, dtype, shape):
    c = shape[1]
    x, dy = rand(rng, shape, dtype), rand(rng, shape, dtype)
    w, b = rand(rng, c, dtype), rand(rng, c, dtype)
    rm, rv = rand(rng, c, dtype), (0.5 + rng.random(c)).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, rstd = ops.batch_norm_forward(x, w, b, rm, rv, training=False, eps=1e-3)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    cshape = (1, -1) + (1,) * (x.ndim - 2)
    r64 = 1 / np.sqrt(rv0.astype(np.float64) + 1e-3)
    xhat = (x - rm0.astype(np.float64).reshape(cshape)) * r64.reshape(cshape)
    y_ref = xhat * w.reshape(cshape) + b.reshape(cshape)
    tol = TOL[dtype]
    assert_close(y, y_ref, tol * 10, "y")
    dw, db = np.zeros(c, dtype), np.zeros(c, dtype)
    dx = ops.batch_norm_backward(dy, x, mean, rstd, w, dw, db, training=False)
    axes = (0,) + tuple(range(2, x.ndim))
    assert_close(dx, dy * (w.astype(np.float64) * r64).reshape(cshape), tol, "dx")
    assert_close(dw, (dy * xhat).sum(axis=axes), tol * 10, "dweight")
    assert_close(db, dy.astype(np.float64).sum(axis=axes), tol * 10, "dbias")


@pytest.mark.parametrize("kind,shape,arg", [
    ("bn", (2, 1), None), ("bn", (64, 33), None), ("bn", (3, 4, 5, 5), None), ("bn", (16, 8, 16, 16), None),
    ("ln", (3, 17), (17,)), ("ln", (2, 5, 300), (300,)), ("ln", (40, 1024), (1024,)),
    ("gn", (4, 8, 6, 6), 2), ("gn", (3, 6, 5), 6),
], ids=str)
def test_float32_large_mean_small_std(isa, threads, rng, kind, shape, arg):
    """Mean 1e4, std 1e-2 in float32: a float sum of squares would cancel completely."""
    x = rand(rng, shape, np.float32, loc=1e4, scale=1e-2)
    dy = rand(rng, shape, np.float32)
    pshape = arg if kind == "ln" else (shape[1],)
    w, b = rand(rng, pshape, np.float32), rand(rng, pshape, np.float32)
    # rstd ~ 100 scales dx: compare it relative to that size.
    run_and_check(kind, arg, x, dy, w, b, 1e-8, tol=2e-4, tol_dx=2e-4, scale_dx=100.0)


def test_batch_norm_single_value_per_channel_raises():
    x = np.ones((1, 3), np.float32)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        ops.batch_norm_forward(x, None, None, None, None, training=True)
    m = gk.nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        m(x)
    assert int(m.num_batches_tracked) == 0
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        gk.nn.BatchNorm2d(3)(np.ones((1, 3, 1, 1), np.float32))
    m.eval()  # eval with running statistics works on one sample
    np.testing.assert_allclose(m(x), x / np.sqrt(1 + 1e-5), rtol=1e-6)
    m2 = gk.nn.BatchNorm1d(3, track_running_stats=False).eval()  # no running stats: batch stats in eval too
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        m2(x)
    # N == 1 with spatial extent is fine (PyTorch counts N * H * W values).
    y = gk.nn.BatchNorm2d(2)(rand(np.random.default_rng(0), (1, 2, 3, 3), np.float32))
    assert_close(y.mean(axis=(0, 2, 3)), np.zeros(2), 1e-6, "mean of y")


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_module_train_eval_and_running_stats(rng, dtype):
    m = gk.nn.BatchNorm2d(4, momentum=0.2).to(dtype)
    m.weight.data[:] = rand(rng, 4, dtype)
    m.bias.data[:] = rand(rng, 4, dtype)
    rm, rv = np.zeros(4), np.ones(4)
    for step in range(3):
        x = rand(rng, (3, 4, 5, 6), dtype, loc=step, scale=1 + step)
        y = m(x)
        y_ref, mean_ref, var_ref, _, _, _ = bn_ref(x, m.weight.data, m.bias.data, x, 1e-5)
        assert_close(y, y_ref, TOL[dtype] * 10, "y")
        rm = 0.8 * rm + 0.2 * mean_ref
        rv = 0.8 * rv + 0.2 * var_ref * 90 / 89
    assert int(m.num_batches_tracked) == 3
    assert_close(m.running_mean, rm, TOL[dtype], "running_mean")
    assert_close(m.running_var, rv, TOL[dtype], "running_var")
    m.eval()
    x = rand(rng, (2, 4, 3, 3), dtype)
    y = m(x)
    xhat = (x - rm.reshape(1, -1, 1, 1)) / np.sqrt(rv.reshape(1, -1, 1, 1) + 1e-5)
    assert_close(y, xhat * m.weight.data.reshape(1, -1, 1, 1) + m.bias.data.reshape(1, -1, 1, 1),
                 TOL[dtype] * 10, "eval y")
    assert int(m.num_batches_tracked) == 3  # eval does not count batches
    dy = rand(rng, y.shape, dtype)
    m.zero_grad()
    dx = m.backward(dy)
    assert_close(dx, dy * (m.weight.data / np.sqrt(rv + 1e-5)).reshape(1, -1, 1, 1), TOL[dtype] * 10, "eval dx")
    assert_close(m.bias.grad, dy.astype(np.float64).sum(axis=(0, 2, 3)), TOL[dtype] * 10, "eval dbias")


@pytest.mark.parametrize("name,shape", [("BatchNorm1d", (16, 4)), ("BatchNorm1d", (8, 4, 3)),
                                        ("BatchNorm2d", (6, 4, 3, 5))], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_module_defaults(rng, name, shape, dtype):
    """PyTorch's defaults: weight 1, bias 0, running stats 0 and 1, momentum 0.1 (the unbiased
    variance over N * L or N * H * W values averaged in); eval leaves the running statistics
    alone; a training-mode forward under no_grad still moves them (as PyTorch)."""
    m = getattr(gk.nn, name)(4).to(dtype)
    for array, value in ((m.weight.data, 1), (m.bias.data, 0), (m.running_mean, 0), (m.running_var, 1)):
        np.testing.assert_array_equal(array, np.full(4, value))
    x = rand(rng, shape, dtype, loc=2.0, scale=3.0)
    y_ref, mean_ref, var_ref, _, _, _ = bn_ref(x, None, None, x, 1e-5)
    count = x.size // 4
    assert_close(m(x), y_ref, TOL[dtype] * 10, "y")
    assert_close(m.running_mean, 0.1 * mean_ref, TOL[dtype], "running_mean")
    assert_close(m.running_var, 0.9 + 0.1 * var_ref * count / (count - 1), TOL[dtype], "running_var")
    m(x)
    assert_close(m.running_mean, 0.19 * mean_ref, TOL[dtype], "running_mean after two steps")
    rm, rv = m.running_mean.copy(), m.running_var.copy()
    m.eval()(x)
    np.testing.assert_array_equal(m.running_mean, rm)
    np.testing.assert_array_equal(m.running_var, rv)
    with gk.no_grad():
        m.train()(x)
    assert not np.array_equal(m.running_mean, rm)


def test_batch_norm_eps_and_momentum_arguments():
    m = gk.nn.BatchNorm1d(2, eps=0.5, momentum=0.5, affine=False).double()
    assert m.parameters() == []
    x = np.array([[0.0, 1.0], [2.0, 5.0]])
    assert_close(m(x), (x - x.mean(0)) / np.sqrt(x.var(0) + 0.5), 1e-12, "eps=0.5")
    assert_close(m.running_mean, 0.5 * x.mean(0), 1e-12, "momentum=0.5")


def test_batch_norm_cumulative_momentum(rng):
    m = gk.nn.BatchNorm1d(3, momentum=None).double()
    means, vars_ = [], []
    for _ in range(4):
        x = rand(rng, (6, 3), np.float64, loc=2.0)
        m(x)
        means.append(x.mean(axis=0))
        vars_.append(x.var(axis=0, ddof=1))
    # momentum=None: running stats are the plain average of every batch's (PyTorch's cumulative average)
    assert_close(m.running_mean, np.mean(means, axis=0), 1e-12, "running_mean")
    assert_close(m.running_var, np.mean(vars_, axis=0), 1e-12, "running_var")


def test_batch_norm_without_running_stats_uses_batch_stats_in_eval(rng):
    m = gk.nn.BatchNorm2d(3, track_running_stats=False, affine=False)
    assert m.running_mean is None and m.running_var is None and m.num_batches_tracked is None
    assert m.parameters() == [] and list(m.state_dict()) == []
    x = rand(rng, (4, 3, 5, 5), np.float32, loc=3.0)
    dy = rand(rng, x.shape, np.float32)
    y_train = m(x)
    m.eval()
    y_eval = m(x)
    np.testing.assert_array_equal(y_train, y_eval)
    y_ref, _, _, dx_ref, _, _ = bn_ref(x, None, None, dy, 1e-5)
    assert_close(y_eval, y_ref, 2e-4, "y")
    assert_close(m.backward(dy), dx_ref, 2e-4, "dx")  # batch-stat gradient in eval too
    affine = gk.nn.BatchNorm2d(3, track_running_stats=False)
    assert affine.running_mean is None and list(affine.state_dict()) == ["weight", "bias"]
    np.testing.assert_array_equal(affine.eval()(x), affine.train()(x))


def test_batch_norm_empty_batch_keeps_running_stats():
    m = gk.nn.BatchNorm2d(3)
    y = m(np.zeros((0, 3, 4, 4), np.float32))
    assert y.shape == (0, 3, 4, 4)
    np.testing.assert_array_equal(m.running_mean, np.zeros(3))
    np.testing.assert_array_equal(m.running_var, np.ones(3))
    assert m.backward(np.zeros_like(y)).shape == y.shape
    np.testing.assert_array_equal(m.weight.grad, np.zeros(3))


# -- layer norm -----------------------------------------------------------------------------------
LN_CASES = [((4, 5), (5,)), ((3, 2, 7), (2, 7)), ((1, 1), (1,)), ((0, 5), (5,)), ((17, 33), (33,)),
            ((2, 3, 4, 16), (16,)), ((64, 1027), (1027,)), ((300, 96), (96,)), ((9,), (9,))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,nshape", LN_CASES, ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_reference(isa, threads, rng, dtype, shape, nshape, affine):
    x, dy, w, b = case(rng, shape, dtype, nshape, affine, loc=-1.0, scale=3.0)
    run_and_check("ln", nshape, x, dy, w, b, 1e-5, tol=TOL[dtype] * 10, tol_dx=TOL[dtype] * 20)


def test_layer_norm_module(rng):
    m = gk.nn.LayerNorm((3, 4))
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    assert m.weight.shape == (3, 4) and np.all(m.weight.data == 1) and np.all(m.bias.data == 0)
    x = rand(rng, (2, 5, 3, 4), np.float32)
    dy = rand(rng, x.shape, np.float32)
    y = m(x)
    y_ref, _, _, dx_ref, dw_ref, db_ref = ln_ref(x, (3, 4), m.weight.data, m.bias.data, dy, 1e-5)
    assert_close(y, y_ref, 2e-4, "y")
    assert_close(m.backward(dy), dx_ref, 2e-4, "dx")
    m.backward(dy)  # a second backward adds again
    assert_close(m.weight.grad, 2 * dw_ref, 2e-4, "dweight")
    assert_close(m.bias.grad, 2 * db_ref, 2e-4, "dbias")
    assert gk.nn.LayerNorm(8, elementwise_affine=False).parameters() == []
    assert repr(gk.nn.LayerNorm(8)) == "LayerNorm((8,), eps=1e-05, elementwise_affine=True)"


# -- group norm / instance norm -------------------------------------------------------------------
GN_CASES = [((2, 6, 5, 3), 1), ((2, 6, 5, 3), 2), ((2, 6, 5, 3), 3), ((2, 6, 5, 3), 6), ((3, 4), 2),
            ((1, 8, 7), 4), ((5, 12, 9, 9), 4), ((8, 32, 14, 14), 8), ((0, 4, 3), 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,groups", GN_CASES, ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_matches_reference(isa, threads, rng, dtype, shape, groups, affine):
    x, dy, w, b = case(rng, shape, dtype, shape[1], affine, loc=1.0, scale=2.0)
    run_and_check("gn", groups, x, dy, w, b, 1e-5, tol=TOL[dtype] * 10, tol_dx=TOL[dtype] * 20)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_module(isa, rng, dtype, affine):
    m = gk.nn.InstanceNorm2d(3, affine=affine).to(dtype)
    assert len(m.parameters()) == (2 if affine else 0) and m.state_dict().keys() == (
        {"weight", "bias"} if affine else set())
    if affine:
        m.weight.data[:] = rand(rng, 3, dtype)
        m.bias.data[:] = rand(rng, 3, dtype)
    w = m.weight.data if affine else None
    b = m.bias.data if affine else None
    x = rand(rng, (4, 3, 7, 5), dtype, loc=2.0)
    dy = rand(rng, x.shape, dtype)
    y_ref, _, _, dx_ref, dw_ref, db_ref = gn_ref(x, 3, w, b, dy, 1e-5)
    tol = TOL[dtype] * 20
    assert_close(m(x), y_ref, tol, "y")
    assert_close(m.backward(dy), dx_ref, tol, "dx")
    if affine:
        assert_close(m.weight.grad, dw_ref, tol, "dweight")
        assert_close(m.bias.grad, db_ref, tol, "dbias")
    m.eval()  # no running statistics: eval normalises with the instance's own
    assert_close(m(x), y_ref, tol, "eval y")
    # unbatched (C, H, W)
    y1 = m(x[1])
    assert y1.shape == x[1].shape
    assert_close(y1, y_ref[1], tol, "unbatched y")
    assert_close(m.backward(dy[1]), gn_ref(x[1:2], 3, w, b, dy[1:2], 1e-5)[3][0], tol, "unbatched dx")


def test_group_norm_module(rng):
    m = gk.nn.GroupNorm(3, 6)
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"] and m.weight.shape == (6,)
    assert np.all(m.weight.data == 1) and np.all(m.bias.data == 0)
    x = rand(rng, (2, 6, 4, 4), np.float32)
    dy = rand(rng, x.shape, np.float32)
    y_ref, _, _, dx_ref, dw_ref, db_ref = gn_ref(x, 3, m.weight.data, m.bias.data, dy, 1e-5)
    assert_close(m(x), y_ref, 2e-4, "y")
    assert_close(m.backward(dy), dx_ref, 2e-4, "dx")
    assert_close(m.weight.grad, dw_ref, 2e-4, "dweight")
    assert_close(m.bias.grad, db_ref, 2e-4, "dbias")
    assert repr(m) == "GroupNorm(3, 6, eps=1e-05, affine=True)"


# -- gradients by central differences (float64), independent of the reference formulas -----------
@pytest.mark.parametrize("make,shape", [
    (lambda: gk.nn.BatchNorm2d(3), (2, 3, 2, 3)),
    (lambda: gk.nn.BatchNorm2d(3).eval(), (2, 3, 2, 3)),
    (lambda: gk.nn.BatchNorm1d(4), (5, 4)),
    (lambda: gk.nn.BatchNorm1d(4, affine=False, track_running_stats=False).eval(), (5, 4, 2)),
    (lambda: gk.nn.LayerNorm(5), (3, 5)),
    (lambda: gk.nn.LayerNorm((2, 3)), (2, 2, 3)),
    (lambda: gk.nn.GroupNorm(2, 4), (2, 4, 3)),
    (lambda: gk.nn.InstanceNorm2d(2, affine=True), (2, 2, 2, 3)),
], ids=["bn2d", "bn2d-eval", "bn1d", "bn1d-batch-stats-eval", "ln", "ln2", "gn", "in"])
def test_gradients_by_central_differences(isa, rng, make, shape):
    m = make()
    for p in m.parameters():
        p.data[:] = rand(rng, p.shape, np.float32)
    if getattr(m, "running_var", None) is not None:
        m.running_mean[:] = rand(rng, m.running_mean.shape, np.float32)
        m.running_var[:] = 0.5 + rng.random(m.running_var.shape)
    assert gk.gradcheck(m, rand(rng, shape, np.float64), atol=1e-6, rtol=1e-5)


# -- determinism across threads ---------------------------------------------------------------------
def _run_all(rng_seed):
    rng = np.random.default_rng(rng_seed)
    out = []
    # 16 channels: fused per channel; 7 channels: rows in parallel; (N, C): row chunks
    for shape in [(8, 16, 32, 32), (4096, 40), (3, 7, 100, 60)]:
        c = shape[1]
        x, dy = rand(rng, shape, np.float32, loc=3.0), rand(rng, shape, np.float32)
        w, b = rand(rng, c, np.float32), rand(rng, c, np.float32)
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        y, mean, rstd = ops.batch_norm_forward(x, w, b, rm, rv, training=True)
        dw, db = np.zeros(c, np.float32), np.zeros(c, np.float32)
        out += [y, mean, rstd, rm, rv, ops.batch_norm_backward(dy, x, mean, rstd, w, dw, db), dw, db]
        res = rand(rng, shape, np.float32)
        y, mean, rstd = ops.batch_norm_relu_forward(x, w, b, rm, rv, residual=res, training=True)
        out += [y, mean, rstd, rm, rv, *ops.batch_norm_relu_backward(dy, y, x, mean, rstd, w, dw, db,
                                                                      need_dresidual=True), dw, db]
    x, dy = rand(rng, (700, 257), np.float32), rand(rng, (700, 257), np.float32)
    w, b = rand(rng, 257, np.float32), rand(rng, 257, np.float32)
    y, mean, rstd = ops.layer_norm_forward(x, 257, w, b)
    dw, db = np.zeros(257, np.float32), np.zeros(257, np.float32)
    out += [y, mean, rstd, ops.layer_norm_backward(dy, x, mean, rstd, 257, w, dw, db), dw, db]
    # many (n, g) units (fused per unit) and few (two passes parallel over rows)
    for shape, groups in [((6, 32, 20, 20), 4), ((1, 4, 100, 100), 2)]:
        c = shape[1]
        x, dy = rand(rng, shape, np.float32), rand(rng, shape, np.float32)
        w, b = rand(rng, c, np.float32), rand(rng, c, np.float32)
        y, mean, rstd = ops.group_norm_forward(x, groups, w, b)
        dw, db = np.zeros(c, np.float32), np.zeros(c, np.float32)
        out += [y, mean, rstd, ops.group_norm_backward(dy, x, mean, rstd, groups, w, dw, db), dw, db]
    return out


def test_one_and_two_threads_bit_identical(isa):
    gk.set_num_threads(1)
    one = _run_all(7)
    gk.set_num_threads(2)
    two = _run_all(7)
    for i, (a, b) in enumerate(zip(one, two)):
        np.testing.assert_array_equal(a, b, err_msg=f"output {i} differs between 1 and 2 threads")


# -- validation -------------------------------------------------------------------------------------
def test_module_argument_validation():
    with pytest.raises(ValueError, match="num_features"):
        gk.nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match="momentum"):
        gk.nn.BatchNorm1d(3, momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        gk.nn.BatchNorm1d(3, eps=-1.0)
    with pytest.raises(ValueError, match="num_groups.*divisor of num_channels=6, got 4"):
        gk.nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="num_groups"):
        gk.nn.GroupNorm(0, 6)
    with pytest.raises(ValueError, match="normalized_shape"):
        gk.nn.LayerNorm(0)
    with pytest.raises(ValueError, match="normalized_shape"):
        gk.nn.LayerNorm(())
    with pytest.raises(ValueError, match="normalized_shape"):
        gk.nn.LayerNorm((3, -2))
    with pytest.raises(TypeError, match="normalized_shape"):
        gk.nn.LayerNorm("abc")
    with pytest.raises(ValueError, match="num_features"):
        gk.nn.InstanceNorm2d(-1)


def test_module_input_validation():
    x4 = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"BatchNorm2d: input: expected a 4-D array, got 3-D"):
        gk.nn.BatchNorm2d(3)(x4[0])
    with pytest.raises(ValueError, match=r"BatchNorm1d: input: expected a 2-D or 3-D array, got 4-D"):
        gk.nn.BatchNorm1d(3)(x4)
    with pytest.raises(ValueError, match=r"input: expected 5 channels"):
        gk.nn.BatchNorm2d(5)(x4)
    with pytest.raises(TypeError, match="dtype"):
        gk.nn.BatchNorm2d(3)(x4.astype(np.float64))
    with pytest.raises(TypeError, match="dtype"):
        gk.nn.BatchNorm2d(3, affine=False)(x4.astype(np.float64))  # buffers are float32
    with pytest.raises(ValueError, match=r"input: expected trailing dimensions \(5,\)"):
        gk.nn.LayerNorm(5)(x4)
    with pytest.raises(ValueError, match="input: expected an \\(N, 6, ...\\) array"):
        gk.nn.GroupNorm(3, 6)(x4)
    with pytest.raises(ValueError, match="input"):
        gk.nn.InstanceNorm2d(3)(x4[0, 0])
    m = gk.nn.BatchNorm2d(3)
    with pytest.raises(RuntimeError, match="no cached forward"):
        m.backward(x4)
    m(x4)
    with pytest.raises(ValueError, match="dy: expected shape"):
        m.backward(x4[:1])
    with gk.no_grad():
        m(x4)
    with pytest.raises(RuntimeError, match="no cached forward"):
        m.backward(x4)


def test_ops_validation():
    x = np.zeros((4, 3, 2, 2), np.float32)
    c3 = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="input: expected an array of rank >= 2"):
        ops.batch_norm_forward(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"weight: expected shape \(3,\), got shape \(4,\)"):
        ops.batch_norm_forward(x, np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="weight: expected dtype float32"):
        ops.batch_norm_forward(x, np.zeros(3, np.float64))
    with pytest.raises(TypeError, match="input: expected a numpy.ndarray of float32 or float64"):
        ops.batch_norm_forward(x.astype(np.float16))
    with pytest.raises(ValueError, match="running_var"):
        ops.batch_norm_forward(x, None, None, c3.copy(), None)
    ro = c3.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean: expected a writeable array"):
        ops.batch_norm_forward(x, None, None, ro, c3.copy())
    with pytest.raises(ValueError, match="momentum"):
        ops.batch_norm_forward(x, None, None, c3.copy(), c3.copy(), momentum=2.0)
    with pytest.raises(ValueError, match="eps"):
        ops.batch_norm_forward(x, eps=-1.0)
    y, mean, rstd = ops.batch_norm_forward(x)
    with pytest.raises(ValueError, match="dy: expected shape"):
        ops.batch_norm_backward(x[:1], x, mean, rstd)
    with pytest.raises(ValueError, match="mean: expected shape"):
        ops.batch_norm_backward(x, x, mean[:2], rstd)
    with pytest.raises(ValueError, match="num_groups: expected a divisor of the number of channels 3, got 2"):
        ops.group_norm_forward(x, 2)
    with pytest.raises(ValueError, match="group_norm_forward: num_groups: expected an integer >= 1, got 0"):
        ops.group_norm_forward(x, 0)
    with pytest.raises(ValueError, match="input: expected an array whose trailing dimensions are normalized_shape"):
        ops.layer_norm_forward(x, (3,))
    with pytest.raises(ValueError, match="normalized_shape: expected a non-empty shape"):
        ops.layer_norm_forward(x, ())
    with pytest.raises(ValueError, match="normalized_shape: expected non-negative sizes"):
        ops.layer_norm_forward(x, (-2,))
    with pytest.raises(ValueError, match=r"weight: expected shape \(2, 2\)"):
        ops.layer_norm_forward(x, (2, 2), np.zeros(4, np.float32))


def test_non_contiguous_input_is_accepted(rng):
    x = rand(rng, (6, 4, 5, 3), np.float32)[:, :, :, ::-1]  # a strided view
    y, _, _ = ops.batch_norm_forward(x, training=True)
    assert_close(y, bn_ref(np.ascontiguousarray(x), None, None, x, 1e-5)[0], 2e-4, "y")


def test_state_dict_and_dtype_conversion(rng):
    m = gk.nn.BatchNorm2d(3)
    assert list(m.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    m(rand(rng, (4, 3, 2, 2), np.float32))
    m.double()
    assert m.running_mean.dtype == np.float64 and m.num_batches_tracked.dtype == np.int64
    y = m(rand(rng, (4, 3, 2, 2), np.float64))
    assert y.dtype == np.float64 and int(m.num_batches_tracked) == 2
