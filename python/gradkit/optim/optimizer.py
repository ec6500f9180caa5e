"""``Optimizer``: the base of every gradkit optimizer (PyTorch's interface).

A subclass names its C++ update (``_kind``), its state slots, its
hyperparameter checks and its rule's hyperparameters (``_rule_hyper``, passed
to C++ by name as a ``_core.OptimHyper``, whose ``kind`` is looked up in the one list of
rules, ``GK_OPTIM_RULES`` in cpp/include/gradkit/optim.h); the base keeps ``param_groups`` and ``state``, creates
state lazily on the first step (with the parameter's dtype) and sends every
parameter of every group to ONE C++ call (multi-tensor apply: all tensors in
one parallel region, no per-element work in Python). The argument lists are
prepared once and reused while no parameter's ``data`` or ``grad`` is rebound and no
parameter's ``requires_grad`` changed (one int compared per step). A frozen parameter
(``requires_grad=False``) is left out of the call: no update, no weight decay, no state
created, as PyTorch's optimizers do for a parameter whose grad is None.
"""
from __future__ import annotations

import abc
import copy
import inspect
import numbers
from operator import is_

import numpy as np

from .. import _core
from .._checks import integer, real
from ..nn.parameter import Parameter

__all__ = ["Optimizer"]


class _Plan:
    """The prepared C++ arguments of one param group, valid while the parameters'
    data and grad arrays and the optimizer's state dict are the same objects."""

    __slots__ = ("slots", "datas", "grads", "state", "nstate", "entries", "steps", "pending", "args", "frozen")

    def __init__(self, slots, datas, grads, state, nstate, entries, steps, pending, args):
        self.slots, self.datas, self.grads, self.state, self.nstate = slots, datas, grads, state, nstate
        self.entries, self.steps, self.pending, self.args = entries, steps, pending, args
        self.frozen = Parameter._requires_grad_changes  # re-plan when any requires_grad changes


class Optimizer(metaclass=abc.ABCMeta):
    """Base class: ``param_groups``, lazily created ``state``, ``step``, ``zero_grad``, state dicts.

    Args:
        params: an iterable of Parameters, or of dicts (param groups) with a
            ``"params"`` entry and optional per-group hyperparameters.
        defaults: the hyperparameters a group takes when it does not set them.
    """

    _kind = ""           # the C++ rule's name in GK_OPTIM_RULES (cpp/include/gradkit/optim.h), e.g. "adam"
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
        for key in ("lr", "weight_decay", "l1"):
            real(type(self).__name__, key, group[key], low=0)

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
        """Set every trainable parameter's gradient to zero (in place; frozen ones are left as they are)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.requires_grad:
                    p.grad.fill(0)

    def step(self, closure=None):
        """One update of every trainable parameter; returns ``closure()`` if given.

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
                or c.frozen != Parameter._requires_grad_changes
                or len(c.datas) != len(datas) or not all(map(is_, datas, c.datas))
                or not all(map(is_, grads, c.grads))):
            c = self._plans[id(group)] = self._plan(params, slots, datas, grads)
        return c

    def _plan(self, params, slots, datas, grads) -> "_Plan":
        """Create or fix the state of every trainable parameter and collect the argument lists
        of the C++ call (frozen ones are left out). Reused while no parameter's data or grad is
        rebound and no requires_grad changed."""
        lists = [None if s is None else [] for s in slots]
        call_params, call_grads, entries, steps, pending = [], [], [], [], []
        state = self.state
        for p, d, g in zip(params, datas, grads):
            if g is None or not p.requires_grad:
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
        cast to each parameter's dtype), so that a resumed run continues bit-identically.

        Everything is checked first (the dict's type and keys, that it comes from this
        optimizer's class, the number of groups and of parameters per group, every
        hyperparameter by the constructor's rules, the state's indices, steps, keys,
        shapes and dtypes); on any error (TypeError/ValueError naming the entry) the
        optimizer is left unchanged.
        """
        name = type(self).__name__
        where = f"{name}: load_state_dict: state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{where}: expected a dict (from Optimizer.state_dict()), got {type(state_dict).__name__}")
        keys = set(state_dict)
        if keys != {"state", "param_groups"}:
            raise ValueError(f"{where}: expected the keys ['param_groups', 'state'], got {sorted(map(str, keys))}")
        saved, state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved, (list, tuple)):
            raise TypeError(f"{where}['param_groups']: expected a list of dicts, got {type(saved).__name__}")
        if not isinstance(state, dict):
            raise TypeError(f"{where}['state']: expected a dict, got {type(state).__name__}")
        if len(saved) != len(self.param_groups):
            raise ValueError(f"{where}: expected {len(self.param_groups)} parameter groups, got {len(saved)}")
        by_index, new_groups = {}, []
        for i, (group, sg) in enumerate(zip(self.param_groups, saved)):
            new_groups.append(self._loaded_group(f"{where}['param_groups'][{i}]", group, sg, by_index))
        new_state = {}
        for idx, st in state.items():
            key = self._state_index(f"{where}['state']", idx, len(by_index))
            p, group = by_index[key]
            new_state[p] = self._loaded_state(f"{where}['state'][{idx!r}]", st, p, group)
        # Everything is valid: change all at once.
        for group, new in zip(self.param_groups, new_groups):
            group.clear()
            group.update(new)
        self.state = new_state
        self.forget_plans()
        self._hypers.clear()

    def forget_plans(self) -> None:
        """Drop the prepared argument lists of the fused update (rebuilt at the next step): call it
        after replacing state arrays or undoing a step, whose lists may hold arrays no longer in use."""
        self._plans.clear()

    def _loaded_group(self, where: str, group: dict, sg, by_index: dict) -> dict:
        """The group ``sg`` will become (validated), with this optimizer's parameters; fills
        ``by_index`` (saved index -> (parameter, new group))."""
        if not isinstance(sg, dict):
            raise TypeError(f"{where}: expected a dict, got {type(sg).__name__}")
        if "params" not in sg:
            raise ValueError(f"{where}: expected a 'params' entry (the parameters' indices), got keys "
                             f"{sorted(map(str, sg))}")
        missing = sorted(set(self.defaults) - set(sg))
        if missing:
            raise ValueError(f"{where}: expected {type(self).__name__}'s hyperparameters {sorted(self.defaults)}, "
                             f"got {self._source_of(sg)} (no {missing})")
        indices = sg["params"]
        if not isinstance(indices, (list, tuple)):
            raise TypeError(f"{where}['params']: expected a list of indices, got {type(indices).__name__}")
        if len(indices) != len(group["params"]):
            raise ValueError(f"{where}: expected {len(group['params'])} parameters, got {len(indices)}")
        new = {k: copy.deepcopy(v) for k, v in sg.items() if k != "params"}
        new["params"] = group["params"]
        try:
            self._validate(new)  # the constructor's rules
        except (TypeError, ValueError) as e:
            raise type(e)(f"{where}: {str(e).removeprefix(type(self).__name__ + ': ')}") from None
        for j, (idx, p) in enumerate(zip(indices, group["params"])):
            idx = integer(where, f"params[{j}] (a parameter index)", idx)
            if idx in by_index:
                raise ValueError(f"{where}['params'][{j}]: expected each index once, got {idx} twice")
            by_index[idx] = (p, new)
        return new

    @staticmethod
    def _source_of(sg: dict) -> str:
        """Which optimizer class's hyperparameters ``sg`` holds, for error messages."""
        def subclasses(cls):
            for sub in cls.__subclasses__():
                yield sub
                yield from subclasses(sub)
        for cls in subclasses(Optimizer):
            names = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "params")]
            if names and set(names) <= set(sg):
                return f"the state of {cls.__name__} (keys {sorted(map(str, sg))})"
        return f"keys {sorted(map(str, sg))}"

    @staticmethod
    def _state_index(where: str, idx, count: int) -> int:
        """``idx`` as an int index of a parameter (str digits as gk.load may give), or an error."""
        if isinstance(idx, str) and idx.lstrip("-").isdigit():
            idx = int(idx)
        if isinstance(idx, bool) or not isinstance(idx, numbers.Integral):
            raise TypeError(f"{where}: expected int parameter indices as keys, got {idx!r}")
        if not 0 <= int(idx) < count:
            raise ValueError(f"{where}: expected indices of the {count} parameters (0 to {count - 1}), got {idx}")
        return int(idx)

    def _loaded_state(self, where: str, st, p: Parameter, group: dict) -> dict:
        """A copy of one parameter's saved state, checked against ``p`` and the rule of ``group``."""
        if not isinstance(st, dict):
            raise TypeError(f"{where}: expected a dict, got {type(st).__name__}")
        slots = {slot[0] for slot in self._slots(group) if slot is not None}
        entry = {}
        for key, value in st.items():
            if key == "step" and self._counts_steps:
                step = real(where, "['step']", value, low=0)
                if step != int(step):
                    raise ValueError(f"{where}['step']: expected a whole number >= 0, got {value}")
                entry[key] = step
                continue
            # A state array: this rule's slots, or one kept from other settings (amsgrad turned off).
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                got = f"dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
                raise TypeError(f"{where}[{key!r}]: expected a floating-point numpy array, got {got}")
            if value.shape != p.data.shape:
                raise ValueError(f"{where}[{key!r}]: expected shape {p.data.shape} (the parameter's), got {value.shape}")
            entry[key] = np.array(value, dtype=p.data.dtype, order="C", copy=True)
        if self._counts_steps and "step" not in entry:
            raise ValueError(f"{where}: expected a 'step' entry, got keys {sorted(map(str, entry))}")
        if entry.get("step", 0.0) > 0 and not slots <= set(entry):
            raise ValueError(f"{where}: expected the state arrays {sorted(slots)} after step {entry['step']:g}, "
                             f"got {sorted(k for k in entry if k != 'step')}")
        return entry

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def check_optimizer_of(who, model, optimizer) -> None:
    """TypeError unless ``optimizer`` looks like a gk.optim optimizer; ValueError when it updates
    none of ``model``'s parameters (it was built over another model: training would change nothing)."""
    for attr in ("step", "zero_grad", "param_groups"):
        if isinstance(optimizer, type) or not hasattr(optimizer, attr):
            got = f"the class {optimizer.__name__}" if isinstance(optimizer, type) else type(optimizer).__name__
            raise TypeError(f"{who}: optimizer: expected a gk.optim optimizer instance (e.g. "
                            f"gk.optim.Adam(model.parameters())), got {got}")
    mine = {id(p) for p in model.parameters()}
    theirs = [p for group in optimizer.param_groups for p in group["params"]]
    if mine and theirs and not any(id(p) in mine for p in theirs):
        raise ValueError(f"{who}: optimizer: expected an optimizer over the model's parameters, got one over "
                         f"{len(theirs)} other parameters (another model's?); build it with "
                         "optimizer_class(model.parameters(), ...)")
