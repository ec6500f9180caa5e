"""Pure-NumPy baselines for bench_train_step.py: the same MLP and CNN, trained with Adam.

Written the way a careful NumPy user would: BLAS GEMMs, im2col convolution through
``sliding_window_view``, vectorised batch norm and pooling, in-place Adam. float32 throughout.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _uniform(rng, shape, fan_in):
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape).astype(np.float32)


class Adam:
    """PyTorch's Adam (no weight decay), updating the arrays in place."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads):
        self.t += 1
        b1, b2 = self.betas
        step = self.lr / (1 - b1**self.t)
        denom_scale = 1.0 / np.sqrt(1 - b2**self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= step * m / (np.sqrt(v) * denom_scale + self.eps)


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(p[np.arange(n), labels]).mean()
    p[np.arange(n), labels] -= 1
    return float(loss), p / n


class MLP:
    """784-256-128-10 with ReLU."""

    def __init__(self, sizes=(784, 256, 128, 10), seed=0):
        rng = np.random.default_rng(seed)
        self.params = []
        for fin, fout in zip(sizes[:-1], sizes[1:]):
            self.params += [_uniform(rng, (fout, fin), fin), _uniform(rng, (fout,), fin)]
        self.opt = Adam(self.params)

    def step(self, x, labels):
        hs, h = [x], x
        nlayers = len(self.params) // 2
        for i in range(nlayers):
            w, b = self.params[2 * i], self.params[2 * i + 1]
            h = h @ w.T + b
            if i < nlayers - 1:
                np.maximum(h, 0, out=h)
            hs.append(h)
        loss, dh = cross_entropy(h, labels)
        grads = [None] * len(self.params)
        for i in reversed(range(nlayers)):
            w = self.params[2 * i]
            grads[2 * i] = dh.T @ hs[i]
            grads[2 * i + 1] = dh.sum(axis=0)
            if i > 0:
                dh = dh @ w
                dh *= hs[i] > 0
        self.opt.step(grads)
        return loss


def conv3x3_forward(x, w, b):
    """3x3 convolution, stride 1, padding 1, by im2col: x (N,C,H,W), w (K,C,3,3) -> (N,K,H,W)."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = sliding_window_view(xp, (3, 3), axis=(2, 3)).transpose(0, 2, 3, 1, 4, 5).reshape(n * h * wd, c * 9)
    out = cols @ w.reshape(w.shape[0], -1).T + b
    return out.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), cols


def conv3x3_backward(dout, cols, w, x_shape, need_dx=True):
    n, c, h, wd = x_shape
    d2 = dout.transpose(0, 2, 3, 1).reshape(n * h * wd, -1)
    dw = (d2.T @ cols).reshape(w.shape)
    db = d2.sum(axis=0)
    if not need_dx:  # the first layer: nothing needs the gradient of the data
        return None, dw, db
    dcols = (d2 @ w.reshape(w.shape[0], -1)).reshape(n, h, wd, c, 3, 3)
    dxp = np.zeros((n, c, h + 2, wd + 2), dtype=dout.dtype)
    for i in range(3):
        for j in range(3):
            dxp[:, :, i:i + h, j:j + wd] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, 1:-1, 1:-1], dw, db


def batchnorm_forward(x, gamma, beta, running, momentum=0.1, eps=1e-5):
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    m = x.size // x.shape[1]
    running[0] *= 1 - momentum
    running[0] += momentum * mean
    running[1] *= 1 - momentum
    running[1] += momentum * var * m / (m - 1)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean[:, None, None]) * inv[:, None, None]
    return xhat * gamma[:, None, None] + beta[:, None, None], (xhat, inv)


def batchnorm_backward(dy, cache, gamma):
    xhat, inv = cache
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))
    dbeta = dy.sum(axis=(0, 2, 3))
    m = dy.size // dy.shape[1]
    dx = (gamma * inv)[:, None, None] / m * (m * dy - dbeta[:, None, None] - xhat * dgamma[:, None, None])
    return dx, dgamma, dbeta


def maxpool2_forward(x):
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    idx = win.argmax(axis=-1)
    return np.take_along_axis(win, idx[..., None], axis=-1)[..., 0], idx


def maxpool2_backward(dout, idx):
    n, c, h2, w2 = dout.shape
    dwin = np.zeros((n, c, h2, w2, 4), dtype=dout.dtype)
    np.put_along_axis(dwin, idx[..., None], dout[..., None], axis=-1)
    return dwin.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * h2, 2 * w2)


class CNN:
    """Conv(1,32,3,p1)-BN-ReLU-MaxPool2-Conv(32,64,3,p1)-BN-ReLU-MaxPool2-Flatten-
    Linear(3136,128)-ReLU-Dropout(0.3)-Linear(128,10) (shared/PERF.md)."""

    def __init__(self, seed=0, p=0.3):
        rng = np.random.default_rng(seed)
        self.rng, self.p = rng, p
        self.params = [
            _uniform(rng, (32, 1, 3, 3), 9), _uniform(rng, (32,), 9),
            np.ones(32, np.float32), np.zeros(32, np.float32),
            _uniform(rng, (64, 32, 3, 3), 288), _uniform(rng, (64,), 288),
            np.ones(64, np.float32), np.zeros(64, np.float32),
            _uniform(rng, (128, 3136), 3136), _uniform(rng, (128,), 3136),
            _uniform(rng, (10, 128), 128), _uniform(rng, (10,), 128),
        ]
        self.running = [[np.zeros(32, np.float32), np.ones(32, np.float32)],
                        [np.zeros(64, np.float32), np.ones(64, np.float32)]]
        self.opt = Adam(self.params)

    def step(self, x, labels):
        w1, b1, g1, be1, w2, b2, g2, be2, w3, b3, w4, b4 = self.params
        c1, cols1 = conv3x3_forward(x, w1, b1)
        n1, bn1 = batchnorm_forward(c1, g1, be1, self.running[0])
        r1 = np.maximum(n1, 0)
        p1, idx1 = maxpool2_forward(r1)
        c2, cols2 = conv3x3_forward(p1, w2, b2)
        n2, bn2 = batchnorm_forward(c2, g2, be2, self.running[1])
        r2 = np.maximum(n2, 0)
        p2, idx2 = maxpool2_forward(r2)
        f = p2.reshape(len(x), -1)
        h = f @ w3.T + b3
        np.maximum(h, 0, out=h)
        keep = (self.rng.random(h.shape, dtype=np.float32) >= self.p) * np.float32(1 / (1 - self.p))
        hd = h * keep
        logits = hd @ w4.T + b4
        loss, dlogits = cross_entropy(logits, labels)
        dw4, db4 = dlogits.T @ hd, dlogits.sum(0)
        dh = (dlogits @ w4) * keep
        dh *= h > 0
        dw3, db3 = dh.T @ f, dh.sum(0)
        dp2 = (dh @ w3).reshape(p2.shape)
        dr2 = maxpool2_backward(dp2, idx2)
        dr2 *= r2 > 0
        dc2, dg2, dbe2 = batchnorm_backward(dr2, bn2, g2)
        dp1, dw2, db2 = conv3x3_backward(dc2, cols2, w2, p1.shape)
        dr1 = maxpool2_backward(dp1, idx1)
        dr1 *= r1 > 0
        dc1, dg1, dbe1 = batchnorm_backward(dr1, bn1, g1)
        _, dw1, db1 = conv3x3_backward(dc1, cols1, w1, x.shape, need_dx=False)
        self.opt.step([dw1, db1, dg1, dbe1, dw2, db2, dg2, dbe2, dw3, db3, dw4, db4])
        return loss
