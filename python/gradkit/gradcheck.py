"""``gk.gradcheck``: analytic gradients against central differences, in float64."""
from __future__ import annotations

import copy
import numbers

import numpy as np

from . import _core
from ._checks import real
from ._config import no_grad
from .nn.module import Module

__all__ = ["gradcheck"]


class _Function:
    """A (forward, backward) pair seen as a module without parameters.

    ``forward(*inputs) -> y``; ``backward(dy, *inputs)`` -> the gradient of the first
    input, or a tuple with one gradient (or None) per input.
    """

    def __init__(self, forward, backward):
        self._forward, self._backward, self._inputs = forward, backward, None

    def forward(self, *inputs):
        self._inputs = inputs
        return self._forward(*inputs)

    def backward(self, dy):
        return self._backward(dy, *self._inputs)


def _as_checked(module_or_fn):
    """(object with forward/backward run in float64, named parameters)."""
    if isinstance(module_or_fn, Module):
        # copy without the forward caches (they may be large and the float64 copy drops them anyway)
        caches = module_or_fn.saved_caches()
        try:
            module_or_fn.clear_caches()
            m = copy.deepcopy(module_or_fn)
        finally:
            module_or_fn.restore_caches(caches)
        m.double()
        return m, [(name, p) for name, p in m.named_parameters() if p.requires_grad]  # frozen: not checked
    if isinstance(module_or_fn, (tuple, list)) and len(module_or_fn) == 2 and all(map(callable, module_or_fn)):
        return _Function(*module_or_fn), []
    if callable(getattr(module_or_fn, "forward", None)) and callable(getattr(module_or_fn, "backward", None)):
        return copy.deepcopy(module_or_fn), []
    raise TypeError("gradcheck: module_or_fn: expected a gk.nn.Module, an object with forward and backward, "
                    f"or a (forward, backward) pair of callables; got {type(module_or_fn).__name__}")


def _is_scalar(y) -> bool:
    return isinstance(y, numbers.Real) or (isinstance(y, np.ndarray) and y.ndim == 0)


def gradcheck(module_or_fn, *inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3) -> bool:
    """Compare analytic gradients with central differences, in float64.

    The function checked is ``L = sum(w * f(*inputs))`` for a fixed random ``w`` (or the
    output itself when ``f`` returns a scalar, as a loss does, whose ``backward()`` then
    takes no argument). Every floating-point input that gets a gradient and every trainable
    parameter (not the frozen ones, ``requires_grad=False``) is perturbed element by element:
    ``(L(t + eps) - L(t - eps)) / (2 eps)``.

    Args:
        module_or_fn: a ``gk.nn.Module`` (checked on a float64 deep copy: the original, its
            running statistics included, is untouched), an object with ``forward`` and
            ``backward``, or a pair ``(forward, backward)`` where ``backward(dy, *inputs)``
            returns the first input's gradient or a tuple of one gradient per input.
        *inputs: the arrays passed to forward. Floating inputs are cast to float64;
            integer inputs (labels) are passed unchanged and not differentiated.
        eps: the finite-difference step (default 1e-6).
        atol, rtol: an element passes if ``|analytic - numeric| <= atol + rtol * |numeric|``
            (defaults 1e-5 and 1e-3).

    Returns:
        True when every element passes.

    Raises:
        AssertionError naming the tensor (``input 0``, ``parameter 0.weight``), the index
        of the worst element, both values and the relative error.

    Random layers (Dropout) see the same random numbers in every evaluation: the library
    generator is reset to its current state before each one, and restored afterwards.
    """
    eps = real("gradcheck", "eps", eps, low=0, low_open=True)
    atol, rtol = real("gradcheck", "atol", atol, low=0), real("gradcheck", "rtol", rtol, low=0)
    model, params = _as_checked(module_or_fn)
    xs = []
    for i, x in enumerate(inputs):
        arr = np.asarray(x)
        if arr.dtype.kind == "f":
            xs.append(np.array(arr, dtype=np.float64, copy=True))
        elif arr.dtype.kind in "biu":
            xs.append(np.array(arr, copy=True))
        else:
            raise TypeError(f"gradcheck: inputs[{i}]: expected a float or integer array, got dtype {arr.dtype}")

    rng_state = _core.rng_state()

    def evaluate(grad: bool):
        _core.set_rng_state(*rng_state)
        if grad:
            return model.forward(*xs)
        with no_grad():
            return model.forward(*xs)

    try:
        # the analytic pass
        if params:
            for _, p in params:
                p.grad[...] = 0
        y = evaluate(grad=True)
        if _is_scalar(y):
            w = None
            grads = model.backward()
        else:
            y = np.asarray(y)
            if y.dtype != np.float64:
                raise TypeError(f"gradcheck: the float64 forward returned dtype {y.dtype}, expected float64")
            w = np.random.default_rng(0).standard_normal(y.shape)  # fixed weights, independent of gk's generator
            grads = model.backward(w)
        if not isinstance(grads, (tuple, list)):
            grads = (grads,)

        def loss() -> float:
            out = evaluate(grad=False)
            return float(out) if w is None else float(np.sum(w * out))

        checks = []  # (name, array perturbed in place, analytic gradient)
        for i, x in enumerate(xs):
            g = grads[i] if i < len(grads) else None
            if g is None or x.dtype.kind != "f":
                continue
            g = np.asarray(g)
            if g.shape != x.shape:
                raise AssertionError(f"gradcheck: input {i}: analytic gradient has shape {g.shape}, "
                                     f"expected {x.shape}")
            checks.append((f"input {i}", x, g.copy()))
        for name, p in params:
            checks.append((f"parameter {name}", p.data, p.grad.copy()))

        for name, t, analytic in checks:
            numeric = np.empty(t.shape, dtype=np.float64)
            flat, num_flat = t.reshape(-1), numeric.reshape(-1)  # views: t is contiguous float64
            for k in range(flat.size):
                orig = flat[k]
                flat[k] = orig + eps
                plus = loss()
                flat[k] = orig - eps
                minus = loss()
                flat[k] = orig
                num_flat[k] = (plus - minus) / (2 * eps)
            err = np.abs(analytic - numeric)
            bad = ~(err <= atol + rtol * np.abs(numeric))  # NaN fails too
            if bad.any():
                scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), np.finfo(np.float64).tiny)
                rel = np.where(np.isnan(err), np.inf, err / scale)
                worst = np.unravel_index(int(np.argmax(np.where(bad, rel, -1.0))), t.shape)
                raise AssertionError(
                    f"gradcheck: {name} (shape {t.shape}): {int(bad.sum())} of {t.size} elements differ; "
                    f"worst at index {tuple(int(v) for v in worst)}: analytic {analytic[worst]:.10g}, "
                    f"numeric {numeric[worst]:.10g}, relative error {rel[worst]:.3g} "
                    f"(atol={atol}, rtol={rtol}, eps={eps})")
    finally:
        _core.set_rng_state(*rng_state)
    return True
