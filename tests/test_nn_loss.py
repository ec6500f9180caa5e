"""Losses: fused softmax cross-entropy (label smoothing, any integer labels) and MSE
against float64 NumPy references, every ISA, 1 and 2 threads bit-identical."""
import numpy as np
import pytest

import gradkit as gk
from gradkit import ops

CE_SHAPES = [(1, 1), (1, 10), (7, 3), (33, 17), (128, 10), (5, 31), (9, 33), (64, 1000)]


def ce_ref(x, labels, eps=0.0):
    """float64 loss and dlogits of softmax cross-entropy with PyTorch's label smoothing."""
    x = x.astype(np.float64)
    n, c = x.shape
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
    q = np.full((n, c), eps / c)
    q[np.arange(n), labels] += 1 - eps
    loss = (lse - (q * x).sum(axis=1)).mean() if n else np.nan
    e = np.exp(x - m)
    soft = e / e.sum(axis=1, keepdims=True)
    return loss, (soft - q) / max(n, 1)


def logits(n, c, dtype, scale=3.0, seed=0):
    return (np.random.default_rng(seed + n * 31 + c).standard_normal((n, c)) * scale).astype(dtype)


def labels_of(n, c, dtype=np.int64, seed=0):
    return np.random.default_rng(seed + n).integers(0, c, n).astype(dtype)


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", CE_SHAPES)
def test_cross_entropy_matches_float64(shape, dtype, eps, isa, threads):
    n, c = shape
    x = logits(n, c, dtype)
    y = labels_of(n, c)
    loss, d = ops.cross_entropy(x, y, eps)
    ref_loss, ref_d = ce_ref(x, y, eps)
    assert isinstance(loss, float)
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    assert abs(loss - ref_loss) <= rtol * abs(ref_loss) + rtol, f"loss {loss} vs {ref_loss} ({isa})"
    assert d.dtype == dtype and d.shape == x.shape
    err = np.abs(d - ref_d).max()
    atol = (8 * np.finfo(dtype).eps) / n
    assert err <= atol, f"dlogits max difference {err:.3g} > {atol:.3g} ({isa})"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_stable_for_large_logits(dtype, isa):
    x = logits(16, 37, dtype, scale=1e4)
    x[0, :] = 1e4
    x[1, :] = -1e4
    x[2, 5] = 1e4
    x[2, 6] = -1e4
    y = labels_of(16, 37)
    for eps in (0.0, 0.2):
        loss, d = ops.cross_entropy(x, y, eps)
        ref_loss, ref_d = ce_ref(x, y, eps)
        assert np.isfinite(loss) and np.isfinite(d).all()
        assert abs(loss - ref_loss) <= 1e-6 * abs(ref_loss), f"loss {loss} vs {ref_loss}"
        assert np.abs(d - ref_d).max() <= 8 * np.finfo(dtype).eps / 16


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [3, 17, 40])
def test_cross_entropy_masked_logits(c, dtype, eps, isa, threads):
    """-inf (masked) logits: PyTorch's values. A masked non-target gives a finite loss without
    smoothing (inf with it: the smoothed target puts weight there); a masked target gives inf;
    the gradient is finite in both cases (softmax 0 at masked logits)."""
    x = logits(6, c, dtype)
    x[0, 1] = -np.inf          # one masked non-target
    x[1, 2:] = -np.inf         # all but two masked, target kept
    x[2, 0] = -np.inf          # the masked target
    x[3, c - 1] = -np.inf      # masked in the SIMD tail
    y = np.array([0, 1, 0, 2, 1, 0])
    # values PyTorch 2.13 gives for these rows, from the float64 formula with 0 * inf terms dropped
    x64 = x.astype(np.float64)
    m = x64.max(axis=1, keepdims=True)
    e = np.exp(x64 - m)
    lse = m[:, 0] + np.log(e.sum(axis=1))
    nll = lse - x64[np.arange(6), y]
    with np.errstate(invalid="ignore"):
        smooth = (lse[:, None] - x64).mean(axis=1)
    ref_rows = (1 - eps) * nll + (eps * smooth if eps else 0.0)
    q = np.full(x.shape, eps / c)
    q[np.arange(6), y] += 1 - eps
    ref_d = (e / e.sum(axis=1, keepdims=True) - q) / 6
    for rows in (slice(0, 2), slice(3, 6), slice(0, 6)):
        loss, d = ops.cross_entropy(x[rows], y[rows], eps)
        ref = ref_rows[rows].mean()
        assert np.isfinite(d).all(), f"non-finite gradient for rows {rows} ({isa})"
        if np.isfinite(ref):
            assert abs(loss - ref) <= 1e-5 * abs(ref), f"loss {loss} vs {ref} for rows {rows} ({isa})"
        else:
            assert loss == ref, f"loss {loss} vs {ref} for rows {rows} ({isa})"
        n = rows.stop - rows.start
        err = np.abs(d - ref_d[rows] * 6 / n).max()
        assert err <= 8 * np.finfo(dtype).eps, f"dlogits max difference {err:.3g} ({isa})"
    # without smoothing a masked non-target leaves the loss finite; a masked target makes it inf
    if eps == 0.0:
        assert np.isfinite(ops.cross_entropy(x[:2], y[:2])[0])
        assert ops.cross_entropy(x[2:3], y[2:3])[0] == np.inf
    else:
        assert ops.cross_entropy(x[:1], y[:1], eps)[0] == np.inf


def test_cross_entropy_threads_bit_identical(isa):
    x = logits(4096, 1000, np.float32)
    y = labels_of(4096, 1000)
    out = []
    for nt in (1, 2):
        gk.set_num_threads(nt)
        out.append(ops.cross_entropy(x, y, 0.1))
    assert out[0][0] == out[1][0], "loss differs between 1 and 2 threads"
    assert np.array_equal(out[0][1], out[1][1]), "dlogits differ between 1 and 2 threads"


@pytest.mark.parametrize("label_dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
                                         np.uint64])
def test_cross_entropy_any_integer_labels(label_dtype):
    x = logits(20, 7, np.float32)
    y = labels_of(20, 7)
    loss64, d64 = ops.cross_entropy(x, y)
    loss, d = ops.cross_entropy(x, y.astype(label_dtype))
    assert loss == loss64 and np.array_equal(d, d64)


def test_cross_entropy_no_grad_and_empty():
    x = logits(8, 5, np.float64)
    loss, d = ops.cross_entropy(x, labels_of(8, 5), grad=False)
    assert d is None and loss == ops.cross_entropy(x, labels_of(8, 5))[0]
    loss, d = ops.cross_entropy(np.zeros((0, 5), np.float32), np.zeros(0, np.int64))
    assert np.isnan(loss) and d.shape == (0, 5)  # mean over no rows, as PyTorch


def test_cross_entropy_bad_inputs():
    x = logits(4, 3, np.float32)
    with pytest.raises(ValueError, match=r"target: expected class indices in \[0, 3\) \(C = 3\), got label 3 at index 2"):
        ops.cross_entropy(x, np.array([0, 1, 3, 2]))
    with pytest.raises(ValueError, match="got label -1 at index 0"):
        ops.cross_entropy(x, np.array([-1, 1, 2, 2]))
    with pytest.raises(ValueError, match=r"got label 18446744073709551615 at index 1"):
        ops.cross_entropy(x, np.array([0, 2**64 - 1, 0, 0], np.uint64))
    with pytest.raises(TypeError, match="target: expected an integer dtype .*float32"):
        ops.cross_entropy(x, np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="target: expected an integer dtype .*bool"):
        ops.cross_entropy(x, np.zeros(4, bool))
    with pytest.raises(TypeError, match="target: expected a numpy.ndarray"):
        ops.cross_entropy(x, [0, 1, 2, 0])
    with pytest.raises(ValueError, match=r"target: expected shape \(4,\) .*got \(3,\)"):
        ops.cross_entropy(x, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"input: expected a 2-D array \(N, C\), got 1-D"):
        ops.cross_entropy(x[0], np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="input: expected .*float32 or float64.*int32"):
        ops.cross_entropy(np.zeros((4, 3), np.int32), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"label_smoothing: expected a value in \[0, 1\], got 1.5"):
        ops.cross_entropy(x, np.zeros(4, np.int64), 1.5)
    # the binding itself checks too (no crash when called directly)
    from gradkit import _core
    with pytest.raises(ValueError, match="label 7 at index 0"):
        _core.cross_entropy(x, np.array([7, 0, 0, 0], np.int64))
    with pytest.raises(TypeError, match="target: expected a numpy.ndarray of int64"):
        _core.cross_entropy(x, np.array([0, 0, 0, 0], np.int32))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("n,c", [(1, 1), (7, 10), (32, 10), (33, 3), (128, 10)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_module_matches_float64_and_gradcheck(n, c, smoothing, dtype):
    m = gk.nn.CrossEntropyLoss(label_smoothing=smoothing)
    x = logits(n, c, dtype)
    y = labels_of(n, c, np.int32)
    loss = m(x, y)
    ref_loss, ref_d = ce_ref(x, y, smoothing)
    assert isinstance(loss, float) and abs(loss - ref_loss) <= 1e-5 * abs(ref_loss) + 1e-6
    d = m.backward()
    assert d.dtype == dtype and d.shape == (n, c)
    assert np.abs(d - ref_d).max() < 8 * np.finfo(dtype).eps / n
    assert gk.gradcheck(gk.nn.CrossEntropyLoss(label_smoothing=smoothing), x, y)


def test_cross_entropy_module():
    m = gk.nn.CrossEntropyLoss(label_smoothing=0.1)
    assert repr(m) == "CrossEntropyLoss(label_smoothing=0.1)"
    x = logits(32, 10, np.float32)
    y = labels_of(32, 10, np.int32)
    m(x, y)
    with pytest.raises(TypeError, match="takes no gradient argument"):
        m.backward(np.ones(1))
    with pytest.raises(ValueError, match="input: expected a 2-D array"):
        m(x[0], y)
    with pytest.raises(TypeError, match="input: expected dtype float32 or float64"):
        m(x.astype(np.int64), y)


def test_loss_modules_validation_and_no_cache():
    assert gk.nn.CrossEntropyLoss().label_smoothing == 0.0 and repr(gk.nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    with pytest.raises(ValueError, match=r"label_smoothing: expected a value in \[0, 1\], got -0.1"):
        gk.nn.CrossEntropyLoss(-0.1)
    with pytest.raises(TypeError, match="CrossEntropyLoss: label_smoothing: expected a real number"):
        gk.nn.CrossEntropyLoss("0.1")
    for m, args in ((gk.nn.CrossEntropyLoss(), (logits(4, 3, np.float32), labels_of(4, 3))),
                    (gk.nn.MSELoss(), (np.ones(3, np.float32), np.zeros(3, np.float32)))):
        with pytest.raises(RuntimeError, match="no cached forward"):
            m.backward()
        with gk.no_grad():
            assert isinstance(m(*args), float)
        with pytest.raises(RuntimeError, match="no cached forward"):
            m.backward()


def test_loss_ends_a_model_and_accumulates():
    model = gk.nn.Sequential(gk.nn.Linear(5, 4), gk.nn.Linear(4, 3))
    ce = gk.nn.CrossEntropyLoss()
    x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    y = np.arange(6) % 3
    ce(model(x), y)
    model.backward(ce.backward())
    g = model[0].weight.grad.copy()
    ce(model(x), y)
    model.backward(ce.backward())
    np.testing.assert_allclose(model[0].weight.grad, 2 * g, rtol=1e-6, atol=1e-7, err_msg="accumulated")


# ---- MSE -----------------------------------------------------------------------------------------

MSE_SIZES = [1, 15, 17, 31, 33, 4095, 4097, 1000003]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", MSE_SIZES)
def test_mse_matches_float64(n, dtype, isa, threads):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(dtype)
    t = rng.standard_normal(n).astype(dtype)
    loss, d = ops.mse_loss(x, t)
    diff = x.astype(np.float64) - t.astype(np.float64)
    ref = np.mean(diff * diff)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert abs(loss - ref) <= rtol * ref, f"mse {loss} vs {ref} ({isa}, n={n})"
    err = np.abs(d - 2 * diff / n)
    tol = 4 * np.finfo(dtype).eps * np.abs(2 * diff / n)
    assert (err <= tol).all(), f"dinput max difference {err.max():.3g} ({isa}, n={n})"


def test_mse_threads_bit_identical_and_shapes(isa):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 1003)).astype(np.float32)
    t = rng.standard_normal((1000, 1003)).astype(np.float32)
    out = []
    for nt in (1, 2):
        gk.set_num_threads(nt)
        out.append(ops.mse_loss(x, t))
    assert out[0][0] == out[1][0] and np.array_equal(out[0][1], out[1][1])
    assert out[0][1].shape == x.shape


@pytest.mark.parametrize("shape", [(1,), (7, 5), (3, 2, 4, 4)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_module_matches_float64_and_gradcheck(shape, dtype):
    rng = np.random.default_rng(len(shape))
    x, t = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    m = gk.nn.MSELoss()
    loss = m(x, t)
    diff = x.astype(np.float64) - t
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert isinstance(loss, float) and abs(loss - np.mean(diff**2)) <= rtol * np.mean(diff**2)
    d = m.backward()
    assert d.dtype == dtype and d.shape == shape
    np.testing.assert_allclose(d, 2 * diff / diff.size, rtol=4 * np.finfo(dtype).eps, atol=0)
    assert gk.gradcheck(gk.nn.MSELoss(), x, t)


def test_mse_module_and_validation():
    m = gk.nn.MSELoss()
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = np.ones((2, 3))
    assert m(x, t) == pytest.approx(np.mean((x - t) ** 2), rel=1e-15)
    np.testing.assert_allclose(m.backward(), 2 * (x - t) / 6, rtol=1e-15)
    with pytest.raises(ValueError, match=r"target: expected shape \(2, 3\) \(the input's\), got \(3, 2\)"):
        m(x, t.reshape(3, 2))
    with pytest.raises(TypeError, match="target: expected dtype float64 \\(the input's\\), got float32"):
        m(x, t.astype(np.float32))
    with pytest.raises(TypeError, match="target: expected a numpy.ndarray"):
        m(x, 1.0)
    with pytest.raises(ValueError, match=r"target: expected shape \(2, 3\)"):
        ops.mse_loss(x, t[0])
    assert np.isnan(ops.mse_loss(np.zeros(0), np.zeros(0))[0])
