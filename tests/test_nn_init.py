"""gk.nn.init: gains, fans, distributions (bounds and moments), seeding, in-place semantics, errors."""
import math

import numpy as np
import pytest

import gradkit as gk
from gradkit.nn import Parameter, init


def test_calculate_gain_table():
    for name in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose2d", "sigmoid"):
        assert init.calculate_gain(name) == 1.0
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="nonlinearity: expected one of .*got 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(TypeError, match="param: expected a real number, got str"):
        init.calculate_gain("leaky_relu", "0.1")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_and_normal_moments(dtype):
    gk.manual_seed(3)
    a = np.empty((400, 500), dtype=dtype)
    assert init.uniform_(a, -2.0, 4.0) is a
    assert a.dtype == dtype and a.min() >= -2.0 and a.max() <= 4.0
    assert abs(a.mean() - 1.0) < 0.02 and abs(a.std() - 6 / math.sqrt(12)) < 0.02
    init.normal_(a)  # the small Gaussian: N(0, 0.01^2)
    assert abs(a.mean()) < 1e-4 and abs(a.std() - 0.01) < 1e-4
    init.normal_(a, 3.0, 2.0)
    assert abs(a.mean() - 3.0) < 0.02 and abs(a.std() - 2.0) < 0.02


def test_constant_zeros_ones():
    p = Parameter(np.empty((3, 2)))
    assert init.zeros_(p) is p and not p.data.any()
    init.ones_(p)
    np.testing.assert_array_equal(p.data, np.ones((3, 2)))
    init.constant_(p, 2.5)
    np.testing.assert_array_equal(p.data, np.full((3, 2), 2.5))
    assert not p.grad.any()


@pytest.mark.parametrize("fn,bound_or_std,uniform", [
    (lambda t: init.xavier_uniform_(t), lambda fi, fo: math.sqrt(6 / (fi + fo)), True),
    (lambda t: init.xavier_uniform_(t, gain=2.0), lambda fi, fo: 2 * math.sqrt(6 / (fi + fo)), True),
    (lambda t: init.xavier_normal_(t), lambda fi, fo: math.sqrt(2 / (fi + fo)), False),
    (lambda t: init.kaiming_uniform_(t), lambda fi, fo: math.sqrt(2) * math.sqrt(3 / fi), True),
    (lambda t: init.kaiming_uniform_(t, a=math.sqrt(5)), lambda fi, fo: 1 / math.sqrt(fi), True),
    (lambda t: init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"),
     lambda fi, fo: math.sqrt(2) * math.sqrt(3 / fo), True),
    (lambda t: init.kaiming_normal_(t), lambda fi, fo: math.sqrt(2 / fi), False),
    (lambda t: init.kaiming_normal_(t, nonlinearity="tanh", mode="fan_out"), lambda fi, fo: 5 / 3 / math.sqrt(fo), False),
])
def test_scaled_initializers_on_conv_weights(fn, bound_or_std, uniform):
    # conv weight (out=64, in/groups=8, 3, 5): fan_in = 8*15 = 120, fan_out = 64*15 = 960
    gk.manual_seed(11)
    p = Parameter(np.zeros((64, 8, 3, 5), dtype=np.float32))
    out = fn(p)
    assert out is p and p.dtype == np.float32
    v = bound_or_std(120, 960)
    d = p.data.astype(np.float64)
    if uniform:
        assert d.min() >= -v and d.max() <= v
        assert d.max() > 0.98 * v and d.min() < -0.98 * v
        std = v / math.sqrt(3)
    else:
        std = v
    # 7680 draws: the sample std is within ~3% of the true one (about 4 standard errors)
    assert abs(d.std() - std) < 0.03 * std, f"std {d.std()} vs {std}"
    assert abs(d.mean()) < 0.05 * std


def test_fan_in_counts_groups_through_the_weight_shape():
    # Conv2d(16, 32, 3, groups=4) has weight (32, 4, 3, 3): fan_in = 16/4 * 9 = 36
    gk.manual_seed(0)
    w = np.empty((32, 4, 3, 3), dtype=np.float64)
    init.kaiming_uniform_(w, a=math.sqrt(5))
    assert np.abs(w).max() <= 1 / 6 and np.abs(w).max() > 0.95 / 6


def test_seeded_reproducible_and_thread_independent():
    draws = []
    for n in (1, 2):
        gk.set_num_threads(n)
        gk.manual_seed(5)
        a = np.empty((300, 301), dtype=np.float32)
        init.kaiming_normal_(a)
        b = np.empty((7, 3))
        init.xavier_uniform_(b)
        draws.append((a, b))
    np.testing.assert_array_equal(draws[0][0], draws[1][0])
    np.testing.assert_array_equal(draws[0][1], draws[1][1])
    gk.manual_seed(6)
    c = np.empty((300, 301), dtype=np.float32)
    init.kaiming_normal_(c)
    assert not np.array_equal(c, draws[0][0])


def test_strided_views_are_filled_in_place():
    gk.manual_seed(1)
    base = np.zeros((6, 8))
    view = base[:, ::2]
    assert init.uniform_(view, 1.0, 2.0) is view
    assert (base[:, ::2] >= 1).all() and not base[:, 1::2].any()


def test_empty_tensors_are_left_alone():
    a = np.empty((0, 5), dtype=np.float32)
    assert init.kaiming_uniform_(a) is a
    assert init.xavier_normal_(np.empty((3, 0))).shape == (3, 0)
    assert init.normal_(np.empty(0)).shape == (0,)


def test_errors():
    with pytest.raises(TypeError, match="uniform_: tensor: expected dtype float32 or float64, got int64"):
        init.uniform_(np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match="normal_: tensor: expected a gk.nn.Parameter or numpy.ndarray, got list"):
        init.normal_([1.0, 2.0])
    with pytest.raises(ValueError, match=r"kaiming_uniform_: tensor: expected at least 2 dimensions .*got shape \(5,\)"):
        init.kaiming_uniform_(np.zeros(5))
    with pytest.raises(ValueError, match=r"xavier_normal_: tensor: expected at least 2 dimensions"):
        init.xavier_normal_(np.zeros(5))
    with pytest.raises(ValueError, match="mode: expected 'fan_in' or 'fan_out', got 'fan_avg'"):
        init.kaiming_normal_(np.zeros((2, 2)), mode="fan_avg")
    with pytest.raises(ValueError, match="std: expected a value >= 0, got -1.0"):
        init.normal_(np.zeros(2), std=-1)
    with pytest.raises(ValueError, match="b: expected b >= a = 1.0, got 0.0"):
        init.uniform_(np.zeros(2), 1.0, 0.0)
    with pytest.raises(ValueError, match="mean: expected a finite number, got nan"):
        init.normal_(np.zeros(2), mean=float("nan"))
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="expected a writeable array"):
        init.ones_(ro)
