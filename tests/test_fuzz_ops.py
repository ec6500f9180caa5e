"""Fuzzing every public op of gk.ops with hypothesis (fixed seed per run): random shapes with
zero-size and SIMD-tail sizes, float32/float64 and wrong dtypes, strided, Fortran-order and
misaligned views, out= aliasing, extreme arguments and NaN/Inf. Each case either raises a
TypeError/ValueError naming an argument or equals a float64 NumPy reference within the stated
tolerance (NaN where the reference is NaN). Each test checks at the end that it checked
as many cases as planned (invalid draws are filtered with assume and do not count)."""
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import gradkit as gk
from fuzz_helpers import (CASES, FLOATS, SIZES, SMALL, WRONG_DTYPES, arrays, check_close, check_error, check_ran,
                          checked, count, fuzz)
from test_nn_conv import ref_conv

ops = gk.ops
SQRT2 = np.sqrt(2.0)
_erf = np.vectorize(math.erf, otypes=[np.float64])  # float64 erf without SciPy (not a test dependency)


def erf(x):
    return _erf(np.asarray(x, dtype=np.float64))


def gelu_ref(x):
    with np.errstate(invalid="ignore", over="ignore"):
        y = 0.5 * x * (1 + erf(x / SQRT2))
    return np.where(np.isneginf(x), 0.0, y)


ACTS = {
    # name: (forward ref, backward ref(dy, x, y), extra args, backward takes y (True) or x)
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda dy, x, y: dy * y * (1 - y), (), True),
    "tanh": (np.tanh, lambda dy, x, y: dy * (1 - y * y), (), True),
    "relu": (lambda x: np.where(x > 0, x, np.where(np.isnan(x), x, 0.0)), lambda dy, x, y: dy * (y > 0), (), True),
    "leaky_relu": (lambda x, s: np.where(x > 0, x, s * x), lambda dy, x, y, s: dy * np.where(x > 0, 1.0, s), ("slope",),
                   False),
    "elu": (lambda x, a: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
            lambda dy, x, y, a: dy * np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0))), ("alpha",), False),
    "gelu": (gelu_ref, lambda dy, x, y: dy * (0.5 * (1 + erf(x / SQRT2)) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)),
             (), False),
}

shapes = st.one_of(st.tuples(st.sampled_from(SIZES)), st.tuples(st.sampled_from(SMALL), st.sampled_from(SIZES)),
                   st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from(SMALL), st.sampled_from(SIZES)))
params = {"slope": st.sampled_from([0.0, 0.01, 0.2, 1.0, -0.5, 3.0]), "alpha": st.sampled_from([0.0, 1.0, 0.5, 2.0])}


@st.composite
def act_case(draw):
    name = draw(st.sampled_from(sorted(ACTS)))
    dtype = draw(st.sampled_from(FLOATS))
    shape = draw(shapes)
    x = draw(arrays(shape, dtype, special=True, scale=draw(st.sampled_from([1.0, 5.0, 40.0]))))
    extra = [draw(params[p]) for p in ACTS[name][2]]
    out_kind = draw(st.sampled_from(["none", "new", "alias", "wrong_shape", "wrong_dtype"]))
    return name, dtype, x, extra, out_kind


def make_out(kind, x, dtype):
    if kind == "new":
        return np.empty(x.shape, dtype)
    if kind == "alias":
        return x  # in place (a ValueError naming out when x is not C-contiguous and aligned)
    if kind == "wrong_shape":
        return np.empty((x.size + 1,), dtype)
    if kind == "wrong_dtype":
        return np.empty(x.shape, np.float64 if dtype == np.float32 else np.float32)
    return None


def run_op(fn, names, *args, **kwargs):
    """(result, None) or (None, the TypeError/ValueError, checked to name one of `names`)."""
    try:
        return fn(*args, **kwargs), None
    except (TypeError, ValueError) as e:
        check_error(e, names)
        return None, e


def contiguous(a):
    return a.flags.c_contiguous and a.flags.aligned and a.flags.writeable


@fuzz(2400)
@given(act_case())
@checked
def test_activation_forward(case):
    name, dtype, x, extra, out_kind = case
    ref_fn = ACTS[name][0]
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        ref = ref_fn(x64, *extra)
    out = make_out(out_kind, x, dtype)
    y, err = run_op(getattr(ops, name), ["out", "x"], x, *extra, out=out)
    if err is not None:
        assert out_kind in ("wrong_shape", "wrong_dtype") or (out_kind == "alias" and not contiguous(x)), err
        count()
        return
    assert out_kind not in ("wrong_shape", "wrong_dtype"), "a bad out= was accepted"
    if out is not None:
        assert y is out
    assert y.dtype == dtype
    tol = 4e-6 if dtype == np.float32 else 1e-13
    check_close(y, ref, dtype, rtol=tol, atol=tol, what=name)
    count()


@st.composite
def act_backward_case(draw):
    name = draw(st.sampled_from(sorted(ACTS)))
    dtype = draw(st.sampled_from(FLOATS))
    shape = draw(shapes)
    x = draw(arrays(shape, dtype, scale=draw(st.sampled_from([1.0, 4.0]))))
    dy = draw(arrays(shape, dtype))
    extra = [draw(params[p]) for p in ACTS[name][2]]
    return name, dtype, x, dy, extra, draw(st.sampled_from(["none", "new", "alias_dy"]))


@fuzz(1200)
@given(act_backward_case())
@checked
def test_activation_backward(case):
    name, dtype, x, dy, extra, out_kind = case
    fwd, bwd, _, takes_y = ACTS[name]
    y = getattr(ops, name)(x, *extra)
    saved = y if takes_y else x
    out = None if out_kind == "none" else (np.empty(x.shape, dtype) if out_kind == "new" else dy)
    x64, y64, dy64 = x.astype(np.float64), y.astype(np.float64), dy.astype(np.float64)
    ref = bwd(dy64, x64, y64, *extra)
    dx, err = run_op(getattr(ops, name + "_backward"), ["out", "dy", "x", "y"], dy, saved, *extra, out=out)
    if err is not None:
        assert out_kind == "alias_dy" and not contiguous(dy), err
        count()
        return
    tol = 2e-6 if dtype == np.float32 else 1e-12
    check_close(dx, ref, dtype, rtol=tol, atol=tol, what=name + "_backward")
    count()


@st.composite
def matmul_case(draw):
    dtype = draw(st.sampled_from(FLOATS))
    m, k, n = (draw(st.sampled_from(SIZES + [40, 70])) for _ in range(3))
    ta, tb = draw(st.booleans()), draw(st.booleans())
    a = draw(arrays((k, m) if ta else (m, k), dtype))
    b = draw(arrays((n, k) if tb else (k, n), dtype))
    if draw(st.integers(0, 9)) == 0:  # a wrong dtype for one operand
        a = a.astype(draw(st.sampled_from(WRONG_DTYPES)))
    return a, b, ta, tb, draw(st.sampled_from(["none", "new", "alias_a", "wrong"]))


@fuzz(1200)
@given(matmul_case())
@checked
def test_matmul(case):
    a, b, ta, tb, out_kind = case
    dtype = b.dtype
    m = a.shape[1] if ta else a.shape[0]
    n = b.shape[0] if tb else b.shape[1]
    ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64) if a.dtype.kind != "c" else None
    out = {"none": None, "new": np.empty((m, n), dtype), "alias_a": a, "wrong": np.empty((m + 1, n), dtype)}[out_kind]
    c, err = run_op(ops.matmul, ["a", "b", "out"], a, b, trans_a=ta, trans_b=tb, out=out)
    if err is not None:
        assert a.dtype != dtype or out_kind in ("wrong", "alias_a"), err
        count()
        return
    assert a.dtype == dtype and out_kind != "wrong"
    k = a.shape[0] if ta else a.shape[1]
    tol = (4e-6 if dtype == np.float32 else 1e-13) * max(k, 1)
    scale = np.abs((a.T if ta else a)).astype(np.float64) @ np.abs(b.T if tb else b).astype(np.float64)
    assert np.all(np.abs(c - ref) <= tol * (scale + 1)), f"max error {np.abs(c - ref).max()}"
    count()


@st.composite
def loss_case(draw):
    dtype = draw(st.sampled_from(FLOATS))
    n, c = draw(st.sampled_from([0, 1, 2, 5, 9])), draw(st.sampled_from([1, 2, 3, 7, 8, 17, 33]))
    x = draw(arrays((n, c), dtype, scale=draw(st.sampled_from([1.0, 30.0]))))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    if n and draw(st.booleans()):  # masked logits, never the whole row
        mask = rng.random((n, c)) < 0.3
        mask[:, 0] = False
        x = x.copy()
        x[mask] = -np.inf
    labels = rng.integers(0, c, n).astype(draw(st.sampled_from([np.int64, np.int32, np.uint8, np.int16])))
    bad = draw(st.sampled_from([None] * 6 + ["label_range", "label_float", "smoothing", "shape"]))
    eps = draw(st.sampled_from([0.0, 0.1, 0.5]))
    return x, labels, eps, bad


def ce_ref(x, labels, eps):
    n, c = x.shape
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    lse = m[:, 0] + np.log(e.sum(axis=1))
    with np.errstate(invalid="ignore"):
        rows = (1 - eps) * (lse - x[np.arange(n), labels])
        if eps:
            rows = rows + eps * (lse[:, None] - x).mean(axis=1)
    q = np.full((n, c), eps / c)
    q[np.arange(n), labels] += 1 - eps
    return rows.mean() if n else np.nan, (e / e.sum(axis=1, keepdims=True) - q) / max(n, 1)


@fuzz(900)
@given(loss_case())
@checked
def test_cross_entropy(case):
    x, labels, eps, bad = case
    if bad == "label_range" and x.shape[0]:
        labels = labels.astype(np.int64)
        labels[0] = x.shape[1]
    elif bad == "label_float":
        labels = labels.astype(np.float32)
    elif bad == "smoothing":
        eps = 1.5
    elif bad == "shape":
        labels = np.concatenate([labels.astype(np.int64), [0]])
    res, err = run_op(ops.cross_entropy, ["input", "target", "label_smoothing"], x, labels, eps)
    if err is not None:
        assert bad is not None and (bad != "label_range" or x.shape[0]), err
        count()
        return
    assert bad is None or (bad == "label_range" and not x.shape[0]), f"{bad} accepted"
    loss, d = res
    n, c = x.shape
    ref_loss, ref_d = ce_ref(x.astype(np.float64), labels.astype(np.int64), eps)
    # Rounding bounds in units of the dtype's eps (2u), for any summation order: each exp(x - max)
    # is off by at most u(1 + |x - max|) relative, and t exp(-t) <= 1/e, so the row sum and its log
    # are off by < (c + 2)u; a row's loss |lse - x_label| (and its smoothing term) is off by that
    # plus u per operand, and the mean over n rows adds n u: (n + c + 6) u times the largest |term|
    # (|lse| + |x_label| <= 2 max|x| + log c). The gradient, (softmax - q) / n, has entries in
    # [-1, 1] / n each off by (c + 4) u / n.
    e = np.finfo(x.dtype).eps
    finite = np.abs(x[np.isfinite(x)])
    scale = 2 * (finite.max() if finite.size else 0.0) + np.log(c) + 1
    check_close(np.float64(loss), ref_loss, x.dtype, rtol=0, atol=(n + c + 6) * e * scale, what="loss")
    check_close(d, ref_d, x.dtype, rtol=0, atol=(c + 4) * e / max(n, 1), what="dlogits")
    count()


@fuzz(300)
@given(st.sampled_from(FLOATS), shapes, st.data())
@checked
def test_mse_loss(dtype, shape, data):
    x = data.draw(arrays(shape, dtype, special=True))
    t = data.draw(arrays(shape, dtype))
    if data.draw(st.integers(0, 5)) == 0:
        t = t.astype(np.float16)
    res, err = run_op(ops.mse_loss, ["input", "target"], x, t)
    if err is not None:
        assert t.dtype != dtype, err
        count()
        return
    loss, d = res
    diff = x.astype(np.float64) - t.astype(np.float64)
    with np.errstate(invalid="ignore"):
        ref = (diff ** 2).mean() if diff.size else np.nan
    # Every term diff**2 >= 0 is off by < 3u relative and any order of their sum by (size - 1)u,
    # so the mean is off by (size + 3)u relative; each gradient 2 diff / size by at most 3u
    # (u = eps / 2).
    e = np.finfo(dtype).eps
    check_close(np.float64(loss), ref, dtype, rtol=(diff.size + 3) * e, atol=0, what="loss")
    check_close(d, 2 * diff / max(diff.size, 1), dtype, rtol=2 * e, atol=0, what="d")
    count()


def conv_ref(x, w, b, stride, pad, dil, groups):
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, oc, oh, ow))
    ocg = oc // groups
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dil[0]:i * dil[0] + stride[0] * (oh - 1) + 1:stride[0],
                           j * dil[1]:j * dil[1] + stride[1] * (ow - 1) + 1:stride[1]]
                y[:, g * ocg:(g + 1) * ocg] += np.einsum("nchw,oc->nohw", patch, w[g * ocg:(g + 1) * ocg, :, i, j])
    return y + (0 if b is None else b[None, :, None, None])


@st.composite
def conv_case(draw, extreme=True):
    """A conv2d call; with `extreme`, a padding or a dilation may be 2**62 (an error to check)."""
    dtype = draw(st.sampled_from(FLOATS))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, ocg = draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2, 5]))
    n = draw(st.sampled_from([0, 1, 2]))
    h, wd = draw(st.sampled_from([1, 3, 5, 8, 9])), draw(st.sampled_from([1, 4, 7, 17]))
    kh, kw = draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 3, 5]))
    stride = (draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2])))
    huge = [2**62] if extreme else []
    pad = (draw(st.sampled_from([0, 1, 2] + huge)), draw(st.sampled_from([0, 1, 3])))
    dil = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2] + huge)))
    x = draw(arrays((n, cg * groups, h, wd), dtype))
    w = draw(arrays((ocg * groups, cg, kh, kw), dtype))
    b = draw(st.one_of(st.none(), arrays((ocg * groups,), dtype)))
    act = draw(st.sampled_from(["none", "relu"]))
    return x, w, b, stride, pad, dil, groups, act


def conv_valid(x, w, stride, pad, dil):
    """The contract in exact integers: sizes below 2**63, kernel within the padded input,
    an output of fewer than 2**63 bytes."""
    out = []
    for i in range(2):
        padded, eff = x.shape[2 + i] + 2 * pad[i], dil[i] * (w.shape[2 + i] - 1) + 1
        if 2 * pad[i] >= 2**63 or padded >= 2**63 or eff >= 2**63 or padded < eff:
            return False
        out.append((padded - eff) // stride[i] + 1)
    return x.shape[0] * w.shape[0] * out[0] * out[1] * 8 < 2**63


@fuzz(500)
@given(conv_case())
@checked
def test_conv2d_forward(case):
    x, w, b, stride, pad, dil, groups, act = case
    y, err = run_op(ops.conv2d_forward, ["x", "weight", "padding", "dilation", "kernel_size"], x, w, b, stride, pad,
                    dil, groups, activation=act)
    if err is not None:
        assert not conv_valid(x, w, stride, pad, dil), err
        count()
        return
    assert conv_valid(x, w, stride, pad, dil)
    ref = conv_ref(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64), stride,
                   pad, dil, groups)
    if act == "relu":
        ref = np.maximum(ref, 0)
    k = w.shape[1] * w.shape[2] * w.shape[3]
    tol = (1e-5 if x.dtype == np.float32 else 1e-12) * k
    check_close(y, ref, x.dtype, rtol=tol, atol=tol, what="conv2d")
    count()


@fuzz(300)
@given(conv_case(extreme=False), st.integers(0, 2**32 - 1))
@checked
def test_conv2d_backward(case, seed):
    """dx, dweight and dbias in the drawn dtype against the float64 NumPy reference's backward
    (test_nn_conv.ref_conv); and in float64, dx and dweight are the adjoints of the library's own
    forward: <conv(v, w), dy> = <v, dx> and <conv(x, u), dy> = <u, dweight>."""
    x, w, _, stride, pad, dil, groups, _ = case
    assume(conv_valid(x, w, stride, pad, dil))  # a kernel larger than the padded input
    dtype = x.dtype
    rng = np.random.default_rng(seed)
    y_ref, backward = ref_conv(x, w, None, stride, pad, dil, groups)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    got = ops.conv2d_backward(dy, x, w, stride, pad, dil, groups)
    # Each entry sums L products (dx: OC/groups * KH * KW of them, dweight and dbias: N * OH * OW);
    # in any order, with or without FMA, it is off by at most (L + 1)u times the sum of the |products|,
    # which is the same backward on |dy|, |x|, |w|. (The strategy's 3x3 kernels have at most 3
    # channels per group, on the direct kernels: Winograd, whose transforms round differently, is
    # tested in test_nn_conv.py.)
    n, oc, oh, ow = y_ref.shape
    lengths = ((oc // groups) * w.shape[2] * w.shape[3], n * oh * ow, n * oh * ow)
    sizes = ref_conv(np.abs(x), np.abs(w), None, stride, pad, dil, groups)[1](np.abs(dy))
    e = np.finfo(dtype).eps
    for g, want, size, length, what in zip(got, backward(dy), sizes, lengths, ("dx", "dweight", "dbias")):
        assert g.dtype == dtype, f"{what}: dtype {g.dtype}"
        check_close(g, want, dtype, rtol=0, atol=(length + 1) * e * size + np.finfo(dtype).tiny, what=what)
    x, w, dy = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    dx, dw, _ = ops.conv2d_backward(dy, x, w, stride, pad, dil, groups)
    v = rng.standard_normal(x.shape)
    u = rng.standard_normal(w.shape)
    lhs_x = np.sum(ops.conv2d_forward(v, w, None, stride, pad, dil, groups) * dy)
    lhs_w = np.sum(ops.conv2d_forward(x, u, None, stride, pad, dil, groups) * dy)
    assert abs(lhs_x - np.sum(v * dx)) <= 1e-9 * (1 + abs(lhs_x)), "dx is not the adjoint"
    assert abs(lhs_w - np.sum(u * dw)) <= 1e-9 * (1 + abs(lhs_w)), "dweight is not the adjoint"
    count()


@st.composite
def pool_case(draw):
    dtype = draw(st.sampled_from(FLOATS))
    shape = (draw(st.sampled_from([0, 1, 2])), draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 2, 5, 8, 17])),
             draw(st.sampled_from([1, 3, 4, 9, 16])))
    x = draw(arrays(shape, dtype, special=True))
    k = (draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2, 4])))
    stride = draw(st.one_of(st.none(), st.tuples(st.sampled_from([1, 2, 3]), st.sampled_from([1, 2]))))
    pad = (draw(st.sampled_from([0, 1])), draw(st.sampled_from([0, 1, 2])))
    return draw(st.sampled_from(["max", "avg"])), x, k, stride, pad


def pool_ref(kind, x, k, stride, pad):
    stride = k if stride is None else stride
    n, c, h, w = x.shape
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=fill)
    oh, ow = (h + 2 * pad[0] - k[0]) // stride[0] + 1, (w + 2 * pad[1] - k[1]) // stride[1] + 1
    wins = np.stack([xp[:, :, i:i + stride[0] * (oh - 1) + 1:stride[0], j:j + stride[1] * (ow - 1) + 1:stride[1]]
                     for i in range(k[0]) for j in range(k[1])])
    if kind == "avg":
        with np.errstate(invalid="ignore"):
            return wins.sum(axis=0) / (k[0] * k[1])
    nan = np.isnan(wins).any(axis=0)
    return np.where(nan, np.nan, np.max(np.where(np.isnan(wins), -np.inf, wins), axis=0))


@fuzz(600)
@given(pool_case())
@checked
def test_pooling_forward(case):
    kind, x, k, stride, pad = case
    fn = ops.max_pool2d_forward if kind == "max" else ops.avg_pool2d_forward
    res, err = run_op(fn, ["x", "kernel_size", "padding", "stride"], x, k, stride, pad)
    valid = all(2 * pad[i] <= k[i] and x.shape[2 + i] + 2 * pad[i] >= k[i] for i in range(2))
    if err is not None:
        assert not valid, err
        count()
        return
    assert valid
    y = res[0] if kind == "max" else res
    x64 = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        ref = pool_ref(kind, x64, k, stride, pad)
        # A max is exact; an average of K = kh * kw terms is off by at most (K + 1)u times the
        # average of their |values| (u = eps / 2), the global one likewise with K = H * W.
        e = np.finfo(x.dtype).eps
        size = pool_ref(kind, np.where(np.isfinite(x64), np.abs(x64), 0), k, stride, pad)
        check_close(y, ref, x.dtype, rtol=0, atol=0 if kind == "max" else (k[0] * k[1] + 1) * e * size,
                    what=kind + "_pool2d")
        if kind == "max" and x.shape[2] * x.shape[3]:
            gy = ops.global_avg_pool2d_forward(x)
            size = np.where(np.isfinite(x64), np.abs(x64), 0).mean(axis=(2, 3))
            check_close(gy, x64.mean(axis=(2, 3)), x.dtype, rtol=0, atol=(x.shape[2] * x.shape[3] + 1) * e * size,
                        what="global")
    count()


@st.composite
def norm_case(draw):
    dtype = draw(st.sampled_from(FLOATS))
    kind = draw(st.sampled_from(["batch", "layer", "group", "instance"]))
    n = draw(st.sampled_from([1, 2, 3, 8]))
    c = draw(st.sampled_from([1, 2, 4, 6]))
    spatial = draw(st.sampled_from([(), (1,), (5,), (3, 3), (4, 17)]))
    x = draw(arrays((n, c) + spatial, dtype, special=draw(st.integers(0, 9)) == 0, scale=draw(st.sampled_from([1.0, 1e3]))))
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.0, -1.0]))
    affine = draw(st.booleans())
    groups = draw(st.sampled_from([1, 2, 3]))
    return kind, x, eps, affine, groups


@fuzz(600)
@given(norm_case(), st.integers(0, 2**31))
@checked
def test_normalization_forward(case, seed):
    kind, x, eps, affine, groups = case
    n, c = x.shape[:2]
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(c).astype(x.dtype) if affine else None
    b = rng.standard_normal(c).astype(x.dtype) if affine else None
    x64 = x.astype(np.float64).reshape(n, c, -1)
    if kind == "batch":
        call = lambda: ops.batch_norm_forward(x, w, b, eps=eps)[0]  # noqa: E731
        axes = (0, 2)
    elif kind == "layer":
        nshape = x.shape[1:]
        wl = None if w is None else rng.standard_normal(nshape).astype(x.dtype)
        bl = None if b is None else rng.standard_normal(nshape).astype(x.dtype)
        call = lambda: ops.layer_norm_forward(x, nshape, wl, bl, eps)[0]  # noqa: E731
        axes = None
    elif kind == "group":
        call = lambda: ops.group_norm_forward(x, groups, w, b, eps)[0]  # noqa: E731
        axes = "group"
    else:
        call = lambda: ops.instance_norm_forward(x, w, b, eps)[0]  # noqa: E731
        axes = (2,)
    y, err = run_op(call, ["eps", "num_groups", "input", "x"])
    if err is not None:
        assert eps < 0 or (kind == "group" and c % groups) or (kind == "batch" and x64.shape[0] * x64.shape[2] == 1), err
        count()
        return
    assert eps >= 0
    with np.errstate(all="ignore"):
        if axes is None:
            flat = x64.reshape(n, -1)
            mu, var = flat.mean(axis=1, keepdims=True), flat.var(axis=1, keepdims=True)
            ref = (flat - mu) / np.sqrt(var + eps)
            if wl is not None:
                ref = ref * wl.reshape(1, -1) + bl.reshape(1, -1)
        elif axes == "group":
            g = x64.reshape(n, groups, -1)
            ref = ((g - g.mean(axis=2, keepdims=True)) / np.sqrt(g.var(axis=2, keepdims=True) + eps)).reshape(n, c, -1)
        else:
            ref = (x64 - x64.mean(axis=axes, keepdims=True)) / np.sqrt(x64.var(axis=axes, keepdims=True) + eps)
        if axes is not None and w is not None:
            ref = ref * w.reshape(1, c, 1) + b.reshape(1, c, 1)
    ref = ref.reshape(x.shape)
    # eps = 0 on a constant group divides 0 by 0: NaN or inf in either; compare only finite references
    if eps == 0:
        keep = np.isfinite(ref)
        y, ref = np.where(keep, y, 0), np.where(keep, ref, 0)
    check_close(y, ref, x.dtype, rtol=2e-4 if x.dtype == np.float32 else 1e-9, atol=2e-4 if x.dtype == np.float32 else 1e-9,
                what=kind + "_norm")
    count()


@fuzz(400)
@given(st.sampled_from(FLOATS), shapes, st.sampled_from([0.0, 0.3, 0.9, 1.0, -0.1, float("nan")]), st.data())
@checked
def test_dropout(dtype, shape, p, data):
    x = data.draw(arrays(shape, dtype, special=True))
    res, err = run_op(ops.dropout, ["p", "x"], x, p)
    if err is not None:
        assert not 0 <= p < 1, err
        count()
        return
    y, mask = res
    keep = np.unpackbits(mask, bitorder="little")[:x.size].reshape(x.shape).astype(bool)
    with np.errstate(invalid="ignore"):
        ref = np.where(keep, x.astype(np.float64) / (1 - p), x.astype(np.float64) * 0)  # a dropped NaN/inf: NaN
    # x * (1 / (1 - p)) with p as given (a Python float): the scale and the product each rounded
    # once in the dtype, 2u = eps
    e = np.finfo(dtype).eps
    check_close(y, ref, dtype, rtol=2 * e, atol=0, what="dropout")
    dy = data.draw(arrays(shape, dtype))
    check_close(ops.dropout_backward(dy, mask, p), np.where(keep, dy / (1 - p), 0.0), dtype, rtol=2 * e, atol=0,
                what="dropout_backward")
    count()


OP_ARGS = {  # op -> (the argument given the wrong value, its shape for size n, one valid call with it)
    "sigmoid": ("x", lambda n: (n,), lambda a, n: ops.sigmoid(a)),
    "relu_backward": ("dy", lambda n: (n,), lambda a, n: ops.relu_backward(a, np.ones(n, np.float32))),
    "matmul": ("a", lambda n: (1, n), lambda a, n: ops.matmul(a, np.ones((n, 2), np.float32))),
    "conv2d_forward": ("x", lambda n: (1, 1, 1, n),
                       lambda a, n: ops.conv2d_forward(a, np.ones((1, 1, 1, 1), np.float32))),
    "max_pool2d_forward": ("x", lambda n: (1, 1, 1, n), lambda a, n: ops.max_pool2d_forward(a, 1)),
    "batch_norm_forward": ("input", lambda n: (1, 1, n), lambda a, n: ops.batch_norm_forward(a)),
    "layer_norm_forward": ("input", lambda n: (n,), lambda a, n: ops.layer_norm_forward(a, (n,))),
    "cross_entropy": ("input", lambda n: (1, n), lambda a, n: ops.cross_entropy(a, np.zeros(1, np.int64))),
    "mse_loss": ("input", lambda n: (n,), lambda a, n: ops.mse_loss(a, np.ones(n, np.float32))),
    "dropout": ("x", lambda n: (n,), lambda a, n: ops.dropout(a, 0.5)),
    "gelu": ("x", lambda n: (n,), lambda a, n: ops.gelu(a)),
}
NON_ARRAYS = {  # kind -> (the value for a shape, the type name the error must give)
    "list": (lambda shape: np.ones(shape).tolist(), "list"),
    "scalar": (lambda shape: 1.5, "float"),
    "none": (lambda shape: None, "NoneType"),
    "object": (lambda shape: np.full(shape, None, dtype=object), "object"),
}


@fuzz(600)
@given(st.sampled_from(sorted(OP_ARGS)), st.sampled_from(WRONG_DTYPES + sorted(NON_ARRAYS)), st.integers(1, 40))
@checked
def test_wrong_dtypes_raise_type_error_naming_the_argument(op, dtype, n):
    """Every op given a wrong dtype or a non-array where it takes a float array: a TypeError from
    gradkit naming the argument and what came (the value has the shape the call needs)."""
    name, shape, call = OP_ARGS[op]
    if dtype in NON_ARRAYS:
        make, came = NON_ARRAYS[dtype]
        a = make(shape(n))
    else:
        a, came = np.ones(shape(n), dtype), str(np.dtype(dtype))
    with pytest.raises(TypeError) as info:
        call(a, n)
    check_error(info.value, [name])
    assert came in str(info.value), f"{op} with {dtype}: the error does not say what came: {info.value}"
    count()


PLANNED = {"test_activation_forward": 2400, "test_activation_backward": 1200, "test_matmul": 1200,
           "test_cross_entropy": 900, "test_mse_loss": 300, "test_conv2d_forward": 500,
           "test_conv2d_backward": 300, "test_pooling_forward": 600,
           "test_normalization_forward": 600, "test_dropout": 400,
           "test_wrong_dtypes_raise_type_error_naming_the_argument": 600}


@pytest.fixture(autouse=True)
def _each_test_runs_its_cases(request):
    """Fails a fuzz test that checked fewer cases than planned."""
    before = CASES["count"]
    yield
    name = request.node.name
    ran = check_ran(name, before, PLANNED)
    if name in PLANNED:
        CASES["ops"] = CASES.get("ops", 0) + ran
