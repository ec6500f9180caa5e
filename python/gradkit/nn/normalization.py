"""Normalization layers: BatchNorm1d/2d, LayerNorm, GroupNorm, InstanceNorm2d (PyTorch names and defaults).

Each layer's forward caches the input and the float64 statistics it used;
backward returns dx and ADDS into ``weight.grad`` and ``bias.grad`` (not into a frozen one's).
"""
from __future__ import annotations

import abc

import numpy as np

from .. import ops
from .._checks import integer, real
from .module import Module
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "InstanceNorm2d"]


class _AffineNorm(Module, metaclass=abc.ABCMeta):
    """Shared parts: optional weight (ones) and bias (zeros), forward/backward around the kernels."""

    def _init_affine(self, affine: bool, shape) -> None:
        if affine:
            self.weight = Parameter(np.ones(shape, dtype=np.float32))
            self.bias = Parameter(np.zeros(shape, dtype=np.float32))
        else:
            self._parameters["weight"] = None
            self._parameters["bias"] = None

    def _check_dtype(self, x, expected) -> None:
        if x.dtype != expected:
            raise TypeError(f"{type(self).__name__}: input: expected dtype {expected} (the buffers' dtype), "
                            f"got {x.dtype}")

    def _affine_args(self):
        """(weight, dweight, dbias) arrays for the kernels; None for an absent parameter, and for
        the gradient of a frozen one (the kernels then skip that reduction)."""
        weight, bias = self.weight, self.bias
        return (None if weight is None else weight.data,
                weight.grad if weight is not None and weight.requires_grad else None,
                bias.grad if bias is not None and bias.requires_grad else None)

    def _bias_data(self):
        return None if self.bias is None else self.bias.data

    # Subclasses define the three hooks below; forward/backward are shared.
    @abc.abstractmethod
    def _batched(self, x):
        """Check x's shape and return the array the kernel sees (a view of x)."""

    @abc.abstractmethod
    def _norm_forward(self, x, weight, bias):
        """-> (y, dict of what _norm_backward needs besides x)."""

    @abc.abstractmethod
    def _norm_backward(self, dy, x, saved, weight, dweight, dbias):
        """-> dx; adds into dweight and dbias (None when not affine)."""

    def forward(self, x):
        self._check_input(x)
        xb = self._batched(x)
        weight = None if self.weight is None else self.weight.data
        y, saved = self._norm_forward(xb, weight, self._bias_data())
        self._save_for_backward(x=xb, saved=saved, shape=x.shape, dtype=y.dtype)
        return y.reshape(x.shape)

    def backward(self, dy):
        s = self._saved()
        dy = self._check_grad(dy, s["shape"], s["dtype"])
        weight, dweight, dbias = self._affine_args()
        dx = self._norm_backward(dy.reshape(s["x"].shape), s["x"], s["saved"], weight, dweight, dbias)
        return dx.reshape(s["shape"])


class _BatchNorm(_AffineNorm):
    r"""Batch normalization over the batch (and spatial) axes, per channel.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \gamma + \beta

    In training the mean and the biased variance are the batch's, and the
    running statistics are updated with the unbiased variance:
    ``running = (1 - momentum) * running + momentum * batch`` (momentum=None:
    the cumulative average ``1 / num_batches_tracked``). In eval mode the
    running statistics normalise, unless ``track_running_stats=False``.
    Subclasses differ only in ``_check_input_dim``.

    Args:
        num_features: C, the channel count.
        eps: added to the variance (default 1e-5).
        momentum: running-average factor (default 0.1), or None for a cumulative average.
        affine: learn weight (ones) and bias (zeros) of shape (C,) (default True).
        track_running_stats: keep running_mean (zeros), running_var (ones) and
            num_batches_tracked buffers (default True).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        name = type(self).__name__
        self.num_features = integer(name, "num_features", num_features, low=1)
        self.eps = real(name, "eps", eps, low=0)
        self.momentum = None if momentum is None else real(name, "momentum", momentum, 0, 1)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self._init_affine(self.affine, (self.num_features,))
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype=np.float32))
            self.register_buffer("running_var", np.ones(self.num_features, dtype=np.float32))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    @abc.abstractmethod
    def _check_input_dim(self, x) -> None:
        """Raise ValueError unless x has this layer's rank."""

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked.fill(0)

    def _batched(self, x):
        self._check_input_dim(x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: input: expected {self.num_features} channels (axis 1), "
                             f"got shape {x.shape}")
        if self.running_mean is not None:
            self._check_dtype(x, self.running_mean.dtype)
        # One value per channel has no batch statistics (SyncBatchNorm counts over all ranks itself).
        if (type(self)._norm_forward is _BatchNorm._norm_forward and (self.training or self.running_mean is None)
                and x.shape[1] and x.size // x.shape[1] == 1):
            err = ValueError(f"{type(self).__name__}({self.num_features}): input: Expected more than 1 value per "
                             f"channel when training (batch statistics), got shape {x.shape} (a batch of "
                             "one sample: drop it with Trainer.fit(drop_last=True) or DataLoader(drop_last=True), "
                             "or call .eval())")
            err.module = self  # the Trainer names the layer
            raise err
        return x

    def _stats_args(self):
        """(use_batch_stats, update, momentum, (running_mean, running_var) or Nones) for this forward."""
        use_batch_stats = self.training or self.running_mean is None
        update = self.training and self.track_running_stats
        momentum = 0.0
        if update:  # momentum None: the cumulative moving average
            momentum = 1.0 / float(self.num_batches_tracked + 1) if self.momentum is None else self.momentum
        running = (self.running_mean, self.running_var) if update or not use_batch_stats else (None, None)
        return use_batch_stats, update, momentum, running

    def _run_kernel(self, kernel, x, weight, bias, **kwargs):
        """``kernel(x, weight, bias, running stats, ...)`` (an ``ops.batch_norm*_forward``) with this
        layer's statistics settings; counts the batch. -> (the kernel's result, batch statistics used)."""
        use_batch_stats, update, momentum, running = self._stats_args()
        out = kernel(x, weight, bias, *running, training=use_batch_stats, momentum=momentum, eps=self.eps, **kwargs)
        if update:
            self.num_batches_tracked += 1
        return out, use_batch_stats

    def _norm_forward(self, x, weight, bias):
        (y, mean, rstd), batch_stats = self._run_kernel(ops.batch_norm_forward, x, weight, bias)
        return y, dict(mean=mean, rstd=rstd, batch_stats=batch_stats)

    def _norm_backward(self, dy, x, saved, weight, dweight, dbias):
        return ops.batch_norm_backward(dy, x, saved["mean"], saved["rstd"], weight, dweight, dbias,
                                       training=saved["batch_stats"])

    # Fused with the ReLU that reads this layer's output (nn/fusion.py): the same numbers in fewer passes.
    def _relu_forward(self, x, residual=None):
        """``relu(self(x) + residual)`` (residual may be None) in one kernel; leaves this layer's cache
        as it was. -> (y, what ``_relu_backward`` needs: the layout of the cache ``forward`` keeps)."""
        x = self._batched(self._check_input(x))
        weight = None if self.weight is None else self.weight.data
        (y, mean, rstd), batch_stats = self._run_kernel(ops.batch_norm_relu_forward, x, weight, self._bias_data(),
                                                        residual=residual)
        return y, dict(x=x, saved=dict(mean=mean, rstd=rstd, batch_stats=batch_stats))

    def _relu_backward(self, dy, y, cache, need_dresidual: bool = False):
        """Gradient of ``y = relu(bn(x) [+ residual])`` from the output ``y`` and the batch norm's
        ``cache`` (``_relu_forward``'s, or this layer's own after a plain forward): -> (dx, dresidual
        or None); ADDS into the gradients of the trainable weight and bias."""
        weight, dweight, dbias = self._affine_args()
        saved = cache["saved"]
        return ops.batch_norm_relu_backward(dy, y, cache["x"], saved["mean"], saved["rstd"], weight, dweight, dbias,
                                            need_dresidual=need_dresidual, training=saved["batch_stats"])

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm of (N, C) or (N, C, L) input; statistics over N (and L). See ``_BatchNorm``."""

    def _check_input_dim(self, x) -> None:
        if x.ndim not in (2, 3):
            raise ValueError(f"BatchNorm1d: input: expected a 2-D or 3-D array, got {x.ndim}-D of shape {x.shape}")


class BatchNorm2d(_BatchNorm):
    """Batch norm of (N, C, H, W) input; statistics over N, H, W. See ``_BatchNorm``."""

    def _check_input_dim(self, x) -> None:
        if x.ndim != 4:
            raise ValueError(f"BatchNorm2d: input: expected a 4-D array, got {x.ndim}-D of shape {x.shape}")


class LayerNorm(_AffineNorm):
    r"""Layer normalization over the trailing ``normalized_shape`` dimensions.

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \gamma + \beta

    Args:
        normalized_shape: int or tuple: the trailing shape normalised as one group.
        eps: added to the (biased) variance (default 1e-5).
        elementwise_affine: learn weight (ones) and bias (zeros) of normalized_shape (default True).

    Shape: input (*, *normalized_shape); output the same.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__()
        if isinstance(normalized_shape, (tuple, list)):
            if not normalized_shape:
                raise ValueError("LayerNorm: normalized_shape: expected a non-empty tuple of positive ints, got ()")
            shape = tuple(integer("LayerNorm", f"normalized_shape[{i}]", s, low=1)
                          for i, s in enumerate(normalized_shape))
        else:
            shape = (integer("LayerNorm", "normalized_shape", normalized_shape, low=1),)
        self.normalized_shape = shape
        self.eps = real("LayerNorm", "eps", eps, low=0)
        self.elementwise_affine = bool(elementwise_affine)
        self._init_affine(self.elementwise_affine, shape)

    def _batched(self, x):
        k = len(self.normalized_shape)
        if x.ndim < k or x.shape[x.ndim - k:] != self.normalized_shape:
            raise ValueError(f"LayerNorm: input: expected trailing dimensions {self.normalized_shape} "
                             f"(normalized_shape), got shape {x.shape}")
        return x

    def _norm_forward(self, x, weight, bias):
        y, mean, rstd = ops.layer_norm_forward(x, self.normalized_shape, weight, bias, self.eps)
        return y, dict(mean=mean, rstd=rstd)

    def _norm_backward(self, dy, x, saved, weight, dweight, dbias):
        return ops.layer_norm_backward(dy, x, saved["mean"], saved["rstd"], self.normalized_shape, weight, dweight,
                                       dbias)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(_AffineNorm):
    r"""Group normalization: the C channels split into ``num_groups`` groups,
    statistics per (sample, group) over the group's channels and spatial axes.

    Args:
        num_groups: G, must divide num_channels.
        num_channels: C.
        eps: added to the variance (default 1e-5).
        affine: learn per-channel weight (ones) and bias (zeros) (default True).

    Shape: input (N, C, *); output the same.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.num_groups = integer("GroupNorm", "num_groups", num_groups, low=1)
        self.num_channels = integer("GroupNorm", "num_channels", num_channels, low=1)
        if self.num_channels % self.num_groups != 0:
            raise ValueError(f"GroupNorm: num_groups: expected a divisor of num_channels={self.num_channels}, "
                             f"got {self.num_groups}")
        self.eps = real("GroupNorm", "eps", eps, low=0)
        self.affine = bool(affine)
        self._init_affine(self.affine, (self.num_channels,))

    def _batched(self, x):
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: input: expected an (N, {self.num_channels}, ...) array, "
                             f"got shape {x.shape}")
        return x

    def _norm_forward(self, x, weight, bias):
        y, mean, rstd = ops.group_norm_forward(x, self.num_groups, weight, bias, self.eps)
        return y, dict(mean=mean, rstd=rstd)

    def _norm_backward(self, dy, x, saved, weight, dweight, dbias):
        return ops.group_norm_backward(dy, x, saved["mean"], saved["rstd"], self.num_groups, weight, dweight, dbias)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class InstanceNorm2d(_AffineNorm):
    r"""Instance normalization: statistics per (sample, channel) over H and W.

    Args:
        num_features: C.
        eps: added to the variance (default 1e-5).
        affine: learn per-channel weight (ones) and bias (zeros) (default False, as PyTorch).

    No running statistics (PyTorch's default ``track_running_stats=False``):
    train and eval both use the instance statistics.

    Shape: input (N, C, H, W) or unbatched (C, H, W); output the same.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = False):
        super().__init__()
        self.num_features = integer("InstanceNorm2d", "num_features", num_features, low=1)
        self.eps = real("InstanceNorm2d", "eps", eps, low=0)
        self.affine = bool(affine)
        self._init_affine(self.affine, (self.num_features,))

    def _batched(self, x):
        if x.ndim not in (3, 4):
            raise ValueError(f"InstanceNorm2d: input: expected a 3-D (C, H, W) or 4-D (N, C, H, W) array, "
                             f"got {x.ndim}-D of shape {x.shape}")
        batched = x if x.ndim == 4 else x[None]
        if batched.shape[1] != self.num_features:
            raise ValueError(f"InstanceNorm2d: input: expected {self.num_features} channels, got shape {x.shape}")
        return batched

    def _norm_forward(self, x, weight, bias):
        y, mean, rstd = ops.instance_norm_forward(x, weight, bias, self.eps)
        return y, dict(mean=mean, rstd=rstd)

    def _norm_backward(self, dy, x, saved, weight, dweight, dbias):
        return ops.instance_norm_backward(dy, x, saved["mean"], saved["rstd"], weight, dweight, dbias)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"
