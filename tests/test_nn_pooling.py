"""Pooling forward and backward against float64 NumPy references, on every ISA and 1 and 2 threads."""
import itertools

import numpy as np
import pytest

import gradkit as gk
from gradkit import ops


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_pool(x, kernel, stride, padding, kind):
    """Naive float64 max/avg pooling; returns y, the flat argmax per window (max) and a backward."""
    (kh, kw), (ph, pw) = _pair(kernel), _pair(padding)
    sh, sw = _pair(kernel if stride is None else stride)
    N, C, H, W = x.shape
    x = x.astype(np.float64)
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, C, OH, OW))
    arg = np.zeros((N, C, OH, OW), np.int64)
    for oh, ow in itertools.product(range(OH), range(OW)):
        h0, w0 = oh * sh - ph, ow * sw - pw
        hs, ws = range(max(h0, 0), min(h0 + kh, H)), range(max(w0, 0), min(w0 + kw, W))
        win = x[:, :, hs.start:hs.stop, ws.start:ws.stop].reshape(N, C, -1)
        if kind == "max":
            nan = np.isnan(win)
            k = np.where(nan.any(-1), np.argmax(nan, -1), np.argmax(np.where(nan, 0, win), -1))
            arg[:, :, oh, ow] = (hs.start + k // len(ws)) * W + ws.start + k % len(ws)
            y[:, :, oh, ow] = np.take_along_axis(win, k[..., None], -1)[..., 0]
        else:
            y[:, :, oh, ow] = win.sum(-1) / (kh * kw)

    def backward(dy):
        dx = np.zeros((N, C, H * W))
        dy = dy.astype(np.float64)
        for oh, ow in itertools.product(range(OH), range(OW)):
            if kind == "max":
                np.put_along_axis(dx, arg[:, :, oh, ow, None],
                                  np.take_along_axis(dx, arg[:, :, oh, ow, None], -1) + dy[:, :, oh, ow, None], -1)
            else:
                h0, w0 = oh * sh - ph, ow * sw - pw
                view = dx.reshape(N, C, H, W)[:, :, max(h0, 0):min(h0 + kh, H), max(w0, 0):min(w0 + kw, W)]
                view += dy[:, :, oh, ow, None, None] / (kh * kw)
        return dx.reshape(N, C, H, W)

    return y, arg, backward


def assert_close(got, want, dtype, name, tol=None):
    tol = tol if tol is not None else {np.float32: 1e-6, np.float64: 1e-14}[dtype]
    assert got.dtype == dtype and got.shape == want.shape, f"{name}: {got.dtype}{got.shape} vs {dtype}{want.shape}"
    err = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    assert err <= tol, f"{name}: max difference {err:.3g} > {tol:.1g}"


POOL_CASES = [
    # kernel, stride, padding
    (2, None, 0), (2, 1, 1), (3, 2, 1), (3, None, 0), ((2, 3), (1, 2), (1, 1)), (3, 1, 0), ((3, 1), (2, 1), (1, 0)),
    (1, 1, 0), (5, 2, 2),
]
SHAPES = [(2, 3, 9, 11), (1, 1, 5, 5), (3, 2, 28, 28),
          (2, 2, 6, 70), (1, 2, 7, 33)]  # rows longer than two vectors; odd sizes with a row of 16 windows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool2d(isa, threads, rng, kind, dtype, kernel, stride, padding, shape):
    """Max pooling is exact (and its argmax indices are PyTorch's); average pooling sums."""
    x = rng.standard_normal(shape).astype(dtype)
    y_ref, arg_ref, backward = ref_pool(x, kernel, stride, padding, kind)
    summed = {np.float32: 1e-5, np.float64: 1e-13}[dtype]
    if kind == "max":
        y, idx = ops.max_pool2d_forward(x, kernel, stride, padding)
        assert idx.dtype == np.int32
        np.testing.assert_array_equal(idx, arg_ref)
        assert_close(y, y_ref, dtype, "y")
    else:
        y = ops.avg_pool2d_forward(x, kernel, stride, padding)
        assert_close(y, y_ref, dtype, "y", tol=summed)
    dy = rng.standard_normal(y.shape).astype(dtype)
    if kind == "max":
        dx = ops.max_pool2d_backward(dy, idx, x.shape, kernel, stride, padding)
    else:
        dx = ops.avg_pool2d_backward(dy, x.shape, kernel, stride, padding)
    assert_close(dx, backward(dy), dtype, "dx", tol=summed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (1, 1, 1, 1), (4, 5, 1, 17), (2, 64, 14, 14), (0, 3, 4, 4)])
def test_global_avg_pool2d(isa, threads, rng, dtype, shape):
    x = rng.standard_normal(shape).astype(dtype)
    y = ops.global_avg_pool2d_forward(x)
    assert_close(y, x.astype(np.float64).mean(axis=(2, 3)), dtype, "y",
                 tol={np.float32: 1e-6, np.float64: 1e-14}[dtype])
    dy = rng.standard_normal(shape[:2]).astype(dtype)
    dx = ops.global_avg_pool2d_backward(dy, shape)
    want = np.broadcast_to(dy.astype(np.float64)[:, :, None, None] / (shape[2] * shape[3]), shape)
    assert_close(dx, want, dtype, "dx", tol={np.float32: 1e-7, np.float64: 1e-15}[dtype])


def test_max_pool2d_nan_and_ties(isa):
    x = np.array([[[[1.0, np.nan, 3.0, 3.0], [0.0, 2.0, 3.0, 3.0]]]], np.float32)
    y, idx = ops.max_pool2d_forward(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 1
    assert y[0, 0, 0, 1] == 3.0 and idx[0, 0, 0, 1] == 2  # first of equal maxima
    # ties across the rows of a window, and a NaN in each row: the scan's first max (the last NaN)
    x = np.array([[[[1.0, 3.0, 0.0, 1.0, np.nan, 1.0], [3.0, 0.0, 5.0, 5.0, np.nan, 0.0]]]], np.float32)
    for dtype in (np.float32, np.float64):
        y, idx = ops.max_pool2d_forward(x.astype(dtype), 2)
        np.testing.assert_array_equal(idx[0, 0, 0], [1, 8, 10])
        assert y[0, 0, 0, 0] == 3.0 and y[0, 0, 0, 1] == 5.0 and np.isnan(y[0, 0, 0, 2])
    x = np.full((1, 1, 3, 3), -np.inf, np.float64)
    y, idx = ops.max_pool2d_forward(x, 2, 1, 1)
    assert np.all(y == -np.inf) and idx.min() >= 0 and idx.max() < 9


@pytest.mark.parametrize("fn", ["max", "avg"])
def test_pool_empty_batch(fn):
    x = np.zeros((0, 3, 6, 6), np.float32)
    if fn == "max":
        y, idx = ops.max_pool2d_forward(x, 2)
        dx = ops.max_pool2d_backward(y, idx, x.shape, 2)
    else:
        y = ops.avg_pool2d_forward(x, 2)
        dx = ops.avg_pool2d_backward(y, x.shape, 2)
    assert y.shape == (0, 3, 3, 3) and dx.shape == x.shape


@pytest.mark.parametrize("fn", [ops.max_pool2d_forward, ops.avg_pool2d_forward])
@pytest.mark.parametrize("args,error,match", [
    ((np.zeros((3, 6, 6), np.float32), 2), ValueError, r"x: expected a 4-D array .* got 3-D"),
    ((np.zeros((1, 1, 6, 6), np.float32), 0), ValueError, r"kernel_size: expected an integer >= 1, got 0"),
    ((np.zeros((1, 1, 6, 6), np.float32), 2, -1), ValueError, r"stride: expected an integer >= 1, got -1"),
    ((np.zeros((1, 1, 6, 6), np.float32), 2, 2, -1), ValueError, r"padding: expected an integer >= 0, got -1"),
    ((np.zeros((1, 1, 6, 6), np.float32), 2, 2, 2), ValueError, r"padding: expected at most half the kernel size"),
    ((np.zeros((1, 1, 2, 6), np.float32), 3), ValueError, r"kernel_size: .*height .* 2 \+ 2\*0 = 2, got 3"),
    ((np.zeros((1, 1, 6, 6), np.int32), 2), TypeError, r"x: expected a numpy.ndarray of float32 or float64, got int32"),
    ((np.zeros((1, 1, 6, 6), np.float32), (2, 2, 2)), ValueError, r"kernel_size: expected an int or a pair"),
])
def test_pool_rejects_bad_input(fn, args, error, match):
    with pytest.raises(error, match=match):
        fn(*args)


def test_pool_backward_rejects_bad_input():
    x = np.zeros((2, 3, 6, 6), np.float32)
    y, idx = ops.max_pool2d_forward(x, 2)
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3, 3, 3\)"):
        ops.max_pool2d_backward(y[:, :2], idx, x.shape, 2)
    with pytest.raises(TypeError, match="indices: expected a numpy.ndarray of int32"):
        ops.max_pool2d_backward(y, idx.astype(np.int64), x.shape, 2)
    bad = idx.copy()
    bad[1, 2, 0, 0] = 36
    with pytest.raises(ValueError, match=r"indices: expected values in \[0, H\*W\) = \[0, 36\), got 1 values outside"):
        ops.max_pool2d_backward(y, bad, x.shape, 2)
    with pytest.raises(ValueError, match="input_shape: expected 4 sizes"):
        ops.avg_pool2d_backward(y, (2, 3, 6), 2)
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3\)"):
        ops.global_avg_pool2d_backward(np.zeros((2, 4), np.float32), x.shape)
    with pytest.raises(ValueError, match="x: expected a non-empty spatial size"):
        ops.global_avg_pool2d_forward(np.zeros((2, 3, 0, 4), np.float32))


# ---- gk.nn pooling layers ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,kind", [(gk.nn.MaxPool2d, "max"), (gk.nn.AvgPool2d, "avg")])
def test_pool_modules(rng, dtype, cls, kind):
    m = cls(3, stride=2, padding=1)
    assert m.parameters() == []
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    y_ref, _, backward = ref_pool(x, 3, 2, 1, kind)
    y = m(x)
    assert_close(y, y_ref, dtype, "y", tol=1e-5)
    dy = rng.standard_normal(y.shape).astype(dtype)
    assert_close(m.backward(dy), backward(dy), dtype, "dx", tol=1e-5)
    assert repr(m) == f"{cls.__name__}(kernel_size=3, stride=2, padding=1)"
    assert cls(2).stride == 2
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3, 5, 4\)"):
        m.backward(dy[:, :, :4])
    with pytest.raises(ValueError, match="padding: expected at most half the kernel size"):
        cls(2, padding=2)
    with pytest.raises(ValueError, match="kernel_size: expected an integer >= 1, got 0"):
        cls(0)
    with pytest.raises(ValueError, match="expected a 4-D array"):
        m(x[0])
    with pytest.raises(ValueError, match="kernel_size"):  # a kernel larger than the input
        cls(2)(np.ones((1, 1, 1, 1), dtype))
    with gk.no_grad():
        m(x)
    with pytest.raises(RuntimeError, match="no cached forward"):
        m.backward(dy)


def test_global_avg_pool_module(rng):
    m = gk.nn.GlobalAvgPool2d()
    x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    y = m(x)
    assert_close(y, x.astype(np.float64).mean(axis=(2, 3)), np.float32, "y")
    dy = rng.standard_normal((2, 5)).astype(np.float32)
    assert_close(m.backward(dy), np.broadcast_to(dy[:, :, None, None] / 12.0, x.shape).astype(np.float64),
                 np.float32, "dx")
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 5\)"):
        m.backward(dy[:, :4])
    with pytest.raises(TypeError, match="expected dtype float32 or float64"):
        m(x.astype(np.int64))
    assert repr(m) == "GlobalAvgPool2d()"


# ---- AdaptiveAvgPool2d: PyTorch's bins --------------------------------------------------------

def ref_adaptive_avg_pool(x, oh, ow):
    """Loop over PyTorch's bins in float64: start = floor(i*H/oh), end = ceil((i+1)*H/oh); y and a backward."""
    N, C, H, W = x.shape
    x = x.astype(np.float64)
    bins = [((i * H) // oh, -(-(i + 1) * H // oh), (j * W) // ow, -(-(j + 1) * W // ow))
            for i in range(oh) for j in range(ow)]
    y = np.zeros((N, C, oh, ow))
    for k, (h0, h1, w0, w1) in enumerate(bins):
        y[:, :, k // ow, k % ow] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))

    def backward(dy):
        dx = np.zeros((N, C, H, W))
        for k, (h0, h1, w0, w1) in enumerate(bins):
            dx[:, :, h0:h1, w0:w1] += dy[:, :, k // ow, k % ow, None, None].astype(np.float64) / ((h1 - h0) * (w1 - w0))
        return dx

    return y, backward


ADAPTIVE_CASES = [
    # input shape, output_size, expected (OH, OW)
    ((2, 3, 9, 11), (4, 5), (4, 5)),       # overlapping bins in both directions
    ((2, 3, 7, 7), 3, (3, 3)),
    ((1, 2, 1, 1), (7, 7), (7, 7)),       # torchvision's VGG on a 32x32 input: 1x1 -> 7x7
    ((2, 2, 3, 5), (7, 8), (7, 8)),       # output larger than the input, not a multiple
    ((2, 3, 12, 10), (4, 5), (4, 5)),     # H % OH == 0 and W % OW == 0: the avg-pool kernel
    ((2, 3, 6, 9), (6, 9), (6, 9)),       # identity
    ((3, 4, 5, 7), 1, (1, 1)),            # global average
    ((2, 3, 9, 11), (None, 4), (9, 4)),   # None keeps the size
    ((2, 3, 9, 11), (5, None), (5, 11)),
    ((0, 3, 8, 8), (3, 3), (3, 3)),       # empty batch
    ((0, 3, 8, 8), 2, (2, 2)),
    ((2, 0, 5, 5), (2, 3), (2, 3)),       # no channels
    ((1, 1, 1, 1), 1, (1, 1)),
    ((1, 1, 1, 17), (1, 4), (1, 4)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,output_size,out_hw", ADAPTIVE_CASES)
def test_adaptive_avg_pool2d(isa, threads, rng, dtype, shape, output_size, out_hw):
    m = gk.nn.AdaptiveAvgPool2d(output_size)
    x = rng.standard_normal(shape).astype(dtype)
    y_ref, backward = ref_adaptive_avg_pool(x, *out_hw)
    y = m(x)
    assert y.shape == shape[:2] + out_hw
    tol = {np.float32: 1e-6, np.float64: 1e-14}[dtype]
    assert_close(y, y_ref, dtype, "y", tol=tol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = m.backward(dy)
    assert dx.flags.c_contiguous
    assert_close(dx, backward(dy), dtype, "dx", tol={np.float32: 1e-5, np.float64: 1e-13}[dtype])


def test_adaptive_avg_pool2d_gradcheck(rng):
    """Central differences in float64 on overlapping bins, an enlarging pool and the kernel path."""
    for shape, size in [((2, 2, 5, 7), (3, 4)), ((1, 2, 2, 3), (5, 4)), ((2, 1, 6, 4), (3, 2))]:
        m = gk.nn.AdaptiveAvgPool2d(size)
        assert gk.gradcheck(m, rng.standard_normal(shape))


def test_adaptive_avg_pool2d_module_contract(rng):
    m = gk.nn.AdaptiveAvgPool2d((7, 7))
    assert m.parameters() == [] and m.state_dict() == {}
    assert repr(m) == "AdaptiveAvgPool2d(output_size=(7, 7))"
    assert repr(gk.nn.AdaptiveAvgPool2d(3)) == "AdaptiveAvgPool2d(output_size=3)"
    assert repr(gk.nn.AdaptiveAvgPool2d((None, 2))) == "AdaptiveAvgPool2d(output_size=(None, 2))"
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    y = m(x)
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3, 7, 7\)"):
        m.backward(y[:, :, :6])
    with pytest.raises(TypeError, match=r"dy: expected dtype float32"):
        m.backward(y.astype(np.float64))
    with pytest.raises(ValueError, match="expected a 4-D array"):
        m(x[0])
    with pytest.raises(TypeError, match="expected dtype float32 or float64"):
        m(x.astype(np.int32))
    with pytest.raises(ValueError, match=r"expected a non-empty spatial size, got shape \(2, 3, 0, 6\)"):
        m(x[:, :, :0])
    for bad in [0, -1, (2, 0)]:
        with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d: output_size: expected an integer >= 1, got"):
            gk.nn.AdaptiveAvgPool2d(bad)
    for bad in [(2, 2, 2), None, (None,)]:
        with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d: output_size: expected a positive int or a pair"):
            gk.nn.AdaptiveAvgPool2d(bad)
    for bad in [2.5, True, (2, True)]:
        with pytest.raises(TypeError, match=r"AdaptiveAvgPool2d: output_size: expected an int, got"):
            gk.nn.AdaptiveAvgPool2d(bad)
    with gk.no_grad():
        m(x)
    with pytest.raises(RuntimeError, match="no cached forward"):
        m.backward(y)
