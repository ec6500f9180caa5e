"""Dropout: the Philox mask (seeded, thread-count independent), inverted scaling, backward, validation."""
import numpy as np
import pytest

import gradkit as gk
from gradkit import ops
from nn_helpers import check_backward_contract

SIZES = [0, 1, 15, 17, 31, 33, 1000, 1000003]


def unpack(mask, n):
    return np.unpackbits(mask, count=n, bitorder="little").astype(bool)


def x_of(n, dtype, seed=0):
    return (np.random.default_rng(seed + n).standard_normal(n) + 0.5).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_forward_backward(n, dtype, isa, threads):
    p = 0.3
    x = x_of(n, dtype)
    gk.manual_seed(7)
    y, mask = ops.dropout(x, p)
    assert y.dtype == dtype and y.shape == x.shape
    assert mask.dtype == np.uint8 and mask.shape == ((n + 7) // 8,)
    keep = unpack(mask, n)
    scale = dtype(1 / (1 - p))
    np.testing.assert_array_equal(y, np.where(keep, x * scale, 0), err_msg="y != x * mask / (1 - p)")
    if n % 8:
        assert mask[-1] >> (n % 8) == 0, "mask bits beyond n must be 0"
    dy = x_of(n, dtype, seed=1)
    dx = ops.dropout_backward(dy, mask, p)
    np.testing.assert_array_equal(dx, np.where(keep, dy * scale, 0), err_msg="dx != dy * mask / (1 - p)")


def test_keep_rate_and_independence():
    gk.manual_seed(0)
    n = 1 << 20
    for p in (0.1, 0.5, 0.9):
        _, mask = ops.dropout(np.ones(n, np.float32), p)
        keep = unpack(mask, n)
        rate = keep.mean()
        sigma = np.sqrt(p * (1 - p) / n)
        assert abs(rate - (1 - p)) < 6 * sigma, f"p={p}: kept {rate:.5f}, expected {1 - p} +- {6 * sigma:.5f}"
        # neighbours are independent: P(keep_i and keep_i+1) ~ (1 - p)^2
        both = (keep[:-1] & keep[1:]).mean()
        assert abs(both - (1 - p) ** 2) < 6 * np.sqrt((1 - p) ** 2 / n), f"p={p}: adjacent keeps correlated"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_seed_same_mask_any_threads_and_isa(dtype, isa):
    x = x_of(1000003, dtype)
    results = []
    for nt in (1, 2):
        gk.set_num_threads(nt)
        gk.manual_seed(1234)
        results.append(ops.dropout(x, 0.5))
    assert np.array_equal(results[0][1], results[1][1]), "mask differs between 1 and 2 threads"
    assert np.array_equal(results[0][0], results[1][0]), "y differs between 1 and 2 threads"
    gk.manual_seed(1234)
    ref_mask = ops.dropout(x[:1000], 0.5)[1]
    assert np.array_equal(ref_mask, results[0][1][:125]), "the mask of a prefix must not depend on n"
    # a new call draws new numbers
    y2, m2 = ops.dropout(x, 0.5)
    assert not np.array_equal(m2, results[0][1])


@pytest.mark.parametrize("n", [1, 17, 33, 4099, 100003])
def test_mask_is_the_philox_stream(n, isa, threads):
    """Element i is kept iff word i of the library's generator stream (the same
    words rng_bits draws after the same seed) is >= p * 2^32."""
    from gradkit import _core
    p = 0.3
    gk.manual_seed(2024)
    _, mask = ops.dropout(np.ones(n, np.float32), p)
    gk.manual_seed(2024)
    words = _core.rng_bits(4 * ((n + 3) // 4))[:n]
    expected = words >= np.uint32(round(p * 2**32))
    np.testing.assert_array_equal(unpack(mask, n), expected)


def test_mask_same_for_float32_float64_and_every_isa():
    from gradkit import _core
    masks = []
    for isa in _core.supported_isas():
        _core.set_isa(isa)
        for dtype in (np.float32, np.float64):
            gk.manual_seed(99)
            masks.append(ops.dropout(np.ones(4099, dtype), 0.25)[1])
    assert all(np.array_equal(masks[0], m) for m in masks[1:])


def test_nan_propagates_like_multiplication():
    x = np.full(64, np.nan, np.float32)
    y, _ = ops.dropout(x, 0.5)
    assert np.isnan(y).all(), "x * mask / (1 - p): NaN times 0 stays NaN, as in PyTorch"


def test_p_zero_and_validation():
    x = x_of(100, np.float32)
    y, mask = ops.dropout(x, 0.0)
    np.testing.assert_array_equal(y, x)
    assert unpack(mask, 100).all()
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"^dropout: p: expected a value in \[0, 1\), got"):
            ops.dropout(x, bad)
    with pytest.raises(ValueError, match=r"^dropout: p: expected a finite number, got nan"):
        ops.dropout(x, float("nan"))
    with pytest.raises(TypeError, match="p: expected a real number"):
        ops.dropout(x, "0.5")
    with pytest.raises(TypeError, match="x: expected .*float32 or float64"):
        ops.dropout(np.ones(4, np.int32), 0.5)
    y, mask = ops.dropout(x, 0.5)
    with pytest.raises(ValueError, match=r"mask: expected shape \(13,\)"):
        ops.dropout_backward(x, mask[:12], 0.5)
    with pytest.raises(TypeError, match="mask: expected a numpy.ndarray of uint8"):
        ops.dropout_backward(x, mask.astype(np.int64), 0.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_module(dtype):
    m = gk.nn.Dropout(0.4)
    assert repr(m) == "Dropout(p=0.4)" and m.training
    x = x_of(2 * 3 * 50, dtype).reshape(2, 3, 50)
    gk.manual_seed(3)
    y = m(x)
    gk.manual_seed(3)
    y_ops, mask = ops.dropout(x, 0.4)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, y_ops)
    assert m._saved()["mask"].dtype == np.uint8  # only the packed mask is kept
    dy = x_of(300, dtype, seed=5).reshape(2, 3, 50)
    np.testing.assert_array_equal(m.backward(dy), ops.dropout_backward(dy, mask, 0.4))
    assert not np.array_equal(m(x), y), "the next call draws a new mask"
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3, 50\)"):
        m.backward(dy[0])
    m.eval()
    assert m(x) is x and m.backward(dy) is dy, "eval mode is the identity"
    m.train()
    m0 = gk.nn.Dropout(0.0)
    np.testing.assert_array_equal(m0(x), x)
    np.testing.assert_array_equal(m0.backward(dy), dy)


def test_module_validation_and_no_cache():
    assert gk.nn.Dropout().p == 0.5
    for bad in (1.0, -0.5, 2):
        with pytest.raises(ValueError, match=r"Dropout: p: expected a value in \[0, 1\)"):
            gk.nn.Dropout(bad)
    with pytest.raises(TypeError, match="Dropout: p: expected a real number"):
        gk.nn.Dropout(None)
    check_backward_contract(gk.nn.Dropout(0.5), np.ones(3, np.float32))
