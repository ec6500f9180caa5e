"""Augmentation of NCHW float32 batches: ``RandomCrop``, ``RandomHorizontalFlip``, ``Normalize``, ``Compose``.

Each transform is a callable on a batch (N, C, H, W) returning a new batch; the
work runs in C++ kernels over images (GIL released). Random draws come from the
library's Philox generator: image i of a batch draws block
``(key, (slot << 32) | i, stream)``, where a direct call takes a fresh ``key`` from
``gk.manual_seed``'s generator and stream 0, and a ``DataLoader`` passes its epoch
key and the batch number. Results therefore never depend on the thread count or on
which worker prepared the batch.
"""
from __future__ import annotations

import numpy as np

from .. import _core
from .._checks import integer, pair, real

__all__ = ["RandomCrop", "RandomHorizontalFlip", "Normalize", "Compose"]


def draw_key() -> int:
    """A 64-bit key from the library's global generator (main thread only)."""
    return int(_core.rng_bits(2).view(np.uint64)[0])


# Sizes and padding beyond 2**30 pixels (no image has them) would overflow the int32 crop offsets.
_MAX_EXTENT = 2**30


def _check_batch(x, who: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{who}: x: expected a numpy.ndarray (N, C, H, W) of float32, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{who}: x: expected an NCHW batch (4-D, N, C, H, W), got shape {x.shape}")
    if x.dtype != np.float32:
        raise ValueError(f"{who}: x: expected dtype float32, got {x.dtype} (convert with x.astype(np.float32))")
    return x


class Transform:
    """Base class: ``t(x)`` applies the transform with a fresh key from the global generator."""

    def __call__(self, x):
        return self.apply_keyed(x, draw_key(), 0, 0, 0)

    def apply_keyed(self, x, key: int, stream: int, slot: int, nthreads: int):
        """The transform of batch x with draws from (key, stream, slot), on nthreads (0: global) threads."""
        raise NotImplementedError


class RandomCrop(Transform):
    """Crop each image at a random place after zero padding (``torchvision.transforms.RandomCrop``).

    Args:
        size: output (height, width), or an int for a square.
        padding (0): zeros added on every side before cropping.

    Shape: (N, C, H, W) -> (N, C, size_h, size_w), needs H + 2 padding >= size_h (same for W).
    """

    def __init__(self, size, padding=0):
        self.size = pair("RandomCrop", "size", size, 1, _MAX_EXTENT)
        self.padding = integer("RandomCrop", "padding", padding, 0, _MAX_EXTENT)

    def draws(self, n: int, h: int, w: int, key: int, stream: int = 0, slot: int = 0) -> np.ndarray:
        """The (n, 2) int32 offsets [oy, ox] into the padded images that these draws give."""
        (oh, ow), p = self.size, self.padding
        if h + 2 * p < oh or w + 2 * p < ow:
            raise ValueError(f"RandomCrop: x: images of {h}x{w} padded by {p} are smaller than the crop size "
                             f"{oh}x{ow}")
        if max(h + 2 * p - oh, w + 2 * p - ow) >= 2**31:
            raise ValueError(f"RandomCrop: x: images of {h}x{w} padded by {p} give more than 2**31 crop positions "
                             f"per axis for the crop size {oh}x{ow}")
        return _core.random_crop_draws(n, key, stream, slot, h + 2 * p - oh, w + 2 * p - ow)

    def apply_keyed(self, x, key, stream, slot, nthreads):
        x = _check_batch(x, "RandomCrop")
        n, c, h, w = x.shape
        offsets = self.draws(n, h, w, key, stream, slot)
        out = np.empty((n, c) + self.size, np.float32)
        _core.crop_forward(out, x, offsets, self.padding, nthreads)
        return out

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip(Transform):
    """Reverse the width axis of each image with probability p.

    Args:
        p (0.5): probability that an image is flipped.

    Shape: (N, C, H, W) -> same.
    """

    def __init__(self, p=0.5):
        self.p = real("RandomHorizontalFlip", "p", p, 0, 1)

    def draws(self, n: int, key: int, stream: int = 0, slot: int = 0) -> np.ndarray:
        """The (n,) uint8 flip flags that these draws give."""
        return _core.random_flip_draws(n, key, stream, slot, self.p)

    def apply_keyed(self, x, key, stream, slot, nthreads):
        x = _check_batch(x, "RandomHorizontalFlip")
        out = np.empty_like(x)
        _core.hflip_forward(out, x, self.draws(len(x), key, stream, slot), nthreads)
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def _numbers(value, name: str) -> np.ndarray:
    """value (a number or a sequence of numbers, bool excluded) as a float64 array of at least 1-D."""
    try:
        a = np.asarray(value)
    except ValueError:  # ragged sequences
        a = np.asarray(value, dtype=object)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"Normalize: {name}: expected a number or a sequence of numbers, got {value!r}")
    return np.atleast_1d(a.astype(np.float64))


class Normalize(Transform):
    """Per-channel standardisation: ``y[:, c] = (x[:, c] - mean[c]) / std[c]``.

    Args:
        mean, std: one value per channel (or one value for all channels); std > 0.

    Shape: (N, C, H, W) -> same.
    """

    def __init__(self, mean, std):
        mean, std = _numbers(mean, "mean"), _numbers(std, "std")
        if mean.ndim != 1 or std.ndim != 1:
            raise ValueError(f"Normalize: mean, std: expected scalars or 1-D sequences, got shapes "
                             f"{mean.shape} and {std.shape}")
        if len(mean) != len(std) and 1 not in (len(mean), len(std)):
            raise ValueError(f"Normalize: mean and std disagree in length: {len(mean)} and {len(std)}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError(f"Normalize: expected finite mean and std > 0, got mean={mean.tolist()}, "
                             f"std={std.tolist()}")
        self.mean, self.std = mean, std
        self._scale = (1.0 / std).astype(np.float32)
        self._shift = (-mean / std).astype(np.float32)

    def apply_keyed(self, x, key, stream, slot, nthreads):
        x = _check_batch(x, "Normalize")
        c = x.shape[1]
        size = max(len(self.mean), len(self.std))
        if size not in (1, c):
            raise ValueError(f"Normalize: x: expected {size} channels (the length of mean and std), got shape "
                             f"{x.shape}")
        scale = np.broadcast_to(self._scale, (c,)).copy() if len(self._scale) != c else self._scale
        shift = np.broadcast_to(self._shift, (c,)).copy() if len(self._shift) != c else self._shift
        out = np.empty_like(x)
        _core.normalize_forward(out, x, scale, shift, nthreads)
        return out

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _slots(t) -> int:
    """Draw slots that transform t takes: one, or a Compose's total over its transforms."""
    return t._slots() if isinstance(t, Compose) else 1


class Compose(Transform):
    """Apply transforms in order, each gk transform with its own draws, nested Composes included.

    The transforms take consecutive slots in depth-first order, from the Compose's own slot:
    ``Compose([a, Compose([b, c]), d])`` gives a, b, c, d the slots 0, 1, 2, 3 (any other
    callable takes a slot too and ignores it).

    Args:
        transforms: a list of transforms (gk transforms or any callables batch -> batch).
    """

    def __init__(self, transforms):
        if isinstance(transforms, Transform) or callable(transforms) or isinstance(transforms, (str, bytes)):
            raise TypeError(f"Compose: transforms: expected a list of transforms, got {type(transforms).__name__}")
        try:
            self.transforms = list(transforms)
        except TypeError:
            raise TypeError(f"Compose: transforms: expected a list of transforms, got {type(transforms).__name__}") \
                from None
        for k, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"Compose: transforms[{k}]: expected a callable, got {type(t).__name__}")
        if self._slots() > 2**32:  # the slot is 32 bits of the Philox counter
            raise ValueError(f"Compose: transforms: expected at most 2**32 transforms in all (nested Composes "
                             f"counted whole), got {self._slots()}")

    def _slots(self) -> int:
        return sum(_slots(t) for t in self.transforms)

    def apply_keyed(self, x, key, stream, slot, nthreads):
        for t in self.transforms:
            x = t.apply_keyed(x, key, stream, slot, nthreads) if isinstance(t, Transform) else t(x)
            slot += _slots(t)
        return x

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"
