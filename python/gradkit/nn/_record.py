"""Recording a forward pass: the derived backward of forward-only modules, and tracing for export.

A ``Module`` subclass that defines ``forward`` below its ``backward`` in the class hierarchy
(typically: only ``forward``) gets a *derived* backward. While gradients are enabled its forward
runs with a ``Tape`` on this thread's recording stack; every call of a module (through the
forward wrapper in nn/module.py) and of a ``gk.nn.functional`` op made directly by that forward
is appended to the tape as a ``Node``. The called module's own work is not recorded (a
``SUSPENDED`` frame sits on the stack meanwhile); a derived child records on a tape of its own.
``Tape.backward`` replays the nodes in reverse, summing the gradients of values read more than
once (micrograd's and PyTorch autograd's rule), with no topological sort: the recording order is
already one.

Values are tracked by identity: every array the forward receives or a recorded call returns gets
a value id. A recorded call that reads an array with no id (plain NumPy arithmetic on a recorded
value, a fresh array) raises RuntimeError at forward time, unless the array is a parameter or
buffer of the recording module (a constant). Returned arrays are made read-only while grad is
enabled, so an in-place NumPy change of a recorded value raises instead of corrupting a gradient.

A module called twice in one recorded forward (shared weights) keeps one cache, the last call's:
before its second call, the caches of its whole subtree are copied into the first call's node and
put back before that node's backward.

``trace(model, *inputs)`` runs the model once under ``no_grad`` with a ``Tracer`` on the stack:
every call of a module without children and every functional op becomes a node of a ``Graph``
(gk.onnx exports it). Modules with children run their own forward and are traced through.
"""
from __future__ import annotations

import threading

import numpy as np

from .._config import is_grad_enabled, no_grad
from .parameter import Parameter

#: The chains the replay runs as one kernel (batch norm [-> add] -> ReLU): nn/fusion.py registers
#: itself here when imported (``tape_groups(nodes, outputs)``, ``replay_bn_relu(...)``). A
#: registration rather than an import, since fusion sits above the layers and they import this module.
_replay_fusion = None


def register_replay_fusion(fusion) -> None:
    """Let the replay fuse the chains ``fusion`` finds (nn/fusion.py calls this once)."""
    global _replay_fusion
    _replay_fusion = fusion

__all__ = ["trace", "Graph", "Node", "Value", "Param", "Const"]

_state = threading.local()

#: On the stack while a recorded call runs: what that call does inside is not recorded.
SUSPENDED = object()


def current():
    """The innermost frame of this thread's recording stack (a Tape, a Tracer, SUSPENDED) or None."""
    stack = getattr(_state, "stack", None)
    return stack[-1] if stack else None


def _push(frame) -> None:
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(frame)


def _pop() -> None:
    _state.stack.pop()


def tracing() -> bool:
    """True while ``trace`` runs on this thread (Sequential then runs its layers unfused)."""
    return any(isinstance(f, Tracer) for f in getattr(_state, "stack", ()))


def _float_array(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


def _module_path(owner, module) -> str:
    for name, m in owner.named_modules():
        if m is module:
            return name or type(module).__name__
    return type(module).__name__


def _subtree_caches(module) -> list:
    return [(m, m.__dict__.get("_cache")) for m in module.modules()]


# -- the derived backward ----------------------------------------------------------------------------
class Node:
    """One recorded call: a module or a functional op, the value ids it read and returned.

    Tape nodes (``name``: the call's index): ``module`` the called module, or ``fn`` a functional op's ``Function``;
    ``ins`` the value id of each array argument in order (None for a constant: a parameter or
    buffer); ``outs`` the ids of the returned arrays. Graph nodes (``trace``) describe the call
    for export: ``op``, ``module``, ``name``, ``args``, ``kwargs``, ``outputs``.
    """

    __slots__ = ("op", "module", "name", "fn", "ins", "outs", "out_meta", "single_out", "snapshot", "active",
                 "first", "args", "kwargs", "outputs")

    def __init__(self, op, name, module=None, fn=None, ins=(), outs=(), out_meta=(), single_out=True):
        self.op, self.name, self.module, self.fn = op, name, module, fn
        self.ins, self.outs, self.out_meta, self.single_out = list(ins), list(outs), list(out_meta), single_out
        self.snapshot = None
        self.active = self.first = True
        self.args, self.kwargs, self.outputs = (), {}, self.outs

    def __repr__(self) -> str:
        return f"Node({self.op!r}, {self.name!r}, ins={self.ins}, outs={self.outs})"


class _Values:
    """Value ids of the arrays seen by one recording, by identity (the arrays are held, so an id()
    is never reused while the recording runs)."""

    def __init__(self):
        self.by_id = {}   # id(array) -> (value id, array)
        self.meta = {}    # value id -> (shape, dtype)
        self.count = 0

    def new(self, arr) -> int:
        vid = self.count
        self.count += 1
        self.by_id[id(arr)] = (vid, arr)
        self.meta[vid] = (arr.shape, arr.dtype)
        return vid

    def get(self, arr):
        entry = self.by_id.get(id(arr))
        return None if entry is None or entry[1] is not arr else entry[0]


class Tape:
    """The record of one derived module's forward: its inputs, nodes and outputs."""

    def __init__(self, owner, args):
        self.owner = owner
        self.values = _Values()
        self.nodes = []
        self.inputs = [(self.values.get(a) if self.values.get(a) is not None else self.values.new(a))
                       if _float_array(a) else None for a in args]
        self.outputs = []
        self.single_out = True
        self._constants = None

    def wants(self, module) -> bool:
        return module is not self.owner

    # -- forward ------------------------------------------------------------------------------------
    def _constant_ids(self) -> set:
        if self._constants is None:
            ids = set()
            for m in self.owner.modules():
                ids.update(id(p.data) for p in m._parameters.values() if p is not None)
                ids.update(id(b) for b in m._buffers.values() if isinstance(b, np.ndarray))
            self._constants = ids
        return self._constants

    def value_of(self, arr, call):
        """The value id of an array a recorded call reads; None for a constant (parameter or buffer).
        ``call()`` describes the call for the error (built only then: naming a module costs a walk)."""
        vid = self.values.get(arr)
        if vid is not None:
            return vid
        if id(arr) in self._constant_ids():
            return None
        raise RuntimeError(
            f"{type(self.owner).__name__}.forward: {call()} reads an array ({arr.dtype} {arr.shape}) that is not an "
            "input of the forward, the output of a recorded call, or a parameter or buffer of the module: its "
            "gradient cannot be derived. Compute it with a module or a gk.nn.functional op instead of plain NumPy "
            "(or run the forward under gk.no_grad())")

    def _register_outputs(self, out, call):
        """Value ids of what a recorded call returned (an array or a tuple of arrays); read-only from now on."""
        outs = out if isinstance(out, tuple) else (out,)
        vids, meta = [], []
        for o in outs:
            if not _float_array(o):
                raise RuntimeError(f"{type(self.owner).__name__}.forward: {call()} returned "
                                   f"{type(o).__name__}; a recorded call must return float arrays (or a tuple of them)")
            if self.values.get(o) is None:  # a new array: nothing may change it until backward has run
                o.flags.writeable = False
            vids.append(self.values.new(o))
            meta.append((o.shape, o.dtype))
        return vids, meta, not isinstance(out, tuple)

    def call_module(self, module, run, args, kwargs):
        """Run ``module(*args, **kwargs)`` (through ``run``) as one node of this tape."""
        index = len(self.nodes)

        def call():
            return f"call {index} ({_module_path(self.owner, module)}: {type(module).__name__})"
        ins = []  # one per positional argument: a value id, or None (a constant, not an array)
        for i, a in enumerate(args):
            ins.append(self.value_of(a, call) if isinstance(a, np.ndarray) else None)
            if isinstance(a, (list, tuple)) and any(isinstance(e, np.ndarray) for e in a):
                raise RuntimeError(f"{type(self.owner).__name__}.forward: {call()}: argument {i} is a "
                                   f"{type(a).__name__} of arrays; pass each array as an argument of its own")
        for k, a in kwargs.items():
            if isinstance(a, np.ndarray) and self.value_of(a, call) is not None:
                raise RuntimeError(f"{type(self.owner).__name__}.forward: {call()}: keyword argument {k!r} is a "
                                   "recorded array; pass it positionally")
        derived = type(module)._derived_backward
        if not derived and sum(v is not None for v in ins) > 1:
            raise RuntimeError(f"{type(self.owner).__name__}.forward: {call()}: {type(module).__name__} has a "
                               "hand-written backward for one input and is given several recorded arrays")
        first = _note_call(module)
        _push(SUSPENDED)
        try:
            out = run()
        finally:
            _pop()
        outs, meta, single = self._register_outputs(out, call)
        node = Node("module", index, module=module, ins=ins, outs=outs, out_meta=meta, single_out=single)
        node.first = first
        self.nodes.append(node)
        _state.last_call[id(module)] = (module, node)
        return out

    def call_function(self, fn, arrays, call_name: str):
        """Record a functional op: ``fn.forward`` has run; ``arrays`` are the array arguments in order."""
        index = len(self.nodes)

        def call():
            return f"call {index} (F.{call_name})"
        return call, [None if isinstance(a, Parameter) else self.value_of(a, call) for a in arrays]

    def add_function_node(self, fn, call, ins, out):
        outs, meta, single = self._register_outputs(out, call)
        self.nodes.append(Node(fn.name, len(self.nodes), fn=fn, ins=ins, outs=outs, out_meta=meta, single_out=single))

    def finish(self, out):
        """The forward returned ``out``: note its value ids (each must be a recorded value)."""
        outs = out if isinstance(out, tuple) else (out,)
        self.single_out = not isinstance(out, tuple)
        for k, o in enumerate(outs):
            vid = self.values.get(o) if isinstance(o, np.ndarray) else None
            if vid is None:
                what = f"{type(o).__name__}" + (f" {o.dtype} {o.shape}" if isinstance(o, np.ndarray) else "")
                raise RuntimeError(
                    f"{type(self.owner).__name__}.forward: output {k} ({what}) is not an input of the forward or the "
                    "output of a recorded call (a module or a gk.nn.functional op): its gradient cannot be derived")
            self.outputs.append(vid)
        self.values.by_id = None  # the arrays themselves are no longer needed

    # -- backward -----------------------------------------------------------------------------------
    def backward(self, douts, input_grad: bool):
        owner = type(self.owner).__name__
        if len(douts) != len(self.outputs):
            raise ValueError(f"{owner}.backward: expected {len(self.outputs)} output gradient(s) (one per output of "
                             f"forward), got {len(douts)}")
        grads, owned = {}, set()
        for k, (vid, d) in enumerate(zip(self.outputs, douts)):
            if d is None:
                continue
            shape, dtype = self.values.meta[vid]
            if not isinstance(d, np.ndarray):
                raise TypeError(f"{owner}.backward: gradient {k}: expected a numpy.ndarray or None, got {type(d).__name__}")
            if d.shape != shape:
                raise ValueError(f"{owner}.backward: gradient {k}: expected shape {shape} (the output's), got {d.shape}")
            if d.dtype != dtype:
                raise TypeError(f"{owner}.backward: gradient {k}: expected dtype {dtype}, got {d.dtype}")
            _accumulate(grads, owned, vid, d)
        # which values need a gradient: the inputs (when asked) and what a node needing one returns
        needs = set()
        if input_grad:
            needs.update(v for v in self.inputs if v is not None)
        for node in self.nodes:
            node.active = any(v in needs for v in node.ins if v is not None) or _node_trainable(node)
            if node.active:
                needs.update(node.outs)
        hook = getattr(self.owner, "_grads_ready_hook", None)
        fusion = _replay_fusion
        groups = {} if fusion is None else {i: g for i, g in fusion.tape_groups(self.nodes, self.outputs).items()
                                            if g[0].active}
        folded = {n.name for g in groups.values() for n in g[:2] if n is not None}
        for node in reversed(self.nodes):
            if not node.active or node.name in folded:
                continue
            dys = [grads.pop(v, None) for v in node.outs]
            if all(d is None for d in dys):
                continue
            group = groups.get(node.name)
            if group is not None:  # batch norm [-> add] -> relu: one kernel for the chain's backward
                bn_node, add, k = group
                ins = [bn_node.ins[0], None if add is None else add.ins[k]]
                gins = fusion.replay_bn_relu(node, bn_node, dys[0], ins[1] is not None and ins[1] in needs)
                for v, g in zip(ins, gins):
                    if v is not None and v in needs and g is not None:
                        _accumulate(grads, owned, v, g)
                if hook is not None:
                    for n in (node, bn_node):
                        if n.module is not None and n.first:
                            hook([n.module])
                continue
            want = [v is not None and v in needs for v in node.ins]
            if node.module is not None:
                gins = _module_backward(node, dys, want)
            else:
                gins = node.fn.backward([_or_zeros(d, m) for d, m in zip(dys, node.out_meta)], want)
            for v, g, w in zip(node.ins, gins, want):
                if w and g is not None:
                    _accumulate(grads, owned, v, g)
            if hook is not None and node.module is not None and node.first:
                hook([node.module])  # its gradients are final: no earlier call is left to replay
        if not input_grad:
            return None
        dxs = []
        for v in self.inputs:
            if v is None:
                dxs.append(None)
            else:
                g = grads.get(v)
                if g is None:  # the output does not depend on this input
                    shape, dtype = self.values.meta[v]
                    g = np.zeros(shape, dtype)
                dxs.append(g)
        return dxs[0] if len(dxs) == 1 else tuple(dxs)


def _accumulate(grads: dict, owned: set, vid, g) -> None:
    cur = grads.get(vid)
    if cur is None:
        grads[vid] = g
    elif vid in owned:
        cur += g
    else:
        grads[vid] = cur + g
        owned.add(vid)


def _or_zeros(d, meta):
    return d if d is not None else np.zeros(meta[0], meta[1])


def _node_trainable(node) -> bool:
    if node.module is not None:
        return node.module._has_trainable_parameters()
    return node.fn.trainable()


def restore_caches(node) -> None:
    """A module called again later in the recording: put back this call's caches (of its subtree)."""
    if node.snapshot is not None:
        for m, cache in node.snapshot:
            object.__setattr__(m, "_cache", cache)


def _module_backward(node, dys, want):
    """Run a recorded module call's backward; returns one gradient per positional argument."""
    module = node.module
    restore_caches(node)
    input_grad = any(want)
    dys = [_or_zeros(d, m) for d, m in zip(dys, node.out_meta)]
    if getattr(type(module), "_derived_backward", False):
        g = module.backward(*dys, input_grad=input_grad)
        if not input_grad:
            return [None] * len(node.ins)
        return list(g) if len(node.ins) > 1 else [g]
    dy = dys[0] if node.single_out else tuple(dys)
    g = module.backward_maybe_input(dy, input_grad)
    return [g if v is not None else None for v in node.ins]


def _note_call(module) -> bool:
    """Before a module runs in a recording: if it already ran in this recording, keep the earlier
    call's caches (of its whole subtree) in that call's node. Returns True for a first call."""
    last = _state.last_call.get(id(module))
    if last is not None and last[0] is module:
        if last[1].snapshot is None:
            last[1].snapshot = _subtree_caches(module)
        return False
    return True


def run_derived_forward(module, method, args, kwargs):
    """Run a derived module's forward with a tape (grad enabled); keep the tape as its cache."""
    tape = Tape(module, args)
    outermost = not hasattr(_state, "last_call") or _state.last_call is None
    if outermost:
        _state.last_call = {}
    _push(tape)
    try:
        out = method(module, *args, **kwargs)
        tape.finish(out)
    finally:
        _pop()
        if outermost:
            _state.last_call = None
    object.__setattr__(module, "_cache", tape)
    return out


def derived_backward(self, *douts, input_grad: bool = True):
    """Replay the recorded forward in reverse: returns the input gradient(s) (one per positional
    argument of forward, None for non-array ones; a single one unwrapped) and ADDS the parameter
    gradients. ``None`` for an output's gradient means zero. With ``input_grad=False`` only
    parameter gradients are computed and None is returned."""
    tape = self._saved()
    if not isinstance(tape, Tape):
        raise RuntimeError(f"{type(self).__name__}.backward: no recorded forward pass")
    return tape.backward(douts, input_grad)


# -- functional ops -------------------------------------------------------------------------------------
class Function:
    """A functional op with its backward. Subclasses define ``name`` and ``backward(dys, want)``,
    returning one gradient per array argument (``want[i]``: that argument's gradient is needed);
    the forward keeps what backward needs on the instance. A Parameter argument gets its gradient
    ADDED to ``.grad`` by backward (unless frozen), and None is returned for it."""

    name = "function"

    def __init__(self, slots=()):
        self.slots = slots  # per array argument: the Parameter passed there, or None

    def _param(self, i):
        p = self.slots[i] if i < len(self.slots) else None
        return p if p is not None and p.requires_grad else None

    def trainable(self) -> bool:
        return any(self._param(i) is not None for i in range(len(self.slots)))

    def needs(self, i: int, want) -> bool:
        """Argument i's gradient is needed: wanted, or a trainable Parameter's."""
        return bool(want[i]) or self._param(i) is not None

    def grad_buffer(self, i: int):
        """The ``.grad`` of the trainable Parameter passed as argument i (kernels add into it), or None."""
        p = self._param(i)
        return None if p is None else p.grad

    def to_input(self, i: int, want, compute, add_into=None):
        """Argument i's gradient: ``compute()`` if wanted; for a trainable Parameter, added into its
        ``.grad`` (by ``add_into(grad)`` when given) and None returned."""
        p = self._param(i)
        if p is not None:
            if add_into is not None:
                add_into(p.grad)
            else:
                p.grad += compute()
            return None
        return compute() if want[i] else None


def call_function(fn_cls, arrays, kwargs, compute, trace_args=None):
    """Run a functional op; record it on the current tape (or trace) if there is one.

    ``arrays``: the array (or Parameter) arguments in order; ``compute(fn, *datas)`` runs the
    forward on plain arrays, keeping on ``fn`` (a new ``fn_cls``) what backward needs.
    ``trace_args``: the positional arguments as a trace shows them (default ``arrays``)."""
    frame = current()
    datas = [a.data if isinstance(a, Parameter) else a for a in arrays]
    fn = fn_cls(tuple(a if isinstance(a, Parameter) else None for a in arrays))
    if isinstance(frame, Tape) and is_grad_enabled():
        call, ins = frame.call_function(fn, arrays, fn_cls.name)
        out = compute(fn, *datas)
        frame.add_function_node(fn, call, ins, out)
        return out
    out = compute(fn, *datas)
    if isinstance(frame, Tracer):
        frame.function_node(fn_cls.name, arrays if trace_args is None else trace_args, kwargs, out)
    return out


# -- tracing --------------------------------------------------------------------------------------------
class Value:
    """An array of a traced graph, by value id."""

    __slots__ = ("id",)

    def __init__(self, vid):
        self.id = vid

    def __repr__(self) -> str:
        return f"Value({self.id})"


class Param:
    """A Parameter passed to a functional op during a trace."""

    __slots__ = ("param",)

    def __init__(self, param):
        self.param = param

    @property
    def data(self):
        return self.param.data


class Const:
    """A constant array (a module buffer) passed to a functional op during a trace."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data


class Graph:
    """What ``trace`` returns: ``inputs`` and ``outputs`` (value ids), ``values`` (id -> (shape, dtype))
    and ``nodes`` in execution order (see ``Node``)."""

    def __init__(self, inputs, outputs, values, nodes):
        self.inputs, self.outputs, self.values, self.nodes = inputs, outputs, values, nodes

    def __repr__(self) -> str:
        lines = [f"Graph(inputs={self.inputs}, outputs={self.outputs})"]
        lines += [f"  {n.name}: {n.op}({', '.join(map(repr, n.args))}) -> {n.outputs}" for n in self.nodes]
        return "\n".join(lines)


class Tracer:
    """The frame of ``trace``: records leaf-module calls and functional ops as graph nodes."""

    def __init__(self, model):
        self.model = model
        self.values = _Values()
        self.nodes = []
        self.names = {id(m): name for name, m in model.named_modules()}
        self.module_stack = [model]
        self.constants = {}
        for m in model.modules():
            for b in m._buffers.values():
                if isinstance(b, np.ndarray):
                    self.constants[id(b)] = b
            for p in m._parameters.values():
                if p is not None:
                    self.constants[id(p.data)] = p

    def wants(self, module) -> bool:
        """A leaf: no children, and not a derived module (whose functional ops are traced)."""
        return not module._modules and not getattr(type(module), "_derived_backward", False)

    def _name(self, module) -> str:
        return self.names.get(id(module)) or type(module).__name__

    def _arg(self, a, who):
        if isinstance(a, Parameter):
            return Param(a)
        if isinstance(a, np.ndarray):
            vid = self.values.get(a)
            if vid is not None:
                return Value(vid)
            c = self.constants.get(id(a))
            if c is not None:
                return Param(c) if isinstance(c, Parameter) else Const(a)
            raise ValueError(f"export: {who} reads an array ({a.dtype} {a.shape}) that is neither an input, the output "
                             "of a layer or gk.nn.functional op, nor a parameter or buffer: plain NumPy arithmetic in a "
                             "forward has no exportable form")
        if isinstance(a, (list, tuple)) and any(isinstance(e, (np.ndarray, Parameter)) for e in a):
            return [self._arg(e, who) for e in a]
        return a

    def _outputs(self, out, who):
        outs = out if isinstance(out, tuple) else (out,)
        vids = []
        for o in outs:
            if not isinstance(o, np.ndarray):
                raise ValueError(f"export: {who} returned {type(o).__name__}, not an array")
            vids.append(self.values.new(o))
        return vids

    def call_module(self, module, run, args, kwargs):
        who = f"{self._name(module)} ({type(module).__name__})"
        node_args = [self._arg(a, who) for a in args]
        node_kwargs = {k: self._arg(v, who) for k, v in kwargs.items()}
        _push(SUSPENDED)
        try:
            out = run()
        finally:
            _pop()
        node = Node("module", self._name(module), module=module)
        node.args, node.kwargs, node.outputs = node_args, node_kwargs, self._outputs(out, who)
        self.nodes.append(node)
        return out

    def function_node(self, op, arrays, kwargs, out):
        owner = self.module_stack[-1]
        name = f"{self._name(owner)}.{op}" if owner is not self.model else op
        who = f"{name} (F.{op})"
        node = Node(op, name)
        node.args = [self._arg(a, who) for a in arrays]
        node.kwargs = {k: self._arg(v, who) for k, v in kwargs.items()}
        node.outputs = self._outputs(out, who)
        self.nodes.append(node)


def trace(model, *inputs) -> Graph:
    """Run ``model(*inputs)`` once under ``no_grad`` (in its current mode) and return its graph.

    Raises ValueError when the forward computes a value outside modules and functional ops."""
    tracer = Tracer(model)
    in_ids = [tracer.values.new(x) for x in inputs if isinstance(x, np.ndarray)]
    with no_grad():
        _push(tracer)
        try:
            out = model(*inputs)
        finally:
            _pop()
    outs = out if isinstance(out, tuple) else (out,)
    out_ids = []
    for k, o in enumerate(outs):
        vid = tracer.values.get(o) if isinstance(o, np.ndarray) else None
        if vid is None:
            raise ValueError(f"export: output {k} of {type(model).__name__} ({type(o).__name__}) is not produced by a "
                             "layer or a gk.nn.functional op")
        out_ids.append(vid)
    return Graph(in_ids, out_ids, dict(tracer.values.meta), tracer.nodes)


def enter_module(module) -> None:
    """While tracing, a module with children is running its forward (names functional nodes)."""
    frame = current()
    if isinstance(frame, Tracer):
        frame.module_stack.append(module)


def exit_module(module) -> None:
    frame = current()
    if isinstance(frame, Tracer):
        frame.module_stack.pop()
