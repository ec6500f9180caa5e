"""Fused BatchNorm2d -> ReLU -> MaxPool2d(2): the kernel pair against a float64 NumPy reference
(forward, backward, running statistics; train and eval; every ISA, 1 and 2 threads; odd sizes,
rows shorter and longer than a vector, sizes 0 and 1), bad arguments, and ``Sequential``'s
fused path against the same layers run one by one.
"""
import copy

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn, ops
from test_nn_normalization import assert_close  # scaled max difference, printed on failure

TOL = {np.float32: 3e-5, np.float64: 1e-11}
EPS = 1e-5


def distinct_input(rng, shape, dtype):
    """Values 0.01 apart within each channel (shuffled): window maxima never tie, even in float32."""
    n, c, h, w = shape
    per = n * h * w
    x = np.empty(shape, dtype=np.float64)
    for ch in range(c):
        vals = (rng.permutation(per) - per / 2) * (0.01 * (ch + 1)) + rng.normal()
        x[:, ch] = vals.reshape(n, h, w)
    return x.astype(dtype)


def ref(x, w, b, dy, training, rm=None, rv=None):
    """float64 reference: y, dx, dw, db and the batch mean and biased variance."""
    x = x.astype(np.float64)
    n, c, h, wd = x.shape
    oh, ow = h // 2, wd // 2
    w64 = np.ones(c) if w is None else w.astype(np.float64)
    b64 = np.zeros(c) if b is None else b.astype(np.float64)
    axes = (0, 2, 3)
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, var = rm.astype(np.float64), rv.astype(np.float64)
    rstd = 1.0 / np.sqrt(var + EPS)
    cs = (1, c, 1, 1)
    xhat = (x - mean.reshape(cs)) * rstd.reshape(cs)
    v = xhat * w64.reshape(cs) + b64.reshape(cs)
    win = v[:, :, :2 * oh, :2 * ow].reshape(n, c, oh, 2, ow, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh, ow, 4)
    j = win.argmax(axis=-1)  # the first max in raster order
    m = win.max(axis=-1)
    y = np.maximum(m, 0.0)
    g4 = np.zeros_like(win)
    np.put_along_axis(g4, j[..., None], np.where(m > 0, dy.astype(np.float64), 0.0)[..., None], axis=-1)
    dv = np.zeros_like(x)
    dv[:, :, :2 * oh, :2 * ow] = g4.reshape(n, c, oh, ow, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * oh, 2 * ow)
    dw = (dv * xhat).sum(axis=axes)
    db = dv.sum(axis=axes)
    dxhat = dv * w64.reshape(cs)
    if training:
        dx = rstd.reshape(cs) * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                                 - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))
    else:
        dx = dxhat * rstd.reshape(cs)
    return y, dx, dw, db, mean, var


SHAPES = [(2, 3, 4, 4), (3, 2, 5, 7), (2, 2, 2, 2), (1, 1, 2, 3), (1, 3, 28, 28), (2, 2, 6, 70), (4, 1, 3, 33),
          (2, 2, 9, 2), (2, 2, 14, 14), (3, 2, 15, 15), (2, 1, 16, 32), (2, 2, 4, 34)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_matches_reference(isa, threads, rng, dtype, shape, training, affine):
    x = distinct_input(rng, shape, dtype)
    c = shape[1]
    w = (rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c)).astype(dtype) if affine else None
    b = rng.normal(size=c).astype(dtype) if affine else None
    rm = rng.normal(size=c).astype(dtype)
    rv = rng.uniform(0.5, 2.0, c).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, code, mean, rstd = ops.batch_norm_relu_pool2_forward(x, w, b, rm, rv, training=training, momentum=0.1,
                                                            eps=EPS)
    dy = rng.normal(size=y.shape).astype(dtype)
    y_ref, dx_ref, dw_ref, db_ref, m_ref, v_ref = ref(x, w, b, dy, training, rm0, rv0)
    tol = TOL[dtype]
    assert y.dtype == dtype and code.dtype == np.uint8
    assert_close(y, y_ref, tol, "y")
    assert_close(mean, m_ref, tol, "mean")
    assert_close(rstd, 1.0 / np.sqrt(v_ref + EPS), tol, "rstd")
    if training:
        count = shape[0] * shape[2] * shape[3]
        unbiased = v_ref * count / (count - 1)
        assert_close(rm, 0.9 * rm0.astype(np.float64) + 0.1 * m_ref, tol, "running_mean")
        assert_close(rv, 0.9 * rv0.astype(np.float64) + 0.1 * unbiased, tol, "running_var")
    else:
        np.testing.assert_array_equal(rm, rm0)
        np.testing.assert_array_equal(rv, rv0)
    dw = np.full(c, 0.5, dtype) if affine else None
    db = np.full(c, -0.5, dtype) if affine else None
    dx = ops.batch_norm_relu_pool2_backward(dy, x, code, mean, rstd, w, dw, db, training=training)
    assert dx.shape == x.shape and dx.dtype == dtype
    assert_close(dx, dx_ref, tol, "dx")
    if affine:
        assert_close(dw, dw_ref + 0.5, tol * 10, "dweight (added into)")
        assert_close(db, db_ref - 0.5, tol * 10, "dbias (added into)")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_as_the_three_ops(isa, rng, dtype):
    """y and the gradients equal BN, ReLU and MaxPool2d run one by one (random data, ties included)."""
    x = rng.normal(size=(3, 4, 10, 12)).astype(dtype)
    x[0, 0, :2, :2] = 1.0  # a tied window
    w, b = rng.normal(size=4).astype(dtype), rng.normal(size=4).astype(dtype)
    y1, mean, rstd = ops.batch_norm_forward(x, w, b)
    z = ops.relu(y1)
    p, idx = ops.max_pool2d_forward(z, 2)
    y2, code, mean2, rstd2 = ops.batch_norm_relu_pool2_forward(x, w, b)
    assert_close(y2, p, TOL[dtype], "y")
    dy = rng.normal(size=p.shape).astype(dtype)
    dw1, db1, dw2, db2 = (np.zeros(4, dtype) for _ in range(4))
    dx1 = ops.batch_norm_backward(ops.relu_backward(ops.max_pool2d_backward(dy, idx, z.shape, 2), z), x, mean, rstd,
                                  w, dw1, db1)
    dx2 = ops.batch_norm_relu_pool2_backward(dy, x, code, mean2, rstd2, w, dw2, db2)
    assert_close(dx2, dx1, TOL[dtype], "dx")
    assert_close(dw2, dw1, TOL[dtype] * 10, "dweight")
    assert_close(db2, db1, TOL[dtype] * 10, "dbias")


# Large enough for two threads (>= 32768 elements): few channels split by rows, many channels by channel.
@pytest.mark.parametrize("shape", [(8, 6, 14, 14), (16, 3, 28, 28), (8, 16, 16, 16)])
def test_identical_bits_for_1_and_2_threads(isa, rng, shape):
    n, c, h, w_ = shape
    x = distinct_input(rng, shape, np.float32)
    w, b = rng.normal(size=c).astype(np.float32), rng.normal(size=c).astype(np.float32)
    dy = rng.normal(size=(n, c, h // 2, w_ // 2)).astype(np.float32)
    y_ref, dx_ref, dw_ref, db_ref, _, _ = ref(x, w, b, dy, True)
    results = []
    for t in (1, 2):
        gk.set_num_threads(t)
        y, code, mean, rstd = ops.batch_norm_relu_pool2_forward(x, w, b)
        dw, db = np.zeros(c, np.float32), np.zeros(c, np.float32)
        dx = ops.batch_norm_relu_pool2_backward(dy, x, code, mean, rstd, w, dw, db)
        results.append((y, code, mean, rstd, dx, dw, db))
        assert_close(y, y_ref, TOL[np.float32], f"y ({t} threads)")
        assert_close(dx, dx_ref, TOL[np.float32], f"dx ({t} threads)")
        assert_close(dw, dw_ref, TOL[np.float32] * 10, f"dweight ({t} threads)")
        assert_close(db, db_ref, TOL[np.float32] * 10, f"dbias ({t} threads)")
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)


def test_empty_batch(rng):
    x = np.zeros((0, 3, 4, 4), np.float32)
    y, code, mean, rstd = ops.batch_norm_relu_pool2_forward(x)
    assert y.shape == (0, 3, 2, 2) and code.shape == (0, 3, 2, 2)
    dx = ops.batch_norm_relu_pool2_backward(np.zeros((0, 3, 2, 2), np.float32), x, code, mean, rstd)
    assert dx.shape == x.shape


def test_bad_arguments(rng):
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="input: expected H and W >= 2"):
        ops.batch_norm_relu_pool2_forward(x[:, :, :1])
    with pytest.raises(ValueError, match="input: expected 4-D"):
        ops.batch_norm_relu_pool2_forward(x[0])
    with pytest.raises(TypeError, match="input"):
        ops.batch_norm_relu_pool2_forward(x.astype(np.int32))
    with pytest.raises(ValueError, match="weight: expected shape"):
        ops.batch_norm_relu_pool2_forward(x, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="running_var: expected running_mean and running_var both"):
        ops.batch_norm_relu_pool2_forward(x, running_mean=np.zeros(3, np.float32))
    y, code, mean, rstd = ops.batch_norm_relu_pool2_forward(x)
    dy = np.ones_like(y)
    with pytest.raises(ValueError, match="dy: expected shape"):
        ops.batch_norm_relu_pool2_backward(dy[:, :, :1], x, code, mean, rstd)
    with pytest.raises(TypeError, match="code: expected a numpy.ndarray of uint8"):
        ops.batch_norm_relu_pool2_backward(dy, x, code.astype(np.int32), mean, rstd)
    bad = code.copy()
    bad[1, 2, 1, 0] = 7
    with pytest.raises(ValueError, match="code: expected values 0..3 or 255"):
        ops.batch_norm_relu_pool2_backward(dy, x, bad, mean, rstd)
    with pytest.raises(ValueError, match="mean: expected shape"):
        ops.batch_norm_relu_pool2_backward(dy, x, code, mean[:2], rstd)


# -- Sequential's fused path ------------------------------------------------------------------------
def build(pool=None):
    gk.manual_seed(3)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), pool or nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 3 * 3, 5))


def one_by_one(model, x, dy):
    """Forward and backward layer by layer (never fused); returns y and the input gradient."""
    layers = list(model)
    h = x
    for m in layers:
        h = m(h)
    g = dy
    for m in reversed(layers):
        g = m.backward(g)
    return h, g


@pytest.mark.parametrize("train", [True, False])
def test_sequential_fused_matches_layers(threads, rng, train):
    fused = build()
    plain = copy.deepcopy(fused)
    fused.train(train)
    plain.train(train)
    x = rng.normal(size=(3, 2, 7, 6)).astype(np.float32)
    for step in range(2):  # twice: the running statistics feed the second batch in eval mode
        dy = rng.normal(size=(3, 5)).astype(np.float32)
        y = fused(x)
        dx = fused.backward(dy)
        y_ref, dx_ref = one_by_one(plain, x, dy)
        assert_close(y, y_ref, 1e-5, f"y (step {step})")
        assert_close(dx, dx_ref, 1e-5, f"dx (step {step})")
        for (name, p), q in zip(fused.named_parameters(), plain.parameters()):
            assert_close(p.grad, q.grad, 1e-5, f"{name}.grad (step {step})")
        for (name, b), b_ref in zip(fused.named_buffers(), [b for _, b in plain.named_buffers()]):
            assert_close(b, b_ref, 1e-6, f"buffer {name} (step {step})")
    assert int(fused[1].num_batches_tracked) == (2 if train else 0)


def test_sequential_fused_input_grad_false_and_no_grad(rng):
    fused = build()
    plain = copy.deepcopy(fused)
    x = rng.normal(size=(2, 2, 6, 6)).astype(np.float32)
    dy = rng.normal(size=(2, 5)).astype(np.float32)
    fused(x)
    assert fused.backward(dy, input_grad=False) is None
    one_by_one(plain, x, dy)
    for p, q in zip(fused.parameters(), plain.parameters()):
        assert_close(p.grad, q.grad, 1e-5, "grad")
    with gk.no_grad():
        y = fused(x)
    assert_close(y, plain(x), 1e-5, "y under no_grad")
    with pytest.raises(RuntimeError, match="no cached forward"):
        fused.backward(dy)


def test_fused_layers_keep_no_cache_of_their_own(rng):
    model = build()
    model(rng.normal(size=(2, 2, 6, 6)).astype(np.float32))
    with pytest.raises(RuntimeError, match="no cached forward"):
        model[1].backward(np.ones((2, 4, 6, 6), np.float32))


@pytest.mark.parametrize("pool", [nn.MaxPool2d(3), nn.MaxPool2d(2, stride=1), nn.MaxPool2d(2, padding=1)])
def test_other_pools_are_not_fused_and_still_right(rng, pool):
    gk.manual_seed(0)
    fused = nn.Sequential(nn.BatchNorm2d(2), nn.ReLU(), pool)
    plain = copy.deepcopy(fused)
    x = rng.normal(size=(2, 2, 6, 6)).astype(np.float32)
    y = fused(x)
    dy = rng.normal(size=y.shape).astype(np.float32)
    y_ref, dx_ref = one_by_one(plain, x, dy)
    assert_close(y, y_ref, 1e-6, "y")
    assert_close(fused.backward(dy), dx_ref, 1e-6, "dx")


def test_bad_input_keeps_the_layer_errors(rng):
    model = nn.Sequential(nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2))
    with pytest.raises(ValueError, match="BatchNorm2d: input: expected a 4-D array"):
        model(rng.normal(size=(2, 2, 6)).astype(np.float32))
    with pytest.raises(ValueError, match="BatchNorm2d: input: expected 2 channels"):
        model(rng.normal(size=(2, 3, 6, 6)).astype(np.float32))
    with pytest.raises(TypeError, match="BatchNorm2d: input: expected dtype float32"):
        model(rng.normal(size=(2, 2, 6, 6)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_relu_runs_match_layers(threads, rng, dtype):
    """Conv2d -> ReLU and Linear -> ReLU with the ReLU in the layer's output pass."""
    gk.manual_seed(5)
    fused = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 4, 7), nn.ReLU(),
                          nn.Linear(7, 3), nn.ReLU()).to(dtype)
    plain = copy.deepcopy(fused)
    x = rng.normal(size=(4, 2, 5, 4)).astype(dtype)
    dy = rng.normal(size=(4, 3)).astype(dtype)
    y = fused(x)
    dx = fused.backward(dy)
    y_ref, dx_ref = one_by_one(plain, x, dy)
    tol = {np.float32: 1e-5, np.float64: 1e-12}[dtype]
    assert_close(y, y_ref, tol, "y")
    assert np.all(y >= 0) and np.any(y == 0)
    assert_close(dx, dx_ref, tol, "dx")
    for (name, p), q in zip(fused.named_parameters(), plain.parameters()):
        assert_close(p.grad, q.grad, tol, f"{name}.grad")
    with pytest.raises(RuntimeError, match="no cached forward"):
        fused[1].backward(np.ones((4, 3, 5, 4), dtype))
    fused.zero_grad()
    fused(x)
    assert fused.backward(dy, input_grad=False) is None
    assert_close(fused[0].weight.grad, plain[0].weight.grad, tol, "conv weight grad with input_grad=False")


def test_layer_relu_bad_input_keeps_the_layer_errors(rng):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    with pytest.raises(ValueError, match="Linear: input: expected shape"):
        model(rng.normal(size=(2, 5)).astype(np.float32))
    with pytest.raises(ValueError, match="expected shape"):
        model(rng.normal(size=(2, 4)).astype(np.float32))
        model.backward(np.ones((2, 4), np.float32))
