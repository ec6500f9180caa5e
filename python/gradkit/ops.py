"""Low-level kernels: NumPy arrays in and out, float32 fast, float64 exact.

Every kernel the layers use is reachable here. Inputs of the wrong dtype raise
TypeError, wrong shapes raise ValueError; kernels release the GIL and run on
``gk.get_num_threads()`` threads.
"""
from __future__ import annotations

import numpy as np

from . import _core
from ._checks import integer, pair, real

__all__ = [
    "matmul",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward", "relu", "relu_backward",
    "leaky_relu", "leaky_relu_backward", "elu", "elu_backward", "gelu", "gelu_backward",
    "dropout", "dropout_backward", "cross_entropy", "mse_loss",
]


__all__ += ["conv2d_forward", "conv2d_backward", "conv2d_backward_input", "conv2d_backward_weight",
            "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
            "global_avg_pool2d_forward", "global_avg_pool2d_backward"]


def matmul(a: np.ndarray, b: np.ndarray, *, trans_a: bool = False, trans_b: bool = False, out: np.ndarray | None = None,
           alpha: float = 1.0, beta: float = 0.0, bias: np.ndarray | None = None, bias_per_row: bool = False,
           activation: str = "none") -> np.ndarray:
    """``op(a) @ op(b)`` for 2-D float32 or float64 arrays, where ``op(x) = x.T`` if ``trans_x``.

    Args:
        a, b: 2-D arrays of the same dtype; strided and Fortran-order views are read in place.
        trans_a, trans_b: use the transpose of ``a`` / ``b`` (no copy is made).
        out: optional C-contiguous, writeable result array of shape (M, N), not overlapping a or b.
        alpha, beta: ``out = alpha * op(a) @ op(b) + beta * out`` (beta != 0 needs ``out``).
        bias: optional vector added to every row (shape (N,)), or to every column
            with ``bias_per_row=True`` (shape (M,)).
        activation: "none" or "relu", applied last.

    Returns:
        The (M, N) result (``out`` if given).
    """
    if type(alpha) is not float or type(beta) is not float:  # the layers pass floats: no check on their path
        alpha, beta = real("matmul", "alpha", alpha, finite=False), real("matmul", "beta", beta, finite=False)
    return _core.gemm(a, b, trans_a, trans_b, out, alpha, beta, bias, bias_per_row, activation)


# ---- activations ---------------------------------------------------------------------------
# Forward: ``y = f(x)`` element-wise on any shape, float32 or float64 (same dtype out).
# ``out`` (optional): a C-contiguous writeable array of x's shape and dtype; it may be
# ``x`` itself (in place). Backward: ``dx = dy * f'``, from the saved OUTPUT ``y`` for
# sigmoid, tanh and relu, from the saved INPUT ``x`` for the others.


def sigmoid(x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``1 / (1 + exp(-x))``, stable for any x (denormal results down to x ~ -103 in float32)."""
    return _core.sigmoid_forward(x, out)


def sigmoid_backward(dy: np.ndarray, y: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``dy * y * (1 - y)`` from the forward output ``y``."""
    return _core.sigmoid_backward(dy, y, out)


def tanh(x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``tanh(x)``."""
    return _core.tanh_forward(x, out)


def tanh_backward(dy: np.ndarray, y: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``dy * (1 - y**2)`` from the forward output ``y``."""
    return _core.tanh_backward(dy, y, out)


def relu(x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``max(x, 0)`` (NaN stays NaN)."""
    return _core.relu_forward(x, out)


def relu_backward(dy: np.ndarray, y: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``dy`` where the forward output ``y > 0``, else 0."""
    return _core.relu_backward(dy, y, out)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01, *, out: np.ndarray | None = None) -> np.ndarray:
    """``x if x > 0 else negative_slope * x``."""
    return _core.leaky_relu_forward(x, out, real("leaky_relu", "negative_slope", negative_slope))


def leaky_relu_backward(dy: np.ndarray, x: np.ndarray, negative_slope: float = 0.01, *,
                        out: np.ndarray | None = None) -> np.ndarray:
    """``dy if x > 0 else negative_slope * dy`` from the forward input ``x``."""
    return _core.leaky_relu_backward(dy, x, out, real("leaky_relu_backward", "negative_slope", negative_slope))


def elu(x: np.ndarray, alpha: float = 1.0, *, out: np.ndarray | None = None) -> np.ndarray:
    """``x if x > 0 else alpha * expm1(x)``."""
    return _core.elu_forward(x, out, real("elu", "alpha", alpha))


def elu_backward(dy: np.ndarray, x: np.ndarray, alpha: float = 1.0, *, out: np.ndarray | None = None) -> np.ndarray:
    """``dy if x > 0 else dy * alpha * exp(x)`` from the forward input ``x``."""
    return _core.elu_backward(dy, x, out, real("elu_backward", "alpha", alpha))


def gelu(x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``x * Phi(x) = x / 2 * (1 + erf(x / sqrt 2))`` (the exact erf form, PyTorch's default)."""
    return _core.gelu_forward(x, out)


def gelu_backward(dy: np.ndarray, x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``dy * (Phi(x) + x * phi(x))`` from the forward input ``x``."""
    return _core.gelu_backward(dy, x, out)


# ---- dropout ---------------------------------------------------------------------------------


def _check_p(who: str, p) -> float:
    """A drop probability in [0, 1)."""
    return real(who, "p", p, 0, 1, high_open=True)


def dropout(x: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverted dropout: zero each element with probability ``p``, scale the rest by ``1 / (1 - p)``.

    The mask comes from the library's seeded counter-based generator
    (``gk.manual_seed``): the same seed gives the same mask for any thread count.

    Args:
        x: float32 or float64 array of any shape.
        p: drop probability in [0, 1).

    Returns:
        ``(y, mask)``: y like x, and the keep-mask packed 8 elements a byte
        (``numpy.unpackbits(mask, count=x.size, bitorder="little")`` unpacks it).
    """
    return _core.dropout_forward(x, _check_p("dropout", p))


def dropout_backward(dy: np.ndarray, mask: np.ndarray, p: float) -> np.ndarray:
    """``dy / (1 - p)`` where the forward kept the element, 0 elsewhere (``mask`` from ``dropout``)."""
    return _core.dropout_backward(dy, mask, _check_p("dropout_backward", p))


# ---- losses -----------------------------------------------------------------------------------


def _labels_int64(target, n: int, c: int) -> np.ndarray:
    """Class indices as int64 (any integer dtype), shape (n,), each in [0, c)."""
    if not isinstance(target, np.ndarray):
        raise TypeError(f"cross_entropy: target: expected a numpy.ndarray of integer class indices, "
                        f"got {type(target).__name__}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target: expected an integer dtype (class indices), got {target.dtype}")
    if target.shape != (n,):
        raise ValueError(f"cross_entropy: target: expected shape ({n},) (one label per row of input), "
                         f"got {target.shape}")
    if n:
        bad = np.flatnonzero((target < 0) | (target >= c))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"cross_entropy: target: expected class indices in [0, {c}) (C = {c}), "
                             f"got label {int(target[i])} at index {i}")
    return target.astype(np.int64, copy=False)


def cross_entropy(input: np.ndarray, target: np.ndarray, label_smoothing: float = 0.0, *,
                  grad: bool = True) -> tuple[float, np.ndarray | None]:
    """Softmax cross-entropy of logits against class indices, mean over the batch, fused with its gradient.

    ``loss = mean_i [logsumexp(x_i) - sum_j q_ij x_ij]`` with the target distribution
    ``q = (1 - label_smoothing) * onehot(target) + label_smoothing / C`` (PyTorch's
    formula). Stable for any finite logits (the row maximum is subtracted). Masked (-inf)
    logits give PyTorch's values: a finite loss when only non-targets are masked (inf with
    label smoothing), inf when the target is; the gradient stays finite (softmax 0 there).

    Args:
        input: (N, C) float32 or float64 logits.
        target: (N,) integer class indices (any integer dtype) in [0, C).
        label_smoothing: in [0, 1].
        grad: also compute ``d loss / d input`` (one extra write, no extra pass).

    Returns:
        ``(loss, dinput)``: a Python float and the (N, C) gradient ``(softmax - q) / N``
        (None when ``grad`` is False).
    """
    if not isinstance(input, np.ndarray):
        raise TypeError(f"cross_entropy: input: expected a numpy.ndarray of float32 or float64, "
                        f"got {type(input).__name__}")
    if input.ndim != 2:
        raise ValueError(f"cross_entropy: input: expected a 2-D array (N, C), got {input.ndim}-D of shape {input.shape}")
    ls = real("cross_entropy", "label_smoothing", label_smoothing, 0, 1)
    labels = _labels_int64(target, input.shape[0], input.shape[1])
    return _core.cross_entropy(input, labels, ls, bool(grad))


def mse_loss(input: np.ndarray, target: np.ndarray, *, grad: bool = True) -> tuple[float, np.ndarray | None]:
    """Mean squared error over all elements, fused with its gradient.

    Args:
        input, target: float arrays of the same shape and dtype.
        grad: also compute ``d loss / d input = 2 (input - target) / input.size``.

    Returns:
        ``(loss, dinput)``: a Python float and the gradient (None when ``grad`` is False).
    """
    return _core.mse(input, target, bool(grad))


# -- normalization ----------------------------------------------------------------------------
# Forward functions return (y, mean, rstd): the statistics used, as float64 arrays
# (rstd = 1 / sqrt(var + eps)), which the matching backward takes back.
__all__ += [
    "batch_norm_forward", "batch_norm_backward", "layer_norm_forward", "layer_norm_backward",
    "group_norm_forward", "group_norm_backward", "instance_norm_forward", "instance_norm_backward",
]


def _bn_args(fn: str, momentum, eps) -> tuple:
    """(momentum in [0, 1], eps >= 0), checked: the only check they get (the binding trusts them)."""
    return real(fn, "momentum", momentum, 0, 1), real(fn, "eps", eps, low=0)


def batch_norm_forward(x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                       running_mean: np.ndarray | None = None, running_var: np.ndarray | None = None, *,
                       training: bool = True, momentum: float = 0.1, eps: float = 1e-5):
    """Batch normalization over every axis but the channel axis 1.

    ``y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]``. With
    ``training`` (or without running statistics) mean and the biased var are
    the batch's, and the running statistics, when given, are updated in place:
    ``r = (1 - momentum) * r + momentum * s`` with the unbiased variance
    (as PyTorch). Otherwise the running statistics normalise.

    Args:
        x: (N, C, *) float32 or float64.
        weight, bias: (C,) or None (scale 1, shift 0).
        running_mean, running_var: (C,) C-contiguous writeable arrays of x's dtype, or None.
        training: use the batch statistics. momentum: the running-average factor. eps: added to var.

    Returns:
        (y, mean, rstd): y like x; mean and rstd (C,) float64, for ``batch_norm_backward``.

    Raises:
        ValueError: N * prod(spatial) == 1 with batch statistics ("Expected more than 1 value per
            channel when training"), or shapes that do not match C.
    """
    return _core.batch_norm_forward(x, weight, bias, running_mean, running_var, bool(training),
                                    *_bn_args("batch_norm_forward", momentum, eps))


def batch_norm_backward(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, rstd: np.ndarray,
                        weight: np.ndarray | None = None, dweight: np.ndarray | None = None,
                        dbias: np.ndarray | None = None, *, training: bool = True) -> np.ndarray:
    """Gradient of ``batch_norm_forward``: returns dx and ADDS into dweight, dbias (when given).

    Args:
        dy, x: (N, C, *). mean, rstd: (C,) float64 from the forward. weight: (C,) or None.
        dweight, dbias: (C,) writeable arrays of x's dtype, or None.
        training: the forward used batch statistics (their gradient flows into dx).
    """
    return _core.batch_norm_backward(dy, x, mean, rstd, weight, dweight, dbias, bool(training))


__all__ += ["batch_norm_relu_forward", "batch_norm_relu_backward"]


def batch_norm_relu_forward(x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                            running_mean: np.ndarray | None = None, running_var: np.ndarray | None = None, *,
                            residual: np.ndarray | None = None, training: bool = True, momentum: float = 0.1,
                            eps: float = 1e-5):
    """``relu(batch_norm(x) + residual)`` in one kernel (a residual block's join; residual may be None).

    The same result as ``batch_norm_forward``, then adding ``residual``, then ``relu``
    (statistics and running-stat updates included), in the two passes over x that batch norm
    alone takes: the normalised tensor and the sum are never written.

    Args:
        x: (N, C, *) float32 or float64.
        weight, bias, running_mean, running_var, training, momentum, eps: as ``batch_norm_forward``.
        residual: None, or an array of x's shape and dtype added before the ReLU.

    Returns:
        (y, mean, rstd): y like x; mean and rstd (C,) float64, for ``batch_norm_relu_backward``.
    """
    return _core.batch_norm_relu_forward(x, residual, weight, bias, running_mean, running_var, bool(training),
                                         *_bn_args("batch_norm_relu_forward", momentum, eps))


def batch_norm_relu_backward(dy: np.ndarray, y: np.ndarray, x: np.ndarray, mean: np.ndarray, rstd: np.ndarray,
                             weight: np.ndarray | None = None, dweight: np.ndarray | None = None,
                             dbias: np.ndarray | None = None, *, need_dresidual: bool = False,
                             training: bool = True):
    """Gradient of ``batch_norm_relu_forward``: returns ``(dx, dresidual)``, ADDS into dweight, dbias.

    The ReLU passes ``dy`` where ``y > 0`` (and where y is NaN, as ``relu_backward``); that
    gradient is the residual's (``dresidual``, None unless ``need_dresidual``) and goes through
    batch norm's backward to give dx. Two passes, as ``batch_norm_backward``.

    Args:
        dy: gradient of the output, like x. y: the forward's output. x: the forward's input.
        mean, rstd: from the forward. weight: (C,) or None.
        dweight, dbias: (C,) writeable arrays of x's dtype, or None.
        need_dresidual: also return the residual's gradient.
        training: the forward used batch statistics.
    """
    return _core.batch_norm_relu_backward(dy, y, x, mean, rstd, weight, dweight, dbias, bool(need_dresidual),
                                          bool(training))


__all__ += ["batch_norm_relu_pool2_forward", "batch_norm_relu_pool2_backward"]


def batch_norm_relu_pool2_forward(x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                                  running_mean: np.ndarray | None = None, running_var: np.ndarray | None = None, *,
                                  training: bool = True, momentum: float = 0.1, eps: float = 1e-5):
    """``max_pool2d(relu(batch_norm(x)), 2)`` in one kernel (kernel 2, stride 2, no padding).

    The same result as ``batch_norm_forward`` then ``relu`` then ``max_pool2d_forward(., 2)``
    (statistics and running-stat updates included), in two passes over x; the normalised
    full-size tensor is never written.

    Args:
        x: (N, C, H, W) float32 or float64 with H, W >= 2.
        weight, bias, running_mean, running_var, training, momentum, eps: as ``batch_norm_forward``.

    Returns:
        (y, code, mean, rstd): y (N, C, H // 2, W // 2); code, uint8 of y's shape: the position
        ``dh * 2 + dw`` of each window's max, or 255 where the ReLU passes no gradient; mean and
        rstd (C,) float64. code, mean and rstd go to ``batch_norm_relu_pool2_backward``.
    """
    return _core.batch_norm_relu_pool2_forward(x, weight, bias, running_mean, running_var, bool(training),
                                               *_bn_args("batch_norm_relu_pool2_forward", momentum, eps))


def batch_norm_relu_pool2_backward(dy: np.ndarray, x: np.ndarray, code: np.ndarray, mean: np.ndarray,
                                   rstd: np.ndarray, weight: np.ndarray | None = None,
                                   dweight: np.ndarray | None = None, dbias: np.ndarray | None = None, *,
                                   training: bool = True) -> np.ndarray:
    """Gradient of ``batch_norm_relu_pool2_forward``: returns dx and ADDS into dweight, dbias.

    Args:
        dy: (N, C, H // 2, W // 2). x: the forward's input (N, C, H, W).
        code, mean, rstd: from the forward. weight: (C,) or None.
        dweight, dbias: (C,) writeable arrays of x's dtype, or None.
        training: the forward used batch statistics.
    """
    return _core.batch_norm_relu_pool2_backward(dy, x, code, mean, rstd, weight, dweight, dbias, bool(training))


def layer_norm_forward(x: np.ndarray, normalized_shape, weight: np.ndarray | None = None,
                       bias: np.ndarray | None = None, eps: float = 1e-5):
    """Layer normalization over the trailing ``normalized_shape`` dimensions.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, statistics per leading index.

    Args:
        x: (*, *normalized_shape). normalized_shape: int or tuple.
        weight, bias: normalized_shape arrays, or None.

    Returns:
        (y, mean, rstd): mean and rstd float64 of shape x.shape[:-len(normalized_shape)].
    """
    return _core.layer_norm_forward(x, _shape_tuple("layer_norm_forward", normalized_shape), weight, bias,
                                    real("layer_norm_forward", "eps", eps, low=0))


def layer_norm_backward(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, rstd: np.ndarray, normalized_shape,
                        weight: np.ndarray | None = None, dweight: np.ndarray | None = None,
                        dbias: np.ndarray | None = None) -> np.ndarray:
    """Gradient of ``layer_norm_forward``: returns dx and ADDS into dweight, dbias (when given)."""
    return _core.layer_norm_backward(dy, x, mean, rstd, _shape_tuple("layer_norm_backward", normalized_shape), weight,
                                     dweight, dbias)


def group_norm_forward(x: np.ndarray, num_groups: int, weight: np.ndarray | None = None,
                       bias: np.ndarray | None = None, eps: float = 1e-5):
    """Group normalization: channels split into ``num_groups`` groups, statistics per (sample, group).

    Args:
        x: (N, C, *) with C divisible by num_groups. weight, bias: (C,) or None.

    Returns:
        (y, mean, rstd): mean and rstd (N, num_groups) float64.
    """
    return _core.group_norm_forward(x, integer("group_norm_forward", "num_groups", num_groups, low=1),
                                    weight, bias, real("group_norm_forward", "eps", eps, low=0))


def group_norm_backward(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, rstd: np.ndarray, num_groups: int,
                        weight: np.ndarray | None = None, dweight: np.ndarray | None = None,
                        dbias: np.ndarray | None = None) -> np.ndarray:
    """Gradient of ``group_norm_forward``: returns dx and ADDS into dweight, dbias (when given)."""
    return _core.group_norm_backward(dy, x, mean, rstd, integer("group_norm_backward", "num_groups", num_groups, low=1),
                                     weight, dweight, dbias)


def instance_norm_forward(x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                          eps: float = 1e-5):
    """Instance normalization: statistics per (sample, channel) over the spatial axes
    (group norm with one channel per group). x (N, C, *); returns (y, mean (N, C), rstd (N, C))."""
    return group_norm_forward(x, _channels(x), weight, bias, eps)


def instance_norm_backward(dy: np.ndarray, x: np.ndarray, mean: np.ndarray, rstd: np.ndarray,
                           weight: np.ndarray | None = None, dweight: np.ndarray | None = None,
                           dbias: np.ndarray | None = None) -> np.ndarray:
    """Gradient of ``instance_norm_forward``: returns dx and ADDS into dweight, dbias (when given)."""
    return group_norm_backward(dy, x, mean, rstd, _channels(x), weight, dweight, dbias)


def _shape_tuple(who: str, normalized_shape) -> tuple:
    """normalized_shape as a tuple of ints (an int means a 1-tuple)."""
    if isinstance(normalized_shape, (tuple, list)):
        return tuple(integer(who, f"normalized_shape[{i}]", s) for i, s in enumerate(normalized_shape))
    return (integer(who, "normalized_shape", normalized_shape),)


def _channels(x) -> int:
    if not isinstance(x, np.ndarray) or x.ndim < 2:
        shape = getattr(x, "shape", None)
        raise ValueError(f"input: expected an array of rank >= 2 (N, C, ...), got shape {shape}")
    return max(x.shape[1], 1)


# ---- convolution and pooling ----------------------------------------------------------------

def _conv_args(fn, stride, padding, dilation, groups):
    """(stride, padding, dilation, groups) checked: the only check they get (the binding trusts them)."""
    return (pair(fn, "stride", stride, low=1), pair(fn, "padding", padding, low=0),
            pair(fn, "dilation", dilation, low=1), integer(fn, "groups", groups, low=1))


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride=1, padding=0,
                   dilation=1, groups: int = 1, activation: str = "none") -> np.ndarray:
    """2-D convolution (cross-correlation, as PyTorch), bias and optional ReLU fused.

    Args:
        x: input (N, C, H, W), float32 or float64.
        weight: (OC, C/groups, KH, KW), same dtype.
        bias: (OC,) or None.
        stride, padding, dilation: int or (h, w) pair; defaults 1, 0, 1.
        groups: channel groups (C and OC divisible by it; groups == C is depthwise).
        activation: "none" or "relu", applied in the output pass.

    Returns:
        y (N, OC, OH, OW) with OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1 (OW alike).
    """
    args = _conv_args("conv2d_forward", stride, padding, dilation, groups)
    return _core.conv2d_forward(x, weight, bias, *args, activation)


def conv2d_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride=1, padding=0, dilation=1,
                    groups: int = 1, *, dweight: np.ndarray | None = None, dbias: np.ndarray | None = None,
                    need_dx: bool = True, need_dweight: bool = True, need_dbias: bool = True):
    """Gradients of ``conv2d_forward`` (without activation) in one pass over the images.

    Args:
        dy: gradient of the output (N, OC, OH, OW).
        x, weight, stride, padding, dilation, groups: as given to the forward.
        dweight, dbias: optional C-contiguous arrays the weight/bias gradients are ADDED into
            (e.g. ``Parameter.grad``); new zero-initialised arrays when None.
        need_dx, need_dweight, need_dbias: skip what is not needed (a first layer needs no dx).

    Returns:
        ``(dx, dweight, dbias)``; each is None when not needed. dW and db are reduced in a
        fixed order, so they are the same for any thread count.
    """
    args = _conv_args("conv2d_backward", stride, padding, dilation, groups)
    return _core.conv2d_backward(dy, x, weight, *args, dweight, dbias, bool(need_dx), bool(need_dweight),
                                 bool(need_dbias))


def conv2d_backward_input(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride=1, padding=0, dilation=1,
                          groups: int = 1) -> np.ndarray:
    """dx (N, C, H, W) of ``conv2d_forward``; ``x`` gives the input shape and dtype."""
    return conv2d_backward(dy, x, weight, stride, padding, dilation, groups, need_dweight=False,
                           need_dbias=False)[0]


def conv2d_backward_weight(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, stride=1, padding=0, dilation=1,
                           groups: int = 1, *, dweight: np.ndarray | None = None,
                           dbias: np.ndarray | None = None, need_dbias: bool = True):
    """``(dweight, dbias)`` of ``conv2d_forward``, ADDED into the given arrays when not None."""
    _, dw, db = conv2d_backward(dy, x, weight, stride, padding, dilation, groups, dweight=dweight, dbias=dbias,
                                need_dx=False, need_dbias=need_dbias)
    return dw, db


def _pool_args(fn, kernel_size, stride, padding):
    """(kernel, stride, padding) as pairs, checked: the only check they get (the binding trusts them).
    stride None means kernel_size; padding at most half the kernel."""
    kernel = pair(fn, "kernel_size", kernel_size, low=1)
    stride = kernel if stride is None else pair(fn, "stride", stride, low=1)
    pad = pair(fn, "padding", padding, low=0)
    if 2 * pad[0] > kernel[0] or 2 * pad[1] > kernel[1]:
        raise ValueError(f"{fn}: padding: expected at most half the kernel size {kernel}, got {padding!r}")
    return kernel, stride, pad


def _input_shape(input_shape, fn):
    try:
        items = tuple(input_shape)
    except TypeError:
        raise TypeError(f"{fn}: input_shape: expected 4 ints (N, C, H, W), got {input_shape!r}") from None
    return tuple(integer(fn, f"input_shape[{i}]", v) for i, v in enumerate(items))


def max_pool2d_forward(x: np.ndarray, kernel_size, stride=None, padding=0):
    """Max pooling over (N, C, H, W); padding (at most half the kernel) counts as -inf.

    Returns:
        ``(y, indices)``: y (N, C, OH, OW) and int32 indices, the flat position ``ih*W + iw``
        of each maximum in its plane (NaN propagates, as PyTorch). stride defaults to kernel_size.
    """
    return _core.max_pool2d_forward(x, *_pool_args("max_pool2d_forward", kernel_size, stride, padding))


def max_pool2d_backward(dy: np.ndarray, indices: np.ndarray, input_shape, kernel_size, stride=None,
                        padding=0) -> np.ndarray:
    """dx (input_shape) of max pooling: each dy added at its argmax (``indices`` from the forward)."""
    return _core.max_pool2d_backward(dy, indices, _input_shape(input_shape, "max_pool2d_backward"),
                                     *_pool_args("max_pool2d_backward", kernel_size, stride, padding))


def avg_pool2d_forward(x: np.ndarray, kernel_size, stride=None, padding=0) -> np.ndarray:
    """Average pooling over (N, C, H, W); padded zeros count in the mean (count_include_pad=True)."""
    return _core.avg_pool2d_forward(x, *_pool_args("avg_pool2d_forward", kernel_size, stride, padding))


def avg_pool2d_backward(dy: np.ndarray, input_shape, kernel_size, stride=None, padding=0) -> np.ndarray:
    """dx (input_shape) of average pooling: each dy / (KH*KW) spread over its window."""
    return _core.avg_pool2d_backward(dy, _input_shape(input_shape, "avg_pool2d_backward"),
                                     *_pool_args("avg_pool2d_backward", kernel_size, stride, padding))


def global_avg_pool2d_forward(x: np.ndarray) -> np.ndarray:
    """Mean over H and W: (N, C, H, W) -> (N, C)."""
    return _core.global_avg_pool2d_forward(x)


def global_avg_pool2d_backward(dy: np.ndarray, input_shape) -> np.ndarray:
    """dx (N, C, H, W) = dy (N, C) / (H*W) broadcast over each plane."""
    return _core.global_avg_pool2d_backward(dy, _input_shape(input_shape, "global_avg_pool2d_backward"))
