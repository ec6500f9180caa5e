"""``DistributedDataParallel``: every rank trains a replica; backward averages the gradients.

Gradients live in flat buckets (``p.grad`` is a view into its bucket, as PyTorch's
``gradient_as_bucket_view``), filled in reverse parameter order up to ``bucket_cap_mb``.
During the wrapped model's backward, each ``Sequential`` reports the layers (a fused run
counts as one step) whose backward has just finished; when every gradient of a bucket is final,
its non-blocking reduce-scatter starts and overlaps the rest of the backward pass. When a
reduce-scatter completes (tested between layers, in bucket order), the averaged parts are
gathered back with a non-blocking allgather. Each element is summed on exactly one rank, so
every rank ends with the same bits. Only trainable parameters are bucketed and reduced: a
frozen one (``requires_grad=False``) keeps its ``.grad`` as it is; the buckets are rebuilt
when the set of trainable parameters changes.
"""
from __future__ import annotations

import collections
import os
import time

import numpy as np

from .. import _core
from .._checks import real
from ..nn.container import Sequential
from ..nn.module import Module
from .._mpi import communicator, init, split_counts, state

__all__ = ["DistributedDataParallel"]


def _wait(request) -> None:
    """Wait for an MPI request, giving the CPU away between polls: MPICH's Wait spins, and
    on a machine running more threads than cores that takes time from the rank waited for."""
    while not request.Test():
        os.sched_yield()


class _Bucket:
    """A flat gradient buffer, its parameters (views into it) and this rank's part of the sum."""

    def __init__(self, params, world, rank):
        dtype = params[0].grad.dtype
        self.params = params
        self.flat = np.empty(sum(p.grad.size for p in params), dtype=dtype)
        self.views = []
        offset = 0
        for p in params:
            view = self.flat[offset:offset + p.grad.size].reshape(p.grad.shape)
            view[...] = p.grad
            p.grad = view
            self.views.append(view)
            offset += view.size
        self.counts, self.displs = split_counts(self.flat.size, world)
        self.chunk = np.empty(int(self.counts[rank]), dtype=dtype)
        from mpi4py.util.dtlib import from_numpy_dtype

        self.mpi_type = from_numpy_dtype(dtype)
        self.remaining = 0     # gradients still to finish in this backward
        self.started = False
        self.request = None


def _describe(model):
    """[(kind, name, shape, dtype)] of every parameter and array buffer, to compare across ranks."""
    out = [("parameter" if p.requires_grad else "frozen parameter", name, p.data.shape, p.data.dtype.str)
           for name, p in model.named_parameters()]
    out += [("buffer", name, np.shape(b), np.asarray(b).dtype.str) for name, b in model.named_buffers()]
    return out


def _first_difference(mine, theirs):
    for a, b in zip(mine, theirs):
        if a != b:
            return f"{a[0]} {a[1]!r} has shape {a[2]} dtype {a[3]} on rank 0, but {b[0]} {b[1]!r} shape {b[2]} " \
                   f"dtype {b[3]}"
    longer, shorter = (mine, theirs) if len(mine) > len(theirs) else (theirs, mine)
    extra = longer[len(shorter)]
    where = "rank 0 only" if longer is mine else "that rank only"
    return f"{len(mine)} parameters and buffers on rank 0, {len(theirs)} there ({extra[0]} {extra[1]!r} on {where})"


class DistributedDataParallel(Module):
    """Wrap a model for data-parallel training: one replica per MPI rank.

    Building it joins the job (``gk.distributed.init()``), checks that every rank has the same
    parameter and buffer names, shapes and dtypes (ValueError on every rank otherwise), and
    copies rank 0's parameters, buffers and generator state (so every rank draws the same
    epoch permutation) to all ranks. ``forward`` is the model's; ``backward(dy)`` runs the
    model's backward and leaves every rank with the same gradients: their mean over ranks.

    Args:
        model: the ``gk.nn.Module`` to replicate (``.module``).
        bucket_cap_mb (25): gradient bucket size in MiB; smaller buckets start reducing earlier.

    Each rank's loss must be the mean over its own batch (as gradkit's losses are); with equal
    batches the averaged gradient is that of the mean loss over the combined batch.

    Frozen parameters (``requires_grad=False``) are not reduced; freeze the same parameters on
    every rank (building the wrapper checks that they match, as it does names and shapes).
    """

    _input_grad_optional = True

    def __init__(self, model, bucket_cap_mb=25):
        super().__init__()
        if not isinstance(model, Module):
            raise TypeError(f"DistributedDataParallel: model: expected a gk.nn.Module, got {type(model).__name__}")
        bucket_cap_mb = real("DistributedDataParallel", "bucket_cap_mb", bucket_cap_mb, 0, low_open=True)
        init()
        comm = communicator("DistributedDataParallel")
        self.module = model
        self.bucket_cap_mb = float(bucket_cap_mb)
        descriptions = comm.allgather(_describe(model))
        for r, theirs in enumerate(descriptions):
            if theirs != descriptions[0]:
                raise ValueError(f"DistributedDataParallel: model: rank {r} has a different model than rank 0: "
                                 f"{_first_difference(descriptions[0], theirs)}. Build the same model on every rank.")
        for p in model.parameters():
            comm.Bcast(p.data, root=0)
        for mod in model.modules():
            for name, b in mod.named_buffers(recurse=False):
                if isinstance(b, np.ndarray):
                    comm.Bcast(b, root=0)
                else:
                    setattr(mod, name, comm.bcast(b, root=0))
        seed, offset = comm.bcast(_core.rng_state(), root=0)
        _core.set_rng_state(seed, offset)
        self._world, self._rank = state.world_size, state.rank
        # Two communicators of our own: reduce-scatters start in bucket-ready order, allgathers in
        # completion order; each sequence is the same on every rank, the two interleave differently.
        self._scatter_comm, self._gather_comm = comm.Dup(), comm.Dup()
        self._wait_seconds = 0.0  # time spent blocked on gradient communication (benchmarks read it)
        self._ready, self._scattering, self._gathering = set(), collections.deque(), collections.deque()
        self._build_buckets(self._trainable())

    # -- buckets ----------------------------------------------------------------------------------
    def _trainable(self) -> list:
        return [p for p in self.module.parameters() if p.requires_grad]

    def _build_buckets(self, params) -> None:
        """Group the gradients, in reverse order, into buckets of one dtype up to bucket_cap_mb."""
        cap = self.bucket_cap_mb * 2 ** 20
        groups, current, size = [], [], 0
        for p in reversed(params):
            if current and (size >= cap or p.grad.dtype != current[0].grad.dtype):
                groups.append(current)
                current, size = [], 0
            current.append(p)
            size += p.grad.nbytes
        if current:
            groups.append(current)
        self._buckets = [_Bucket(g, self._world, self._rank) for g in groups]
        self._param_ids = [id(p) for p in params]
        # A parameter shared by several layers is final only after the whole backward.
        owners = collections.Counter(id(p) for m in self.module.modules()
                                     for _, p in m.named_parameters(recurse=False))
        where = {id(p): b for b, bucket in enumerate(self._buckets) for p in bucket.params}
        self._ready_of = {}  # id(layer) -> [(id(param), bucket index)] of its own final gradients
        for m in self.module.modules():
            self._ready_of[id(m)] = [(id(p), where[id(p)]) for p in m.parameters()
                                     if owners[id(p)] == 1 and id(p) in where]
        self._early = [sum(1 for p in bucket.params if owners[id(p)] == 1) for bucket in self._buckets]

    def _buckets_current(self, params) -> bool:
        if self._param_ids != [id(p) for p in params]:
            return False
        return all(p.grad is v for bucket in self._buckets for p, v in zip(bucket.params, bucket.views))

    def _start(self, bucket) -> None:
        bucket.started = True
        bucket.request = self._scatter_comm.Ireduce_scatter(bucket.flat, bucket.chunk, bucket.counts)
        self._scattering.append(bucket)

    def _progress(self, block: bool) -> None:
        """Move finished reduce-scatters (in bucket order) on to their allgather."""
        while self._scattering:
            bucket = self._scattering[0]
            if block:
                _wait(bucket.request)
            elif not bucket.request.Test():
                return
            self._scattering.popleft()
            np.divide(bucket.chunk, self._world, out=bucket.chunk)
            bucket.request = self._gather_comm.Iallgatherv(
                bucket.chunk, [bucket.flat, (bucket.counts, bucket.displs), bucket.mpi_type])
            self._gathering.append(bucket)

    def _grads_ready(self, layers) -> None:
        """The hook of Sequential and derived-backward modules: ``layers`` just finished their backward."""
        for layer in layers:
            for pid, b in self._ready_of.get(id(layer), ()):
                if pid in self._ready:
                    continue
                self._ready.add(pid)
                bucket = self._buckets[b]
                bucket.remaining -= 1
                if bucket.remaining == 0:
                    self._start(bucket)
        self._progress(block=False)

    # -- the computation ----------------------------------------------------------------------------
    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)

    def backward(self, dy, input_grad: bool = True):
        """The model's backward, then the gradients averaged over ranks (same bits on every rank)."""
        params = self._trainable()
        if not self._buckets_current(params):  # grads rebound (.to(dtype)), parameters changed or (un)frozen
            self._build_buckets(params)
        for bucket, early in zip(self._buckets, self._early):
            bucket.remaining, bucket.started = early, False
        self._ready = set()
        self._scattering, self._gathering = collections.deque(), collections.deque()
        hooked = [m for m in self.module.modules() if isinstance(m, Sequential) or type(m)._derived_backward]
        for m in hooked:
            object.__setattr__(m, "_grads_ready_hook", self._grads_ready)
        try:
            dx = self.module.backward_maybe_input(dy, input_grad)
        finally:
            for m in hooked:
                object.__setattr__(m, "_grads_ready_hook", None)
        start = time.perf_counter()
        for bucket in self._buckets:  # shared parameters, layers outside a Sequential: start now
            if not bucket.started:
                self._start(bucket)
        self._progress(block=True)
        for bucket in self._gathering:
            _wait(bucket.request)
        self._wait_seconds += time.perf_counter() - start
        return dx

    def extra_repr(self) -> str:
        return f"world_size={self._world}, bucket_cap_mb={self.bucket_cap_mb:g}"
