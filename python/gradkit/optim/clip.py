"""Gradient clipping by the total norm of all gradients."""
from __future__ import annotations

import numpy as np

from .. import _core
from ..nn.parameter import Parameter

__all__ = ["clip_grad_norm_"]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0) -> float:
    """Scale all gradients in place so that their total norm is at most ``max_norm``.

    The total norm is taken over all gradients together as if concatenated
    (accumulated in double, fixed chunk order: the same result for any thread
    count). When ``max_norm / (total + 1e-6) < 1`` every gradient is multiplied
    by that factor (PyTorch's rule).

    Args:
        parameters: a Parameter or an iterable of Parameters; frozen ones (``requires_grad=False``)
            and those with ``grad`` None are left out of the norm and not scaled.
        max_norm: the largest allowed norm (>= 0).
        norm_type: 2.0 (default) or ``inf`` (largest absolute value).

    Returns:
        The total norm before clipping, as a float.
    """
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    grads = []
    for i, p in enumerate(parameters):
        if not isinstance(p, Parameter):
            raise TypeError(f"clip_grad_norm_: parameters[{i}]: expected a gk.nn.Parameter, got {type(p).__name__}")
        if p.grad is not None and p.requires_grad:
            grads.append(p.grad)
    try:
        max_norm = float(max_norm)
        norm_type = float(norm_type)
    except (TypeError, ValueError):
        raise TypeError(f"clip_grad_norm_: max_norm, norm_type: expected numbers, got {max_norm!r}, {norm_type!r}") from None
    if not max_norm >= 0:
        raise ValueError(f"clip_grad_norm_: max_norm: expected a value >= 0, got {max_norm}")
    if norm_type not in (2.0, np.inf):
        raise ValueError(f"clip_grad_norm_: norm_type: expected 2.0 or inf, got {norm_type}")
    if not grads:
        return 0.0
    return _core.clip_grad_norm(grads, max_norm, norm_type)
