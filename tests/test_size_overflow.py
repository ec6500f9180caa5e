"""Sizes computed from user arguments never wrap: huge padding, dilation, kernel sizes and
input shapes give ValueError naming the argument (checked before any kernel runs)."""
import numpy as np
import pytest

import gradkit as gk
from gradkit import ops

X = np.ones((1, 1, 4, 4), np.float32)
W = np.ones((1, 1, 3, 3), np.float32)
DY1 = np.ones((1, 1, 1, 1), np.float32)

CASES = [
    ("conv padding 2**62", lambda: ops.conv2d_forward(X, W, padding=2**62), "padding: expected 2\\*padding below 2\\*\\*63"),
    ("conv padding 2**61", lambda: ops.conv2d_forward(X, W, padding=2**61), "padding: expected an array shape"),
    ("conv padding 2**40", lambda: ops.conv2d_forward(X, W, padding=2**40), "padding: expected an array shape of fewer"),
    ("conv padding 2**64", lambda: ops.conv2d_forward(X, W, padding=2**64), "padding: expected a value below 2\\*\\*63"),
    ("conv dilation 2**62", lambda: ops.conv2d_forward(X, W, dilation=2**62), "dilation: expected dilation\\*\\(k-1\\) below"),
    ("conv dilation 2**63-1", lambda: ops.conv2d_forward(X, W, dilation=(1, 2**63 - 1)), "dilation: "),
    ("conv stride 2**64", lambda: ops.conv2d_forward(X, W, stride=2**64), "stride: expected a value below"),
    ("conv groups 2**70", lambda: ops.conv2d_forward(X, W, groups=2**70), "groups: expected a value below"),
    ("conv backward padding", lambda: ops.conv2d_backward(DY1, X, W, padding=2**62), "padding: "),
    ("global pool backward", lambda: ops.global_avg_pool2d_backward(np.ones((1, 1), np.float32), (1, 1, 2**32, 2**32)),
     "input_shape: expected an array shape of fewer than 2\\*\\*63 bytes"),
    ("global pool backward 2**62", lambda: ops.global_avg_pool2d_backward(np.ones((1, 1), np.float32), (1, 1, 2**62, 2)),
     "input_shape: "),
    ("avg pool window", lambda: ops.avg_pool2d_forward(X, 2**32 + 1, padding=2**31), "kernel_size: expected a window size"),
    ("avg pool kernel 2**63-1", lambda: ops.avg_pool2d_forward(X, 2**63 - 1, padding=2**62 - 1), "padding: "),
    ("max pool cost", lambda: ops.max_pool2d_forward(np.ones((1, 1, 64, 64), np.float32), 2**30 + 1,
                                                     stride=1, padding=2**29), "kernel_size: expected a pooling cost"),
    ("max pool backward shape", lambda: ops.max_pool2d_backward(DY1, np.zeros((1, 1, 1, 1), np.int32),
                                                                (2**40, 2**40, 4, 4), 4), "input_shape: "),
    ("avg pool backward shape", lambda: ops.avg_pool2d_backward(DY1, (1, 1, 2**62, 2**62), 2**62), "input_shape: "),
    ("pool padding 2**64", lambda: ops.avg_pool2d_forward(X, 2, padding=2**64), "padding: expected a value below"),
]


@pytest.mark.parametrize("name, call, message", CASES, ids=[c[0] for c in CASES])
def test_huge_sizes_raise_naming_the_argument(name, call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_large_but_valid_sizes_still_work():
    """The checks reject only what overflows: a kernel wider than the input with enough padding is fine."""
    y = ops.avg_pool2d_forward(X, 2**31 + 1, padding=2**30)
    np.testing.assert_allclose(y, np.full((1, 1, 1, 1), 16 / (2**31 + 1) ** 2), rtol=1e-6)
    y = ops.conv2d_forward(X, W, padding=2)
    assert y.shape == (1, 1, 6, 6)


def test_layers_check_huge_sizes_too():
    with pytest.raises(ValueError, match="padding"):
        gk.nn.Conv2d(1, 1, 3, padding=2**62)(X)
    with pytest.raises(ValueError, match="dilation"):
        gk.nn.Conv2d(1, 1, 3, dilation=2**62)(X)
