"""``Optimizer``: the base of every gradkit optimizer (PyTorch's interface).

A subclass names its C++ update (``_kind``), its state slots and its
hyperparameter checks; the base keeps ``param_groups`` and ``state``, creates
state lazily on the first step (with the parameter's dtype) and sends every
parameter of every group to ONE C++ call (multi-tensor apply: all tensors in
one parallel region, no per-element work in Python). The argument lists are
prepared once and reused while no parameter's ``data`` or ``grad`` is rebound.
"""
from __future__ import annotations

import abc
import copy
import numbers
from operator import is_

import numpy as np

from .. import _core
from ..nn.parameter import Parameter

__all__ = ["Optimizer"]


def _float(owner: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{owner}: {name}: expected a real number, got {type(value).__name__}")
    return float(value)


def check_nonneg(owner: str, name: str, value) -> None:
    """ValueError unless ``value`` is a number >= 0 (NaN is rejected)."""
    v = _float(owner, name, value)
    if not v >= 0.0:
        raise ValueError(f"{owner}: {name}: expected a value >= 0, got {value}")


def check_unit(owner: str, name: str, value) -> None:
    """ValueError unless 0 <= value < 1."""
    v = _float(owner, name, value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{owner}: {name}: expected a value in [0, 1), got {value}")


class _Plan:
    """The prepared C++ arguments of one param group, valid while the parameters'
    data and grad arrays and the optimizer's state dict are the same objects."""

    __slots__ = ("slots", "datas", "grads", "state", "nstate", "entries", "steps", "pending", "args")

    def __init__(self, slots, datas, grads, state, nstate, entries, steps, pending, args):
        self.slots, self.datas, self.grads, self.state, self.nstate = slots, datas, grads, state, nstate
        self.entries, self.steps, self.pending, self.args = entries, steps, pending, args


class Optimizer(metaclass=abc.ABCMeta):
    """Base class: ``param_groups``, lazily created ``state``, ``step``, ``zero_grad``, state dicts.

    Args:
        params: an iterable of Parameters, or of dicts (param groups) with a
            ``"params"`` entry and optional per-group hyperparameters.
        defaults: the hyperparameters a group takes when it does not set them.
    """

    _kind = ""           # the C++ update: "sgd", "adagrad", "rmsprop", "adam"
    _counts_steps = True  # keeps state["step"] (SGD does not)

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}
        self.param_groups: list = []
        self._plans: dict = {}  # id(group) -> _Plan
        self._hypers: dict = {}  # id(group) -> (values, _core.OptimHyper)
        if isinstance(params, (Parameter, np.ndarray, dict)):
            raise TypeError(f"{type(self).__name__}: params: expected an iterable of Parameters or dicts, "
                            f"got {type(params).__name__}")
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{type(self).__name__}: params: expected an ordered iterable (a set has no fixed "
                            "order, so state dicts would not match)")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: params: expected at least one Parameter, got an empty list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- hooks for subclasses ----------------------------------------------
    def _validate(self, group: dict) -> None:
        """Raise ValueError/TypeError for a bad hyperparameter of ``group``."""
        check_nonneg(type(self).__name__, "lr", group["lr"])
        check_nonneg(type(self).__name__, "weight_decay", group["weight_decay"])
        check_nonneg(type(self).__name__, "l1", group["l1"])

    @abc.abstractmethod
    def _slots(self, group: dict) -> tuple:
        """Three entries, the C++ state slots: (state key, initial fill or None for empty) or None."""

    @abc.abstractmethod
    def _rule_hyper(self, group: dict) -> dict:
        """The update rule's own fields of ``_core.OptimHyper`` by name (besides lr, weight_decay, l1)."""

    def _hyper(self, group: dict) -> "_core.OptimHyper":
        """The C++ hyperparameters of ``group``, by name; rebuilt only when one of them changed
        (building one costs more than comparing them)."""
        values = dict(kind=self._kind, lr=group["lr"], weight_decay=group["weight_decay"], l1=group["l1"],
                      **self._rule_hyper(group))
        cached = self._hypers.get(id(group))
        if cached is None or cached[0] != values:
            cached = self._hypers[id(group)] = (values, _core.OptimHyper(**values))
        return cached[1]

    # -- groups ------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters (a dict with "params" and optional hyperparameters)."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}: param_group: expected a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        if "params" not in group:
            raise ValueError(f"{name}: param_group: expected a 'params' entry, got keys {sorted(group)}")
        params = group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(f"{name}: params: expected an ordered iterable of Parameters, got a set")
        else:
            params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"{name}: params[{i}]: expected a gk.nn.Parameter, got {type(p).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids) or seen.intersection(ids):
            raise ValueError(f"{name}: params: expected each Parameter in one group once, got a Parameter twice")
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._validate(group)
        self.param_groups.append(group)

    # -- the update ----------------------------------------------------------
    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (in place)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.fill(0)

    def step(self, closure=None):
        """One update of every parameter with a gradient; returns ``closure()`` if given.

        All param groups go to one C++ call: every array is checked first (on an
        error nothing changes), then all tensors are updated in one parallel region.
        """
        loss = None
        if closure is not None:
            loss = closure()
        counts = self._counts_steps
        plans, calls, all_steps = [], [], []
        for group in self.param_groups:
            c = self._group_plan(group)
            if not c.args[0]:
                continue
            steps = [st["step"] + 1.0 for st in c.entries] if counts else c.steps
            plans.append(c)
            all_steps.append(steps)
            calls.append((self._hyper(group), *c.args, steps))
        if not calls:
            return loss
        _core.optim_step(calls)
        # Commit the state only after a successful update.
        for c, steps in zip(plans, all_steps):
            if c.pending:
                for st, key, a in c.pending:
                    st[key] = a
                c.pending = None
            if counts:
                for st, step in zip(c.entries, steps):
                    st["step"] = step
            else:
                c.steps = [2.0] * len(steps)  # SGD: the momentum buffers are initialised from now on
        return loss

    def _group_plan(self, group: dict) -> "_Plan":
        slots = self._slots(group)
        params = group["params"]
        datas = [p.data for p in params]  # read fresh: a module's .to(dtype) rebinds them
        grads = [p.grad for p in params]
        c = self._plans.get(id(group))
        if (c is None or c.slots != slots or c.state is not self.state or c.nstate != len(self.state)
                or len(c.datas) != len(datas) or not all(map(is_, datas, c.datas))
                or not all(map(is_, grads, c.grads))):
            c = self._plans[id(group)] = self._plan(params, slots, datas, grads)
        return c

    def _plan(self, params, slots, datas, grads) -> "_Plan":
        """Create or fix the state of every parameter with a gradient and collect the
        argument lists of the C++ call. Reused while no parameter's data or grad is rebound."""
        lists = [None if s is None else [] for s in slots]
        call_params, call_grads, entries, steps, pending = [], [], [], [], []
        state = self.state
        for p, d, g in zip(params, datas, grads):
            if g is None:
                continue
            st = state.get(p)
            if st is None:
                st = state[p] = {"step": 0.0} if self._counts_steps else {}
            fresh = False
            for k, slot in enumerate(slots):
                if slot is None:
                    continue
                a = st.get(slot[0])
                if a is None or a.dtype != d.dtype or a.shape != d.shape:
                    fresh = fresh or a is None
                    a = self._prepare_slot(st, slot, d)
                    pending.append((st, slot[0], a))
                lists[k].append(a)
            call_params.append(d)
            call_grads.append(g)
            entries.append(st)
            steps.append(1.0 if fresh else 2.0)  # SGD: 1 when the momentum buffer is new (buf = g)
        return _Plan(slots, datas, grads, state, len(state), entries, steps, pending,
                     (call_params, call_grads, lists[0], lists[1], lists[2]))

    def _prepare_slot(self, st: dict, slot: tuple, d: np.ndarray) -> np.ndarray:
        """A new state array (first step), or the existing one cast to the parameter's dtype
        after ``.to(dtype)``; stored in ``st`` by the caller once the update succeeded."""
        key, fill = slot
        a = st.get(key)
        if a is None:
            a = np.empty_like(d) if fill is None else np.full_like(d, fill)
        elif a.shape != d.shape:
            raise ValueError(f"{type(self).__name__}: state '{key}': expected shape {d.shape} (the parameter's), "
                             f"got {a.shape}")
        else:
            a = np.ascontiguousarray(a, dtype=d.dtype)
        return a

    # -- checkpoints -------------------------------------------------------
    def state_dict(self) -> dict:
        """{"state": {index: {key: array copy or scalar}}, "param_groups": [hyperparameters + "params" indices]}.

        Indices number the parameters across groups in order, as PyTorch does.
        """
        index, groups, start = {}, [], 0
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = list(range(start, start + len(group["params"])))
            for i, p in enumerate(group["params"]):
                index[id(p)] = start + i
            start += len(group["params"])
            groups.append(packed)
        state = {}
        for p, st in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state saved by ``state_dict()`` (arrays are copied and
        cast to each parameter's dtype), so that a resumed run continues bit-identically."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"{name}: state_dict: expected a dict with 'state' and 'param_groups', "
                             f"got {type(state_dict).__name__}")
        saved = list(state_dict["param_groups"])
        if len(saved) != len(self.param_groups):
            raise ValueError(f"{name}: state_dict: expected {len(self.param_groups)} parameter groups, got {len(saved)}")
        by_index = {}
        for i, (group, sg) in enumerate(zip(self.param_groups, saved)):
            if len(sg["params"]) != len(group["params"]):
                raise ValueError(f"{name}: state_dict: param_groups[{i}]: expected {len(group['params'])} parameters, "
                                 f"got {len(sg['params'])}")
            for idx, p in zip(sg["params"], group["params"]):
                by_index[int(idx)] = p
        new_state = {}
        for idx, st in state_dict["state"].items():
            p = by_index.get(int(idx))
            if p is None:
                continue
            entry = {}
            for key, value in st.items():
                if key == "step":
                    entry[key] = float(value)
                elif isinstance(value, np.ndarray):
                    if value.shape != p.data.shape:
                        raise ValueError(f"{name}: state_dict: state[{idx}]['{key}']: expected shape {p.data.shape}, "
                                         f"got {value.shape}")
                    entry[key] = np.array(value, dtype=p.data.dtype, order="C", copy=True)
                else:
                    entry[key] = copy.deepcopy(value)
            new_state[p] = entry
        for group, sg in zip(self.param_groups, saved):
            params = group["params"]
            group.clear()
            group.update({k: copy.deepcopy(v) for k, v in sg.items() if k != "params"})
            group["params"] = params
        self.state = new_state
        self._plans.clear()
        self._hypers.clear()

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
