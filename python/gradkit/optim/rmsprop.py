"""RMSprop (PyTorch's rule: optional momentum and centering)."""
from __future__ import annotations

from .._checks import real
from .optimizer import Optimizer

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop.

    .. math::
        g \leftarrow g + \lambda_2 p + \lambda_1 \operatorname{sign}(p),\quad
        v \leftarrow \alpha v + (1 - \alpha) g^2,\quad
        \bar g \leftarrow \operatorname{lerp}(\bar g, g, 1 - \alpha) \text{ (centered)},\quad
        d = \sqrt{v - \bar g^2} + \epsilon \text{ (centered) or } \sqrt{v} + \epsilon

    then ``b = momentum * b + g / d; p -= lr * b`` when momentum > 0, else ``p -= lr * g / d``.

    Args:
        params: Parameters or param-group dicts.
        lr: learning rate (default 1e-2).
        alpha: smoothing constant (default 0.99).
        eps: added to the denominator (default 1e-8).
        weight_decay: L2 penalty added to the gradient (default 0).
        momentum: momentum factor (default 0).
        centered: normalise by the variance estimate instead of the second moment (default False).
        l1: adds l1 * sign(p) to the gradient (default 0).

    State per parameter: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0), ``grad_avg`` (centered).
    """

    _kind = "rmsprop"

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, l1=0.0):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=bool(centered), l1=l1)
        super().__init__(params, defaults)

    def _validate(self, group):
        super()._validate(group)
        for key in ("alpha", "eps", "momentum"):
            real("RMSprop", key, group[key], low=0)

    def _slots(self, group):
        return (("square_avg", 0.0), ("momentum_buffer", 0.0) if group["momentum"] > 0 else None,
                ("grad_avg", 0.0) if group["centered"] else None)

    def _rule_hyper(self, group):
        return dict(eps=group["eps"], momentum=group["momentum"], alpha=group["alpha"], centered=group["centered"])
