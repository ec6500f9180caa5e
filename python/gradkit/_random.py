"""Draws from the library's seeded, counter-based generator (see ``gk.manual_seed``)."""
from __future__ import annotations

import numpy as np

from . import _core


def uniform(shape, low=0.0, high=1.0, dtype=np.float32) -> np.ndarray:
    out = np.empty(shape, dtype=dtype)
    _core.rng_uniform(out, low, high)
    return out


def normal(shape, mean=0.0, std=1.0, dtype=np.float32) -> np.ndarray:
    out = np.empty(shape, dtype=dtype)
    _core.rng_normal(out, mean, std)
    return out


def permutation(n: int) -> np.ndarray:
    """A random permutation of range(n) (int64), from 64-bit random keys."""
    keys = _core.rng_bits(2 * n).view(np.uint64)
    return np.argsort(keys, kind="stable").astype(np.int64, copy=False)
