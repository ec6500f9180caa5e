"""conv2d and max-pool forward+backward: gradkit vs a NumPy im2col baseline and PyTorch's CPU kernels.

The conv shapes are shared/PERF.md's (3x3, padding 1, float32). The first layer (one input
channel) needs no input gradient, in all three implementations.
"""
import numpy as np
import pytest

import gradkit as gk
from gradkit import ops

CONV_SHAPES = [
    # N, C, H, W, OC, need_dx
    (64, 1, 28, 28, 32, False),
    (64, 32, 28, 28, 64, True),
    (64, 64, 14, 14, 128, True),
]


def _ids(shape):
    n, c, h, w, oc, _ = shape
    return f"N{n} C{c} {h}x{w} K{oc}"


def _conv_data(shape):
    n, c, h, w, oc, _ = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = (rng.standard_normal((oc, c, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    dy = rng.standard_normal((n, oc, h, w)).astype(np.float32)
    return x, wt, b, dy


def numpy_conv_fwd_bwd(x, w, b, dy, need_dx, pad=1):
    """im2col + BLAS baseline: (N*H*W, C*9) columns from a strided view, one sgemm per pass."""
    n, c, h, wd = x.shape
    oc = w.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # n, c, h, w, 3, 3
    cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * wd, c * 9)
    wm = w.reshape(oc, -1)
    y = (cols @ wm.T + b).reshape(n, h, wd, oc).transpose(0, 3, 1, 2)
    dym = dy.transpose(0, 2, 3, 1).reshape(n * h * wd, oc)
    dw = (dym.T @ cols).reshape(w.shape)
    db = dym.sum(axis=0)
    dx = None
    if need_dx:
        dcol = (dym @ wm).reshape(n, h, wd, c, 3, 3)
        dxp = np.zeros_like(xp)
        for kh in range(3):
            for kw in range(3):
                dxp[:, :, kh:kh + h, kw:kw + wd] += dcol[:, :, :, :, kh, kw].transpose(0, 3, 1, 2)
        dx = dxp[:, :, pad:pad + h, pad:pad + wd]
    return y, dx, dw, db


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=_ids)
def test_conv_gradkit(benchmark, shape):
    x, w, b, dy = _conv_data(shape)
    need_dx = shape[-1]
    dw, db = np.zeros_like(w), np.zeros_like(b)

    def step():
        ops.conv2d_forward(x, w, b, 1, 1)
        return ops.conv2d_backward(dy, x, w, 1, 1, dweight=dw, dbias=db, need_dx=need_dx)

    benchmark.group = "conv fwd+bwd " + _ids(shape)
    benchmark.extra_info["impl"] = "gradkit"
    benchmark(step)


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=_ids)
def test_conv_numpy(benchmark, shape):
    x, w, b, dy = _conv_data(shape)
    benchmark.group = "conv fwd+bwd " + _ids(shape)
    benchmark.extra_info["impl"] = "numpy"
    benchmark(numpy_conv_fwd_bwd, x, w, b, dy, shape[-1])


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=_ids)
def test_conv_torch(benchmark, shape, needs_torch):
    torch = needs_torch
    x, w, b, dy = (torch.from_numpy(a) for a in _conv_data(shape))
    x.requires_grad_(shape[-1])
    w.requires_grad_(True)
    b.requires_grad_(True)

    def step():
        y = torch.nn.functional.conv2d(x, w, b, padding=1)
        y.backward(dy)

    benchmark.group = "conv fwd+bwd " + _ids(shape)
    benchmark.extra_info["impl"] = "torch"
    benchmark(step)


POOL_SHAPE = (128, 32, 28, 28)


def _pool_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(POOL_SHAPE).astype(np.float32)
    dy = rng.standard_normal(POOL_SHAPE[:2] + (14, 14)).astype(np.float32)
    return x, dy


def test_maxpool_gradkit(benchmark):
    x, dy = _pool_data()

    def step():
        _, idx = ops.max_pool2d_forward(x, 2)
        return ops.max_pool2d_backward(dy, idx, x.shape, 2)

    benchmark.group = "maxpool2 fwd+bwd N128 C32 28x28"
    benchmark.extra_info["impl"] = "gradkit"
    benchmark(step)


def test_maxpool_numpy(benchmark):
    x, dy = _pool_data()
    n, c, h, w = x.shape

    def step():
        win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
        arg = win.argmax(-1)
        y = np.take_along_axis(win, arg[..., None], -1)[..., 0]
        dwin = np.zeros_like(win)
        np.put_along_axis(dwin, arg[..., None], dy[..., None], -1)
        dx = dwin.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(x.shape)
        return y, dx

    benchmark.group = "maxpool2 fwd+bwd N128 C32 28x28"
    benchmark.extra_info["impl"] = "numpy"
    benchmark(step)


def test_maxpool_torch(benchmark, needs_torch):
    torch = needs_torch
    x, dy = (torch.from_numpy(a) for a in _pool_data())
    x.requires_grad_(True)

    def step():
        torch.nn.functional.max_pool2d(x, 2).backward(dy)

    benchmark.group = "maxpool2 fwd+bwd N128 C32 28x28"
    benchmark.extra_info["impl"] = "torch"
    benchmark(step)
