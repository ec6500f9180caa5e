"""Stochastic gradient descent with momentum, dampening and Nesterov (PyTorch's rule)."""
from __future__ import annotations

from .._checks import real
from .optimizer import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""SGD with optional momentum, dampening and Nesterov momentum.

    .. math::
        g \leftarrow g + \lambda_2 p + \lambda_1 \operatorname{sign}(p), \quad
        b \leftarrow \begin{cases} g & \text{first step} \\ \mu b + (1 - \tau) g & \text{else}\end{cases},\quad
        p \leftarrow p - \eta \,(g + \mu b \text{ if nesterov else } b)

    Args:
        params: Parameters or param-group dicts.
        lr: learning rate (default 1e-3).
        momentum: momentum factor mu (default 0).
        dampening: dampening tau of the momentum (default 0).
        weight_decay: L2 penalty lambda_2 added to the gradient (default 0).
        nesterov: Nesterov momentum; needs momentum > 0 and dampening 0 (default False).
        l1: L1 penalty lambda_1: adds l1 * sign(p) to the gradient (default 0).

    State per parameter: ``momentum_buffer`` (when momentum != 0).
    """

    _kind = "sgd"
    _counts_steps = False

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, l1=0.0):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=bool(nesterov), l1=l1)
        super().__init__(params, defaults)

    def _validate(self, group):
        super()._validate(group)
        real("SGD", "momentum", group["momentum"], low=0)
        real("SGD", "dampening", group["dampening"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: nesterov: expected momentum > 0 and dampening == 0 with Nesterov momentum, "
                             f"got momentum={group['momentum']}, dampening={group['dampening']}")

    def _slots(self, group):
        return (("momentum_buffer", None) if group["momentum"] != 0 else None, None, None)

    def _rule_hyper(self, group):
        return dict(momentum=group["momentum"], dampening=group["dampening"], nesterov=group["nesterov"])
