"""Adagrad (PyTorch's rule, with lr decay and an initial accumulator)."""
from __future__ import annotations

from .._checks import real
from .optimizer import Optimizer

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad.

    .. math::
        g \leftarrow g + \lambda_2 p + \lambda_1 \operatorname{sign}(p),\quad
        \tilde\eta = \frac{\eta}{1 + (t - 1)\,\text{lr\_decay}},\quad
        s \leftarrow s + g^2,\quad p \leftarrow p - \tilde\eta\, \frac{g}{\sqrt{s} + \epsilon}

    Args:
        params: Parameters or param-group dicts.
        lr: learning rate (default 1e-2).
        lr_decay: learning-rate decay per step (default 0).
        weight_decay: L2 penalty added to the gradient (default 0).
        initial_accumulator_value: starting value of the sum of squares (default 0).
        eps: added to the denominator (default 1e-10).
        l1: adds l1 * sign(p) to the gradient (default 0).

    State per parameter: ``step``, ``sum``.
    """

    _kind = "adagrad"

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, l1=0.0):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps, l1=l1)
        super().__init__(params, defaults)

    def _validate(self, group):
        super()._validate(group)
        for key in ("lr_decay", "initial_accumulator_value", "eps"):
            real("Adagrad", key, group[key], low=0)

    def _slots(self, group):
        return (("sum", float(group["initial_accumulator_value"])), None, None)

    def _rule_hyper(self, group):
        return dict(eps=group["eps"], lr_decay=group["lr_decay"])
