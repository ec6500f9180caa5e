"""Adam and AdamW (PyTorch's rules, with AMSGrad)."""
from __future__ import annotations

from .._checks import real
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba), with optional AMSGrad.

    .. math::
        g \leftarrow g + \lambda_2 p + \lambda_1 \operatorname{sign}(p),\quad
        m \leftarrow \operatorname{lerp}(m, g, 1 - \beta_1),\quad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2,\quad
        \hat v = \max(\hat v, v) \text{ (amsgrad) or } v

    .. math::
        p \leftarrow p - \frac{\eta}{1 - \beta_1^t}\,
        \frac{m}{\sqrt{\hat v} / \sqrt{1 - \beta_2^t} + \epsilon}

    The bias corrections are computed in double.

    Args:
        params: Parameters or param-group dicts.
        lr: learning rate (default 1e-3).
        betas: (beta1, beta2), each in [0, 1) (default (0.9, 0.999)).
        eps: added to the denominator (default 1e-8).
        weight_decay: L2 penalty added to the gradient (default 0).
        amsgrad: use the running maximum of v (default False).
        l1: adds l1 * sign(p) to the gradient (default 0).

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad).
    """

    _kind = "adam"
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, l1=0.0):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=bool(amsgrad), l1=l1)
        super().__init__(params, defaults)

    def _validate(self, group):
        name = type(self).__name__
        super()._validate(group)
        real(name, "eps", group["eps"], low=0)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{name}: betas: expected a pair (beta1, beta2), got {betas!r}")
        group["betas"] = tuple(betas)
        for i, b in enumerate(betas):
            real(name, f"betas[{i}]", b, 0, 1, high_open=True)

    def _slots(self, group):
        return (("exp_avg", 0.0), ("exp_avg_sq", 0.0), ("max_exp_avg_sq", 0.0) if group["amsgrad"] else None)

    def _rule_hyper(self, group):
        beta1, beta2 = group["betas"]
        return dict(eps=group["eps"], beta1=beta1, beta2=beta2, amsgrad=group["amsgrad"], decoupled=self._decoupled)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter).

    Before the Adam update, ``p *= 1 - lr * weight_decay``; the gradient gets no
    L2 term (``l1 * sign(p)`` is still added to it).

    Args:
        params: Parameters or param-group dicts.
        lr: learning rate (default 1e-3).
        betas: (beta1, beta2), each in [0, 1) (default (0.9, 0.999)).
        eps: added to the denominator (default 1e-8).
        weight_decay: decoupled decay coefficient (default 1e-2).
        amsgrad: use the running maximum of v (default False).
        l1: adds l1 * sign(p) to the gradient (default 0).
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, l1=0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, l1=l1)
