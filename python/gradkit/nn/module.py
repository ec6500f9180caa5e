"""``Module``: the base of every layer and loss.

A module owns Parameters, buffers (running statistics) and child modules,
registered by attribute assignment as in PyTorch. ``forward`` caches what
``backward`` needs (nothing under ``gk.no_grad()``); ``backward(dy)`` returns
the input gradient and ADDS parameter gradients into ``Parameter.grad``.
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict

import numpy as np

from .._checks import instance
from .._config import is_grad_enabled
from . import _record
from .parameter import Parameter, _FLOAT_DTYPES


class _CallGuard:
    """A re-entrant lock marking a module as mid-forward/backward on one thread. Copies and
    pickles of a module get a fresh, free guard."""

    __slots__ = ("lock",)

    def __init__(self):
        self.lock = threading.RLock()

    def __reduce__(self):
        return (_CallGuard, ())


def _one_thread_at_a_time(method, name: str):
    """Wrap ``forward`` / ``backward``: a call entering a module that another thread is running
    raises RuntimeError (its cache would mix the two threads' batches). One non-blocking
    acquire of a re-entrant lock per call: nested and recursive calls on one thread pass."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        guard = self.__dict__.get("_call_guard")
        if guard is None:  # Module.__init__ not run yet
            return method(self, *args, **kwargs)
        if not guard.lock.acquire(blocking=False):
            raise RuntimeError(
                f"{type(self).__name__}.{name}: the module is running forward or backward on another thread; "
                "a module keeps one call's cache, so use one model per thread (e.g. copy.deepcopy(model))")
        try:
            return method(self, *args, **kwargs)
        finally:
            guard.lock.release()
    guarded._one_thread_at_a_time = True
    return guarded


def _recorded_forward(method):
    """Wrap ``forward`` (already guarded): inside a recording (nn/_record.py) the call becomes a node
    of the recording module's tape or of a trace; a derived-backward module records its own forward
    while grad is enabled."""
    @functools.wraps(method)
    def forward(self, *args, **kwargs):
        frame = _record.current()
        if frame is None:
            if type(self)._derived_backward and is_grad_enabled():
                return _record.run_derived_forward(self, method, args, kwargs)
            return method(self, *args, **kwargs)
        if frame is not _record.SUSPENDED and frame.wants(self):
            return frame.call_module(self, lambda: forward_unrecorded(self, args, kwargs), args, kwargs)
        return forward_unrecorded(self, args, kwargs)

    def forward_unrecorded(self, args, kwargs):
        frame = _record.current()
        if type(self)._derived_backward and is_grad_enabled() and not (
                isinstance(frame, _record.Tape) and frame.owner is self):
            return _record.run_derived_forward(self, method, args, kwargs)
        if isinstance(frame, _record.Tracer) and self._modules:
            frame.module_stack.append(self)
            try:
                return method(self, *args, **kwargs)
            finally:
                frame.module_stack.pop()
        return method(self, *args, **kwargs)

    forward._one_thread_at_a_time = True
    return forward


def _derives_backward(cls) -> bool:
    """True when ``cls`` has a forward and no backward of its own kind: the backward it would
    inherit is Module's (none), a derived one, or that of a container whose backward only fits its
    own forward (``_backward_fits_own_forward``, e.g. a Sequential subclass redefining forward)."""
    fwd = next(c for c in cls.__mro__ if "forward" in c.__dict__)
    bwd = next(c for c in cls.__mro__ if "backward" in c.__dict__)
    if fwd is Module:
        return False
    if bwd is Module or getattr(bwd.__dict__["backward"], "_derived", False):
        return True
    return fwd is not bwd and issubclass(fwd, bwd) and bwd.__dict__.get("_backward_fits_own_forward", False)


def _derived_backward_method():
    def backward(self, *douts, input_grad: bool = True):
        return _record.derived_backward(self, *douts, input_grad=input_grad)
    backward.__doc__ = _record.derived_backward.__doc__
    guarded = _one_thread_at_a_time(backward, "backward")
    guarded._derived = True
    return guarded


class Module:
    """Base class of layers, containers and losses.

    A module runs one forward or backward at a time: a call from a second thread while
    another thread is inside it raises RuntimeError (see ``_one_thread_at_a_time``).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        method = cls.__dict__.get("backward")
        if callable(method) and not getattr(method, "_one_thread_at_a_time", False):
            cls.backward = _one_thread_at_a_time(method, "backward")
        method = cls.__dict__.get("forward")
        if callable(method) and not getattr(method, "_one_thread_at_a_time", False):
            cls.forward = _recorded_forward(_one_thread_at_a_time(method, "forward"))
        cls._derived_backward = _derives_backward(cls)
        if cls._derived_backward:
            if "backward" not in cls.__dict__:
                cls.backward = _derived_backward_method()
            cls._input_grad_optional = True

    #: True for a subclass whose backward is derived from its recorded forward (nn/_record.py).
    _derived_backward = False

    #: True when ``backward(dy, input_grad=False)`` is accepted: the module then only adds its
    #: parameter gradients and returns None, skipping the input-gradient work (as PyTorch does
    #: for an input that does not require grad, e.g. the first layer of a model).
    _input_grad_optional = False

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_cache", None)
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_call_guard", _CallGuard())

    # -- registration ------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before assigning attributes")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, (Parameter, Module)):
            for registry in (params, buffers, modules):
                registry.pop(name, None)
            self.__dict__.pop(name, None)
            (params if isinstance(value, Parameter) else modules)[name] = value
        elif name in buffers:
            buffers[name] = value
        elif (name in params or name in modules) and value is not None:
            kind = "Parameter" if name in params else "Module"
            raise TypeError(f"{type(self).__name__}.{name}: expected a {kind} or None, got {type(value).__name__}")
        elif name in params:
            params[name] = None
        elif name in modules:
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array) -> None:
        """Register a non-trainable array (e.g. running_mean) saved in state_dict; None is allowed."""
        for registry in (self._parameters, self._modules):
            registry.pop(name, None)
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    def register_parameter(self, name: str, param) -> None:
        """Register a Parameter under ``name``; None keeps the slot (e.g. ``bias=False``)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: param: expected a gk.nn.Parameter or None, "
                            f"got {type(param).__name__}")
        for registry in (self._buffers, self._modules):
            registry.pop(name, None)
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def add_module(self, name: str, module: "Module") -> None:
        if not isinstance(module, Module):
            raise TypeError(f"add_module: module: expected a gk.nn.Module, got {type(module).__name__}")
        for registry in (self._parameters, self._buffers):
            registry.pop(name, None)
        self.__dict__.pop(name, None)
        self._modules[name] = module

    # -- the computation ---------------------------------------------------
    def forward(self, *inputs):
        raise TypeError(f"{type(self).__name__} does not define forward()")

    def backward(self, dy):
        raise TypeError(f"{type(self).__name__} does not define backward()")

    def _has_parameters(self) -> bool:
        return any(p is not None for m in self.modules() for p in m._parameters.values())

    def _has_trainable_parameters(self) -> bool:
        """True when a parameter of this module or a descendant has requires_grad."""
        return any(p is not None and p.requires_grad for m in self.modules() for p in m._parameters.values())

    # -- forward caches ------------------------------------------------------
    def saved_caches(self) -> list:
        """(module, forward cache) of this module and every descendant: what their ``backward``
        would read. ``restore_caches`` puts them back after work that replaces or drops them
        (a diagnostic forward, an export trace, a copy made without them)."""
        return [(m, m._cache) for m in self.modules()]

    @staticmethod
    def restore_caches(saved) -> None:
        """Put back the caches ``saved_caches`` returned."""
        for m, cache in saved:
            object.__setattr__(m, "_cache", cache)

    def clear_caches(self) -> None:
        """Drop the forward cache of this module and every descendant (their backward then raises
        until the next forward)."""
        for m in self.modules():
            object.__setattr__(m, "_cache", None)

    def backward_maybe_input(self, dy, input_grad: bool):
        """``backward(dy)``, or ``backward(dy, input_grad=False)`` when the input gradient is not
        wanted and the module can skip it (then None comes back)."""
        if not input_grad and self._input_grad_optional:
            return self.backward(dy, input_grad=False)
        return self.backward(dy)

    def __call__(self, *inputs, **kwargs):
        return self.forward(*inputs, **kwargs)

    # -- helpers for subclasses ---------------------------------------------
    def _save_for_backward(self, **saved) -> None:
        """Keep what backward needs, unless gradients are disabled (then keep nothing)."""
        self._cache = saved if is_grad_enabled() else None

    def _saved(self) -> dict:
        """The cache of the last forward; RuntimeError if there is none."""
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward: no cached forward pass (forward was never called, "
                "or ran under gk.no_grad())")
        return self._cache

    def _param_dtype(self):
        """The dtype of this module's own parameters (None if it has none)."""
        for p in self._parameters.values():
            if p is not None:
                return p.data.dtype
        return None

    def _check_input(self, x, name: str = "input", ndim=None) -> np.ndarray:
        """Check that x is a float ndarray matching the parameters' dtype (and rank)."""
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{type(self).__name__}: {name}: expected a numpy.ndarray, got {type(x).__name__}")
        expected = self._param_dtype()
        if expected is not None and x.dtype != expected:
            raise TypeError(f"{type(self).__name__}: {name}: expected dtype {expected} (the parameters' dtype), "
                            f"got {x.dtype}")
        if expected is None and x.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}: {name}: expected dtype float32 or float64, got {x.dtype}")
        if ndim is not None:
            allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
            if x.ndim not in allowed:
                want = " or ".join(f"{n}-D" for n in allowed)
                raise ValueError(f"{type(self).__name__}: {name}: expected a {want} array, "
                                 f"got {x.ndim}-D of shape {x.shape}")
        return x

    def _check_grad(self, dy, shape, dtype) -> np.ndarray:
        """Check that the incoming gradient has the forward output's shape and dtype."""
        if not isinstance(dy, np.ndarray):
            raise TypeError(f"{type(self).__name__}.backward: dy: expected a numpy.ndarray, got {type(dy).__name__}")
        if dy.shape != tuple(shape):
            raise ValueError(f"{type(self).__name__}.backward: dy: expected shape {tuple(shape)} "
                             f"(the output's), got {dy.shape}")
        if dy.dtype != dtype:
            raise TypeError(f"{type(self).__name__}.backward: dy: expected dtype {dtype}, got {dy.dtype}")
        return dy

    # -- traversal -----------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        """(dotted name, module) for this module and every descendant, depth first."""
        out = [(prefix, self)]
        for name, child in self._modules.items():
            if child is not None:
                out.extend(child.named_modules(f"{prefix}.{name}" if prefix else name))
        return out

    def modules(self):
        return [m for _, m in self.named_modules()]

    def children(self):
        return [m for m in self._modules.values() if m is not None]

    def named_children(self):
        """(name, module) of the direct children."""
        return [(name, m) for name, m in self._modules.items() if m is not None]

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """(dotted name, Parameter) pairs, e.g. ``2.block.0.weight``; shared parameters once.
        ``recurse=False``: this module's own parameters only."""
        seen, out = set(), []
        for mod_name, mod in (self.named_modules(prefix) if recurse else [(prefix, self)]):
            for name, p in mod._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    out.append((f"{mod_name}.{name}" if mod_name else name, p))
        return out

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        """(dotted name, buffer) pairs of the buffers that are set (not None).
        ``recurse=False``: this module's own buffers only; assign ``module.<name> = value`` to replace one."""
        out = []
        for mod_name, mod in (self.named_modules(prefix) if recurse else [(prefix, self)]):
            for name, b in mod._buffers.items():
                if b is not None:
                    out.append((f"{mod_name}.{name}" if mod_name else name, b))
        return out

    def zero_grad(self) -> None:
        """Set the gradient of every trainable parameter to zero (frozen ones are left as they are)."""
        for p in self.parameters():
            if p.requires_grad:
                p.grad.fill(0)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Freeze (False) or unfreeze (True) every parameter of this module and its descendants.

        A frozen parameter gets no gradient (its ``.grad`` is left as it is, and the layers skip
        that work: a frozen first layer's backward is not run at all) and optimizers leave it
        untouched. Returns the module, so ``model.features.requires_grad_(False)`` chains.
        """
        instance(f"{type(self).__name__}.requires_grad_", "requires_grad", requires_grad, bool, "a bool")
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    # -- state -----------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """name -> copy of every parameter and buffer (PyTorch's names and order)."""
        out = OrderedDict()
        for mod_name, mod in self.named_modules():
            for registry in (mod._parameters, mod._buffers):
                for name, value in registry.items():
                    if value is None:
                        continue
                    arr = value.data if isinstance(value, Parameter) else value
                    out[f"{mod_name}.{name}" if mod_name else name] = np.array(arr, copy=True)
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy arrays into parameters and buffers in place (cast to their dtype); shapes must match.

        Raises RuntimeError (as PyTorch) for missing or unexpected keys (when strict), ValueError for a
        shape mismatch and TypeError for a non-numeric value. All or nothing: every
        entry is checked before anything is written.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"load_state_dict: state_dict: expected a dict of arrays, got {type(state_dict).__name__}")
        targets = OrderedDict()
        for mod_name, mod in self.named_modules():
            for registry in (mod._parameters, mod._buffers):
                for name, value in registry.items():
                    if value is not None:
                        targets[f"{mod_name}.{name}" if mod_name else name] = (mod, registry, name)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in targets]
        if strict and (missing or unexpected):
            raise RuntimeError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        updates = []
        for key, (mod, registry, name) in targets.items():
            if key not in state_dict:
                continue
            current = registry[name]
            value = state_dict[key]
            value = np.asarray(value.data if isinstance(value, Parameter) else value)
            if value.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: {key}: expected a numeric array, got dtype {value.dtype}")
            current_arr = current.data if isinstance(current, Parameter) else current
            if not isinstance(current_arr, np.ndarray):  # a scalar buffer: replaced, keeping its type
                if value.ndim != 0:
                    raise ValueError(f"load_state_dict: {key}: expected shape (), got {value.shape}")
                updates.append((registry, name, type(current_arr)(value.item())))
                continue
            if value.shape != current_arr.shape:
                raise ValueError(f"load_state_dict: {key}: expected shape {current_arr.shape}, got {value.shape}")
            if current_arr.dtype.kind in "biu" and value.dtype.kind == "f":
                raise TypeError(f"load_state_dict: {key}: expected an integer array (dtype {current_arr.dtype}), "
                                f"got dtype {value.dtype}")
            updates.append((current_arr, None, value))
        for target, name, value in updates:
            if name is None:
                np.copyto(target, value, casting="unsafe")
            else:
                target[name] = value

    def to(self, dtype) -> "Module":
        """Convert every parameter (data and grad) and floating buffer to dtype, in place."""
        dtype = np.dtype(dtype)
        if dtype not in _FLOAT_DTYPES:
            raise TypeError(f"to: dtype: expected float32 or float64, got {dtype}")
        for mod in self.modules():
            for p in mod._parameters.values():
                if p is not None:
                    p._set_dtype(dtype)
            for name, b in mod._buffers.items():
                if isinstance(b, np.ndarray) and b.dtype in _FLOAT_DTYPES:
                    mod._buffers[name] = b.astype(dtype)
            object.__setattr__(mod, "_cache", None)
        return self

    def double(self) -> "Module":
        return self.to(np.float64)

    def float(self) -> "Module":
        return self.to(np.float32)

    # -- printing ----------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        if not self._modules:
            return f"{type(self).__name__}({extra})"
        lines = [f"{type(self).__name__}({extra}" if extra else f"{type(self).__name__}("]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        lines.append(")")
        return "\n".join(lines)
