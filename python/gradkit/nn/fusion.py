"""Fused runs of layers inside ``Sequential``: the same numbers, fewer passes over memory.

``Sequential.forward`` looks for these runs (exact layer types) and runs each as one kernel call:

- ``BatchNorm2d -> ReLU -> MaxPool2d(2)`` (kernel 2, stride 2, no padding):
  ``ops.batch_norm_relu_pool2_forward``, two passes over the input (statistics, then
  normalise-ReLU-pool) instead of seven; the full-size normalised and activated tensors are
  never written. Backward is one kernel too.
- ``BatchNorm2d -> ReLU`` (any other follower): ``ops.batch_norm_relu_forward``, the ReLU in
  batch norm's output pass (the normalised tensor is never written); backward is one kernel
  (``ops.batch_norm_relu_backward``: the ReLU's gradient taken in batch norm's two passes).
- ``Linear -> ReLU`` and ``Conv2d -> ReLU``: the ReLU applied in the GEMM / convolution output
  pass; backward applies the ReLU's gradient, then the layer's.

Below them: the derived backward's fused replay of ``BatchNorm2d -> [F.add ->] ReLU`` chains
(``tape_groups``) and the fused call gk.models' ResNets make (``batch_norm_relu``); see
docs/design.md, "Fusion".

A frozen (``requires_grad=False``) weight or bias gets no gradient work in a fused backward either.
The layers keep their parameters, buffers and running-statistics updates; the layers whose work
was folded into a neighbour keep no cache of their own (the run's cache lives in the Sequential),
so calling such a layer's backward alone after a fused forward raises the usual "no cached
forward" error.
"""
from __future__ import annotations

import collections
import types

import numpy as np

from .. import ops
from . import _record, functional
from ._record import Function, call_function, restore_caches
from .activation import ReLU
from .conv import Conv2d
from .linear import Linear
from .normalization import BatchNorm2d
from .pooling import MaxPool2d


def _pool2(pool) -> bool:
    return pool._pairs == ((2, 2), (2, 2), (0, 0))  # checked at construction (ops._pool_args)


def _relu_output(relu, y) -> None:
    """What a fused run owes its ReLU after the forward: no cache of its own, the diagnostics hook told."""
    relu._cache = None
    if relu._stats_hook is not None:  # diagnostics (gk.callbacks.ActivationStats)
        relu._stats_hook.forward(relu, y)


def _relu_grad(relu, dy, y):
    """The ReLU's gradient argument checked against its output y, the diagnostics hook told."""
    dy = relu._check_grad(dy, y.shape, y.dtype)
    if relu._stats_hook is not None:
        relu._stats_hook.backward(relu, dy)
    return dy


class _BatchNormReLUPool2:
    """BatchNorm2d -> ReLU -> MaxPool2d(2)."""

    length = 3

    @staticmethod
    def matches(mods) -> bool:
        bn, relu, pool = mods
        return type(bn) is BatchNorm2d and type(relu) is ReLU and type(pool) is MaxPool2d and _pool2(pool)

    @staticmethod
    def fits(x) -> bool:
        return isinstance(x, np.ndarray) and x.ndim == 4 and x.shape[2] >= 2 and x.shape[3] >= 2

    @staticmethod
    def forward(mods, x):
        bn = mods[0]
        x = bn._batched(bn._check_input(x))
        weight = None if bn.weight is None else bn.weight.data
        (y, code, mean, rstd), use_batch_stats = bn._run_kernel(ops.batch_norm_relu_pool2_forward, x, weight,
                                                                bn._bias_data())
        for m in mods:
            m._cache = None
        if mods[1]._stats_hook is not None:  # diagnostics: the ReLU's output, measured from x
            mods[1]._stats_hook.forward_batch_norm_relu(mods[1], x, mean, rstd, weight, bn._bias_data())
        return y, dict(x=x, code=code, mean=mean, rstd=rstd, batch_stats=use_batch_stats, y_shape=y.shape)

    @staticmethod
    def backward(mods, cache, dy, input_grad: bool):
        bn, _, pool = mods
        x = cache["x"]
        dy = pool._check_grad(dy, cache["y_shape"], x.dtype)
        if mods[1]._stats_hook is not None:  # diagnostics: the ReLU's output gradient is dy scattered
            mods[1]._stats_hook.backward_pooled(mods[1], dy, x.size)
        weight, dweight, dbias = bn._affine_args()
        dx = ops.batch_norm_relu_pool2_backward(dy, x, cache["code"], cache["mean"], cache["rstd"], weight, dweight,
                                                dbias, training=cache["batch_stats"])
        return dx if input_grad else None


class _BatchNormReLU:
    """BatchNorm2d -> ReLU (not followed by a 2x2 max-pool: that run is matched first)."""

    length = 2

    @staticmethod
    def matches(mods) -> bool:
        bn, relu = mods
        return type(bn) is BatchNorm2d and type(relu) is ReLU

    @staticmethod
    def fits(x) -> bool:
        return isinstance(x, np.ndarray) and x.ndim == 4  # else the layers run alone, with their own errors

    @staticmethod
    def forward(mods, x):
        bn, relu = mods
        y, cache = bn._relu_forward(x)
        bn._cache = None
        _relu_output(relu, y)
        cache["y"] = y
        return y, cache

    @staticmethod
    def backward(mods, cache, dy, input_grad: bool):
        bn, relu = mods
        y = cache["y"]
        dx, _ = bn._relu_backward(_relu_grad(relu, dy, y), y, cache)
        return dx if input_grad else None


class _LayerReLU:
    """Linear -> ReLU or Conv2d -> ReLU: the ReLU in the layer's output pass."""

    length = 2

    @staticmethod
    def matches(mods) -> bool:
        layer, relu = mods
        return type(layer) in (Linear, Conv2d) and type(relu) is ReLU

    @staticmethod
    def fits(x) -> bool:
        return True  # the layer checks its input itself

    @staticmethod
    def forward(mods, x):
        layer, relu = mods
        y = layer._forward(x, activation="relu")
        _relu_output(relu, y)
        return y, dict(y=y)

    @staticmethod
    def backward(mods, cache, dy, input_grad: bool):
        layer, relu = mods
        y = cache["y"]
        return layer.backward_maybe_input(ops.relu_backward(_relu_grad(relu, dy, y), y), input_grad)


_RUNS = (_BatchNormReLUPool2, _BatchNormReLU, _LayerReLU)

#: False while gk.diagnostics.propagation runs: every layer then runs on its own, so each one's
#: output and gradient can be seen.
enabled = True


def fusable_runs(modules) -> dict:
    """{index of a run's first layer: its kind} for the runs of ``modules`` that can be fused."""
    runs = {}
    if not enabled:
        return runs
    i = 0
    while i < len(modules):
        for kind in _RUNS:
            if i + kind.length <= len(modules) and kind.matches(modules[i:i + kind.length]):
                runs[i] = kind
                i += kind.length
                break
        else:
            i += 1
    return runs


# -- the derived backward's replay (nn/_record.py) ---------------------------------------------------------
def _relu_node(node) -> bool:
    if len(node.ins) != 1 or node.ins[0] is None or not node.single_out:
        return False
    return type(node.module) is ReLU if node.module is not None else type(node.fn) is functional._Relu


def _batch_norm_node(node) -> bool:
    return (type(node.module) is BatchNorm2d and len(node.ins) == 1 and node.ins[0] is not None
            and node.single_out)


def tape_groups(nodes, outputs) -> dict:
    """The ``BatchNorm2d -> [F.add ->] ReLU`` chains of a recorded forward that one kernel can replay
    backward: {index of the ReLU node (an ``nn.ReLU`` call or ``F.relu``): (the batch norm's node,
    the add's node or None, the position of the residual among the add's two arguments)}.

    A chain qualifies only when each value in it is read by the next call alone (no other call
    reads it and the forward does not return it): then the ReLU's gradient is all its input gets,
    the add passes it on unchanged, and the batch norm's backward can take it from the kernel."""
    if not enabled:
        return {}
    producer, readers = {}, collections.Counter(outputs)
    for node in nodes:
        readers.update(v for v in node.ins if v is not None)
        producer.update((v, node) for v in node.outs)

    def sole_producer(v):
        return producer.get(v) if readers[v] == 1 else None
    groups = {}
    for node in nodes:
        if not _relu_node(node):
            continue
        p = sole_producer(node.ins[0])
        if p is None:
            continue
        if _batch_norm_node(p):
            groups[node.name] = (p, None, None)
        elif (type(p.fn) is functional._Add and len(p.ins) == 2 and None not in p.ins
              and all(slot is None for slot in p.fn.slots)):
            for k in (0, 1):
                bn = sole_producer(p.ins[k])
                if bn is not None and _batch_norm_node(bn):
                    groups[node.name] = (bn, p, 1 - k)
                    break
    return groups


def replay_bn_relu(relu_node, bn_node, dy, need_dresidual: bool):
    """The backward of one ``tape_groups`` chain: -> (the batch norm input's gradient, the residual's
    or None); ADDS the batch norm's parameter gradients."""
    if relu_node.module is not None:
        relu = relu_node.module
        restore_caches(relu_node)
        y = relu._saved()["saved"]
        if relu._stats_hook is not None:  # diagnostics: the ReLU's incoming gradient
            relu._stats_hook.backward(relu, dy)
    else:
        y = relu_node.fn.saved[0]
    restore_caches(bn_node)
    bn = bn_node.module
    return bn._relu_backward(dy, y, bn._saved(), need_dresidual=need_dresidual)


_record.register_replay_fusion(types.SimpleNamespace(tape_groups=tape_groups, replay_bn_relu=replay_bn_relu))


# -- a recorded forward that asks for the fused call (gk.models' ResNets) ---------------------------------
class _BatchNormReLUFunction(Function):
    """``relu(bn(x) [+ residual])`` as one recorded call; arguments: x, [residual,] the batch norm's
    weight and bias Parameters (their gradients are added by the kernel, unless frozen)."""

    name = "batch_norm_relu"

    def backward(self, dys, want):
        relu, has_residual = self.relu, self.residual
        if relu is not None and relu._stats_hook is not None:
            relu._stats_hook.backward(relu, dys[0])
        dx, dres = self.bn._relu_backward(dys[0], self.y, self.cache, need_dresidual=has_residual and want[1])
        grads = [dx if want[0] else None] + ([dres] if has_residual else [])
        return grads + [None] * (len(want) - len(grads))


def batch_norm_relu(bn, relu, x, residual=None):
    """``relu(bn(x))``, or ``relu(F.add(bn(x), residual))``, in one kernel forward and one backward.

    For a forward that knows the batch norm's output is read by nothing else (gk.models' ResNets
    call it; a recorded forward cannot know that of a user's ``bn(x)`` call, so it fuses only the
    backward of such chains: ``tape_groups``). ``relu`` is an ``nn.ReLU`` (its diagnostics hook is
    told) or None for ``F.relu``. Under a recording the call is one node (a functional op: the
    batch norm's parameters get their gradients there; gk.distributed reduces them after the
    backward rather than early). Runs the plain calls instead while tracing (the exported graph
    shows each layer), with fusion off (diagnostics, profiles) or for other layer types.
    """
    if (not enabled or _record.tracing() or type(bn) is not BatchNorm2d
            or not (relu is None or type(relu) is ReLU)):
        h = bn(x)
        if residual is not None:
            h = functional.add(h, residual)
        return functional.relu(h) if relu is None else relu(h)
    params = [p for p in (bn.weight, bn.bias) if p is not None]
    arrays = [x] + ([] if residual is None else [residual]) + params

    def compute(fn, x, *rest):
        fn.y, fn.cache = bn._relu_forward(x, None if residual is None else rest[0])
        fn.bn, fn.relu, fn.residual = bn, relu, residual is not None
        if relu is not None and relu._stats_hook is not None:  # diagnostics (gk.callbacks.ActivationStats)
            relu._stats_hook.forward(relu, fn.y)
        return fn.y
    return call_function(_BatchNormReLUFunction, arrays, {}, compute)
