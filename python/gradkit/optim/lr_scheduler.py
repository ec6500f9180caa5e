"""Learning-rate schedulers with PyTorch's names, arguments and values step by step.

A scheduler writes ``group["lr"]`` of its optimizer (OneCycleLR also the
momentum or beta1). Call ``step()`` once per epoch after the optimizer's
steps (OneCycleLR once per batch; ``ReduceLROnPlateau.step(metric)``).
Values follow PyTorch's chainable (recursive) forms, so they match
``torch.optim.lr_scheduler`` to the last bit.
"""
from __future__ import annotations

import math
import numbers
from collections import Counter

from .._checks import instance, integer, real
from .optimizer import Optimizer

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "OneCycleLR",
           "ReduceLROnPlateau"]


def _checked_like(where: str, value, like):
    """``value`` if it has the kind of ``like`` (the attribute's current value): the same
    scalar type (ints for ints, any real for reals), a list of as many reals, a dict with
    the same keys; TypeError/ValueError naming ``where`` otherwise. Copies containers."""
    def fail(expected, error=TypeError):
        got = type(value).__name__ if error is TypeError else repr(value)
        raise error(f"{where}: expected {expected}, got {got}")

    if isinstance(like, bool):
        if not isinstance(value, bool):
            fail("a bool")
        return value
    if isinstance(like, Counter):  # MultiStepLR's milestones (gk.load gives a plain dict)
        if not isinstance(value, dict):
            fail("a dict milestone -> count")
        for k, v in value.items():
            integer(where, f"milestone {k!r}", k, low=0)
            integer(where, f"count of milestone {k!r}", v, low=1)
        return Counter({int(k): int(v) for k, v in value.items()})
    if isinstance(like, numbers.Integral):
        return integer(where, "value", value)
    if isinstance(like, numbers.Real) or like is None:  # None: ReduceLROnPlateau's per-group min_lr
        if value is None and like is None:
            return None
        return real(where, "value", value, finite=False)  # inf: ReduceLROnPlateau's first best
    if isinstance(like, str):
        if not isinstance(value, str):
            fail("a str")
        return value
    if isinstance(like, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            fail(f"a list of {len(like)} values")
        if len(value) != len(like):
            fail(f"{len(like)} values (one per param group or phase)", ValueError)
        items = [_checked_like(f"{where}[{i}]", v, l) for i, (v, l) in enumerate(zip(value, like))]
        return type(like)(items)
    if isinstance(like, dict):
        if not isinstance(value, dict):
            fail("a dict")
        if set(value) != set(like):
            fail(f"the keys {sorted(like)}", ValueError)
        return {k: _checked_like(f"{where}[{k!r}]", value[k], like[k]) for k in like}
    if not isinstance(value, type(like)):
        fail(f"a {type(like).__name__}")
    return value


def _rule_int(minimum: int):
    return lambda owner, name, value: integer(owner, name, value, low=minimum)


def _rule_range(lo: float | None, hi: float, lo_open: bool = False, hi_open: bool = False):
    return lambda owner, name, value: real(owner, name, value, lo, hi, low_open=lo_open, high_open=hi_open)


def _rule_choice(*choices):
    def check(owner, name, value):
        if value not in choices:
            raise ValueError(f"{owner}: {name}: expected one of {list(choices)}, got {value!r}")
    return check


class LRScheduler:
    """Base class: ``step()``, ``get_last_lr()``, ``last_epoch``, ``base_lrs``, state dicts.

    Args:
        optimizer: the optimizer whose ``param_groups`` lrs are scheduled.
        last_epoch: index of the last epoch seen; -1 (default) starts a new schedule
            (sets each group's ``initial_lr``), otherwise the groups must hold ``initial_lr``.
    """

    def __init__(self, optimizer, last_epoch: int = -1):
        instance(type(self).__name__, "optimizer", optimizer, Optimizer, "a gk.optim.Optimizer")
        self.optimizer = optimizer
        last_epoch = integer(type(self).__name__, "last_epoch", last_epoch, low=-1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] when resuming a "
                                   "scheduler with last_epoch >= 0")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list:
        """The lrs for ``self.last_epoch`` (chainable form: from the groups' current lrs)."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch (one batch for OneCycleLR) and write the new lrs into the optimizer."""
        self._step_count += 1
        self.last_epoch += 1
        values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list:
        """The lrs written by the last ``step()``, one per param group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Every attribute except the optimizer."""
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    # The constructor's rules for the attributes a state dict sets (besides their types).
    _state_rules = {"last_epoch": _rule_int(-1), "_step_count": _rule_int(0)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state saved by ``state_dict()``. Checked first: its type, its keys
        (exactly this scheduler's), every value against the kind of the current one (ints,
        reals, one value per param group...) and the constructor's rules; on an error
        (TypeError/ValueError naming the key) the scheduler is left unchanged."""
        owner = type(self).__name__
        where = f"{owner}: load_state_dict: state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{where}: expected a dict (from {owner}.state_dict()), got {type(state_dict).__name__}")
        current = self.state_dict()
        missing, unknown = sorted(set(current) - set(state_dict)), sorted(map(str, set(state_dict) - set(current)))
        if missing or unknown:
            raise ValueError(f"{where}: expected the keys of a {owner} state dict; missing {missing}, "
                             f"unexpected {unknown}")
        new = {key: _checked_like(f"{where}[{key!r}]", state_dict[key], like) for key, like in current.items()}
        for cls in type(self).__mro__:
            for key, rule in vars(cls).get("_state_rules", {}).items():
                if key in new:
                    rule(where, key, new[key])
        self.__dict__.update(new)

    def _group_lrs(self) -> list:
        return [group["lr"] for group in self.optimizer.param_groups]


class StepLR(LRScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` epochs: ``lr = base_lr * gamma ** (epoch // step_size)``."""

    _state_rules = {"step_size": _rule_int(1)}

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size = integer("StepLR", "step_size", step_size, low=1)
        self.gamma = real("StepLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._group_lrs()
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class MultiStepLR(LRScheduler):
    """Multiply the lr by ``gamma`` at each milestone epoch: ``lr = base_lr * gamma ** #(milestones <= epoch)``."""

    def __init__(self, optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1):
        milestones = list(milestones)
        for i, m in enumerate(milestones):
            integer("MultiStepLR", f"milestones[{i}]", m, low=0)
        self.milestones = Counter(int(m) for m in milestones)
        self.gamma = real("MultiStepLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch not in self.milestones:
            return self._group_lrs()
        factor = self.gamma ** self.milestones[self.last_epoch]
        return [group["lr"] * factor for group in self.optimizer.param_groups]


class ExponentialLR(LRScheduler):
    """Multiply the lr by ``gamma`` every epoch: ``lr = base_lr * gamma ** epoch``."""

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = real("ExponentialLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._group_lrs()
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the base lr to ``eta_min`` over ``T_max`` epochs (SGDR without restarts).

    Closed form ``eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2``; the values
    are computed with PyTorch's recursive form (also past ``T_max``, where the cosine rises again).
    """

    _state_rules = {"T_max": _rule_int(1)}

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.T_max = integer("CosineAnnealingLR", "T_max", T_max, low=1)
        self.eta_min = real("CosineAnnealingLR", "eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        e, t, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._group_lrs()
        if self._step_count == 1 and e > 0:
            return [eta_min + (base_lr - eta_min) * (1 + math.cos(e * math.pi / t)) / 2 for base_lr in self.base_lrs]
        if (e - 1 - t) % (2 * t) == 0:
            return [group["lr"] + (base_lr - eta_min) * (1 - math.cos(math.pi / t)) / 2
                    for base_lr, group in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t)) * (group["lr"] - eta_min)
                + eta_min for group in groups]


class LinearLR(LRScheduler):
    """Scale the lr linearly from ``start_factor`` to ``end_factor`` times the base lr over ``total_iters`` epochs."""

    _state_rules = {"start_factor": _rule_range(0, 1, lo_open=True), "end_factor": _rule_range(0, 1),
                    "total_iters": _rule_int(0)}

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5,
                 last_epoch: int = -1):
        self.start_factor = real("LinearLR", "start_factor", start_factor, 0, 1, low_open=True)
        self.end_factor = real("LinearLR", "end_factor", end_factor, 0, 1)
        self.total_iters = integer("LinearLR", "total_iters", total_iters, low=0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in self.optimizer.param_groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._group_lrs()
        delta = self.end_factor - self.start_factor
        factor = 1.0 + delta / (self.total_iters * self.start_factor + (self.last_epoch - 1) * delta)
        return [group["lr"] * factor for group in self.optimizer.param_groups]


def _per_group(owner: str, name: str, optimizer, value) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(f"{owner}: {name}: expected {len(optimizer.param_groups)} values (one per param group), "
                             f"got {len(value)}")
        return [real(owner, name, v) for v in value]
    return [real(owner, name, value)] * len(optimizer.param_groups)


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin), stepped once per batch.

    The lr rises from ``max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start`` of ``total_steps``, then anneals to ``initial_lr / final_div_factor``
    (cosine by default). With ``cycle_momentum`` (default) the momentum (SGD,
    RMSprop) or beta1 (Adam) moves inversely between ``max_momentum`` and
    ``base_momentum``. Stepping past ``total_steps`` raises ValueError.
    """

    _state_rules = {"total_steps": _rule_int(1), "anneal_strategy": _rule_choice("cos", "linear")}

    def __init__(self, optimizer, max_lr, total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum=0.85, max_momentum=0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False, last_epoch: int = -1):
        name = "OneCycleLR"
        instance(name, "optimizer", optimizer, Optimizer, "a gk.optim.Optimizer")
        if total_steps is not None:
            self.total_steps = integer(name, "total_steps", total_steps, low=1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (integer(name, "epochs", epochs, low=1)
                                * integer(name, "steps_per_epoch", steps_per_epoch, low=1))
        else:
            raise ValueError(f"{name}: total_steps: expected total_steps or both epochs and steps_per_epoch, got none")
        pct_start = real(name, "pct_start", pct_start, 0, 1)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{name}: anneal_strategy: expected 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        n = self.total_steps
        if three_phase:
            self._phases = [
                dict(end_step=float(pct_start * n) - 1, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=float(2 * pct_start * n) - 2, start_lr="max_lr", end_lr="initial_lr",
                     start_momentum="base_momentum", end_momentum="max_momentum"),
                dict(end_step=n - 1, start_lr="initial_lr", end_lr="min_lr",
                     start_momentum="max_momentum", end_momentum="max_momentum"),
            ]
        else:
            self._phases = [
                dict(end_step=float(pct_start * n) - 1, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=n - 1, start_lr="max_lr", end_lr="min_lr",
                     start_momentum="base_momentum", end_momentum="max_momentum"),
            ]
        max_lrs = _per_group(name, "max_lr", optimizer, max_lr)
        div_factor = real(name, "div_factor", div_factor)
        final_div_factor = real(name, "final_div_factor", final_div_factor)
        if last_epoch == -1:
            for m, group in zip(max_lrs, optimizer.param_groups):
                group["initial_lr"] = m / div_factor
                group["max_lr"] = m
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(f"{name}: cycle_momentum: the optimizer ({type(optimizer).__name__}) has no momentum "
                                 "or betas; pass cycle_momentum=False")
            self.use_beta1 = "betas" in optimizer.defaults
            max_moms = _per_group(name, "max_momentum", optimizer, max_momentum)
            base_moms = _per_group(name, "base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                for m_mom, b_mom, group in zip(max_moms, base_moms, optimizer.param_groups):
                    if self.use_beta1:
                        group["betas"] = (m_mom, *group["betas"][1:])
                    else:
                        group["momentum"] = m_mom
                    group["max_momentum"] = m_mom
                    group["base_momentum"] = b_mom
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: step: tried to step {step} times, expected at most total_steps="
                             f"{self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, phase in enumerate(self._phases):
                end = phase["end_step"]
                if step <= end or i == len(self._phases) - 1:
                    pct = (step - start) / (end - start)
                    lr = self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct)
                    if self.cycle_momentum:
                        mom = self._anneal(group[phase["start_momentum"]], group[phase["end_momentum"]], pct)
                    break
                start = phase["end_step"]
            lrs.append(lr)
            if self.cycle_momentum:
                if self.use_beta1:
                    group["betas"] = (mom, *group["betas"][1:])
                else:
                    group["momentum"] = mom
        return lrs


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lr by ``factor`` when a metric has stopped improving for ``patience`` epochs.

    ``step(metric)`` once per epoch. mode "min" (lower is better) or "max";
    improvement is relative (``threshold_mode="rel"``: better than
    ``best * (1 -+ threshold)``) or absolute. After a reduction, ``cooldown``
    epochs are ignored; lrs never go below ``min_lr`` and changes smaller than
    ``eps`` are skipped.
    """

    _state_rules = {"factor": _rule_range(None, 1.0, hi_open=True), "mode": _rule_choice("min", "max"),
                    "threshold_mode": _rule_choice("rel", "abs"), "patience": _rule_int(0), "cooldown": _rule_int(0),
                    "cooldown_counter": _rule_int(0), "num_bad_epochs": _rule_int(0), "last_epoch": _rule_int(0)}

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr=0, eps: float = 1e-8):
        name = "ReduceLROnPlateau"
        instance(name, "optimizer", optimizer, Optimizer, "a gk.optim.Optimizer")
        factor = real(name, "factor", factor, high=1.0, high_open=True)
        if mode not in ("min", "max"):
            raise ValueError(f"{name}: mode: expected 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{name}: threshold_mode: expected 'rel' or 'abs', got {threshold_mode!r}")
        self.optimizer = optimizer
        self.factor = factor
        if isinstance(min_lr, (list, tuple)):
            self.default_min_lr = None
            self.min_lrs = _per_group(name, "min_lr", optimizer, min_lr)
        else:
            self.default_min_lr = real(name, "min_lr", min_lr)
            self.min_lrs = [self.default_min_lr] * len(optimizer.param_groups)
        self.patience = integer(name, "patience", patience, low=0)
        self.cooldown = integer(name, "cooldown", cooldown, low=0)
        self.eps = real(name, "eps", eps)
        self.mode = mode
        self.threshold = real(name, "threshold", threshold)
        self.threshold_mode = threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = self._group_lrs()
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics) -> None:  # noqa: D401 - PyTorch's signature
        """Record one epoch's metric; reduce the lrs after ``patience`` epochs without improvement."""
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(f"ReduceLROnPlateau: metrics: expected a number, got {type(metrics).__name__}") from None
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._group_lrs()

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(f"ReduceLROnPlateau: min_lr: expected {len(groups)} values (param groups were "
                                   f"added), got {len(self.min_lrs)}")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for i, group in enumerate(groups):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr
