"""Preprocessing fitted on training data: ``ZeroCenter``, ``Standardize``, ``PCAWhiten``.

Each transform learns its statistics in ``fit(x_train)`` and applies exactly
those statistics to any later data (validation, test): fitting on test data
would leak it into training. Statistics are computed in float64 (in chunks, so
a 60000-image training set needs no float64 copy); the transformed output keeps
the input's float dtype, and integer input (e.g. uint8 images) becomes float32.

Layouts: the first axis is the sample axis. ``per_channel=False`` learns one
statistic per feature (for images, a "mean image"); ``per_channel=True`` learns
one per channel, axis 1 of an (N, C, ...) array, pooled over samples and every
axis after the channel (as ``torchvision.transforms.Normalize`` would use).
"""
from __future__ import annotations

import numpy as np

from .._checks import integer, real

__all__ = ["ZeroCenter", "Standardize", "PCAWhiten"]

_CHUNK_ROWS = 4096


def _as_float(x, name: str, who: str) -> np.ndarray:
    """x as a float array: float32/float64 kept, integers and bools to float32; others TypeError."""
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception:  # noqa: BLE001 - any failure means "not array-like"
            raise TypeError(f"{who}: {name}: expected an array, got {type(x).__name__}") from None
    if x.dtype in (np.float32, np.float64):
        return x
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        return x.astype(np.float32)
    raise TypeError(f"{who}: {name}: expected a float32, float64 or integer array, got dtype {x.dtype}")


def _reduce_axes(x: np.ndarray, per_channel: bool):
    """Axes reduced by the statistics (the sample axis, plus the spatial axes when per channel)."""
    if per_channel:
        return (0,) + tuple(range(2, x.ndim))
    return (0,)


def _chunked_moments(x: np.ndarray, per_channel: bool, need_var: bool):
    """float64 mean (and biased variance) over the reduced axes, two passes in row chunks."""
    axes = _reduce_axes(x, per_channel)
    n = x.shape[0]
    count = n * int(np.prod([x.shape[a] for a in axes[1:]], dtype=np.int64))
    stat_shape = tuple(1 if a in axes else s for a, s in enumerate(x.shape))
    total = np.zeros(stat_shape, dtype=np.float64)
    for i in range(0, n, _CHUNK_ROWS):
        total += np.sum(x[i:i + _CHUNK_ROWS], axis=axes, dtype=np.float64, keepdims=True)
    mean = total / count
    if not need_var:
        return mean, None
    sq = np.zeros(stat_shape, dtype=np.float64)
    for i in range(0, n, _CHUNK_ROWS):
        d = x[i:i + _CHUNK_ROWS].astype(np.float64) - mean
        sq += np.sum(d * d, axis=axes, keepdims=True)
    return mean, sq / count


class _Fitted:
    """Shared checks: fitted before use, and later data laid out like the training data."""

    _who = "transform"

    def _require_fit(self, method: str) -> None:
        if getattr(self, "_feature_shape", None) is None:
            raise RuntimeError(f"{type(self).__name__}.{method}: not fitted; call fit(x_train) first")

    def _check_fit_input(self, x) -> np.ndarray:
        x = _as_float(x, "x", f"{type(self).__name__}.fit")
        if x.ndim < 2:
            raise ValueError(f"{type(self).__name__}.fit: x: expected an array of shape (N, ...) with at least "
                             f"2 dimensions, got shape {x.shape}")
        if x.shape[0] < 1:
            raise ValueError(f"{type(self).__name__}.fit: x: expected at least one sample, got shape {x.shape}")
        return x

    def _check_finite(self, *stats) -> None:
        """NaN or Inf anywhere in the data propagates into the sums: refuse such statistics."""
        if not all(np.all(np.isfinite(s)) for s in stats):
            raise ValueError(f"{type(self).__name__}.fit: x: contains NaN or Inf (or overflows float64)")

    def _check_input(self, x, method: str) -> np.ndarray:
        self._require_fit(method)
        x = _as_float(x, "x", f"{type(self).__name__}.{method}")
        if x.ndim < 1 or x.shape[1:] != self._feature_shape:
            raise ValueError(f"{type(self).__name__}.{method}: x: expected shape (N, "
                             f"{', '.join(map(str, self._feature_shape))}) as in fit, got {x.shape}")
        return x

    def fit_transform(self, x) -> np.ndarray:
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)


class ZeroCenter(_Fitted):
    """Subtract the training mean: ``y = x - mean``.

    Args:
        per_channel (False): one mean per channel (axis 1, pooled over samples and
            spatial axes) instead of one per feature.

    Attributes (after fit): ``mean_`` (float64, broadcastable against x).
    Shape: x (N, ...) -> same shape.
    """

    def __init__(self, per_channel: bool = False):
        self.per_channel = bool(per_channel)
        self.mean_ = None
        self._feature_shape = None

    def fit(self, x) -> "ZeroCenter":
        """Learn the mean from training data; returns self."""
        x = self._check_fit_input(x)
        mean, _ = _chunked_moments(x, self.per_channel, need_var=False)
        self._check_finite(mean)
        self.mean_ = mean
        self._feature_shape = x.shape[1:]
        return self

    def transform(self, x) -> np.ndarray:
        x = self._check_input(x, "transform")
        return x - self.mean_.astype(x.dtype)

    def inverse_transform(self, x) -> np.ndarray:
        x = self._check_input(x, "inverse_transform")
        return x + self.mean_.astype(x.dtype)

    def __repr__(self) -> str:
        return f"ZeroCenter(per_channel={self.per_channel})"


class Standardize(_Fitted):
    """Zero mean, unit variance with training statistics: ``y = (x - mean) / std``.

    ``std`` is the population (biased) standard deviation. A constant feature
    (std <= eps, e.g. an always-black border pixel) is only centred (scale 1),
    as scikit-learn's StandardScaler does, instead of being blown up.

    Args:
        per_channel (False): one mean/std per channel (axis 1) instead of per feature.
        eps (1e-8): standard deviations at or below this count as zero.

    Attributes (after fit): ``mean_``, ``std_`` (float64, broadcastable against x;
    ``std_`` is the scale actually used).
    Shape: x (N, ...) -> same shape.
    """

    def __init__(self, per_channel: bool = False, eps: float = 1e-8):
        if not eps >= 0:
            raise ValueError(f"Standardize: eps: expected a value >= 0, got {eps}")
        self.per_channel = bool(per_channel)
        self.eps = float(eps)
        self.mean_ = self.std_ = None
        self._feature_shape = None

    def fit(self, x) -> "Standardize":
        """Learn mean and standard deviation from training data; returns self."""
        x = self._check_fit_input(x)
        mean, var = _chunked_moments(x, self.per_channel, need_var=True)
        self._check_finite(mean, var)
        std = np.sqrt(var)
        std[std <= self.eps] = 1.0
        self.mean_, self.std_ = mean, std
        self._feature_shape = x.shape[1:]
        return self

    def transform(self, x) -> np.ndarray:
        x = self._check_input(x, "transform")
        # One fused pass: x * (1/std) + (-mean/std), in the input's dtype.
        scale = (1.0 / self.std_).astype(x.dtype)
        shift = (-self.mean_ / self.std_).astype(x.dtype)
        out = np.multiply(x, scale)
        out += shift
        return out

    def inverse_transform(self, x) -> np.ndarray:
        x = self._check_input(x, "inverse_transform")
        out = np.multiply(x, self.std_.astype(x.dtype))
        out += self.mean_.astype(x.dtype)
        return out

    def __repr__(self) -> str:
        return f"Standardize(per_channel={self.per_channel}, eps={self.eps})"


class PCAWhiten(_Fitted):
    """PCA whitening with training statistics.

    Flattens each sample to D features, centres with the training mean and
    projects on the top ``n_components`` eigenvectors U of the (biased)
    training covariance, scaled to unit variance:
    ``z = (x - mean) @ U / sqrt(lambda + eps)``.
    ``inverse_transform`` maps back to the input's shape (exact when all D
    components are kept).

    Args:
        n_components (None): number of components kept (None: all D).
        eps (1e-5): added to each eigenvalue before the square root (regularises
            directions of near-zero variance).

    Attributes (after fit): ``mean_`` (D,), ``components_`` (k, D, rows are the
    principal directions, by decreasing variance), ``explained_variance_`` (k,).
    Shape: x (N, ...) with D = prod(x.shape[1:]) -> (N, k).
    """

    def __init__(self, n_components=None, eps: float = 1e-5):
        self.n_components = None if n_components is None else integer("PCAWhiten", "n_components", n_components,
                                                                       low=1)
        self.eps = real("PCAWhiten", "eps", eps, low=0)
        self.mean_ = self.components_ = self.explained_variance_ = None
        self._feature_shape = None

    def fit(self, x) -> "PCAWhiten":
        """Learn mean and principal directions from training data; returns self."""
        x = self._check_fit_input(x)
        n = x.shape[0]
        flat = x.reshape(n, -1)
        d = flat.shape[1]
        k = d if self.n_components is None else self.n_components
        if k > d:
            raise ValueError(f"PCAWhiten.fit: n_components: expected at most the number of features {d}, got {k}")
        mean = np.zeros(d, dtype=np.float64)
        for i in range(0, n, _CHUNK_ROWS):
            mean += flat[i:i + _CHUNK_ROWS].sum(axis=0, dtype=np.float64)
        mean /= n
        cov = np.zeros((d, d), dtype=np.float64)
        for i in range(0, n, _CHUNK_ROWS):
            c = flat[i:i + _CHUNK_ROWS].astype(np.float64) - mean
            cov += c.T @ c
        cov /= n
        self._check_finite(mean, cov)
        evals, evecs = np.linalg.eigh(cov)  # ascending
        order = np.argsort(evals)[::-1][:k]
        self.explained_variance_ = np.maximum(evals[order], 0.0)
        self.components_ = np.ascontiguousarray(evecs[:, order].T)
        self.mean_ = mean
        self._feature_shape = x.shape[1:]
        self._k = k
        return self

    def _whitening(self):
        return self.components_.T / np.sqrt(self.explained_variance_ + self.eps)  # (D, k)

    def transform(self, x) -> np.ndarray:
        x = self._check_input(x, "transform")
        flat = x.reshape(x.shape[0], -1)
        w = self._whitening().astype(x.dtype)
        return (flat - self.mean_.astype(x.dtype)) @ w

    def inverse_transform(self, z) -> np.ndarray:
        self._require_fit("inverse_transform")
        z = _as_float(z, "z", "PCAWhiten.inverse_transform")
        if z.ndim != 2 or z.shape[1] != self._k:
            raise ValueError(f"PCAWhiten.inverse_transform: z: expected shape (N, {self._k}), got {z.shape}")
        unwhiten = (self.components_ * np.sqrt(self.explained_variance_ + self.eps)[:, None]).astype(z.dtype)
        flat = z @ unwhiten + self.mean_.astype(z.dtype)
        return flat.reshape((z.shape[0],) + self._feature_shape)

    def __repr__(self) -> str:
        return f"PCAWhiten(n_components={self.n_components}, eps={self.eps})"
