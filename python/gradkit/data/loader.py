"""``DataLoader``: batches from a dataset, shuffled by ``gk.manual_seed``, prepared on background threads.

Per epoch (one ``iter(loader)``), in the main thread and in this order: the shuffle
permutation (if shuffling), then one key for the epoch's augmentation (if the transform
is a gk.data transform; any other callable runs as is, and should not draw from gk's
generator if the batches are to be the same for any num_workers). Batch b takes the samples ``indices[b*bs:(b+1)*bs]`` and augments with
Philox stream (key, b), so the batches are the same for any ``num_workers``. Workers
never draw from the global generator, and dropout draws in the main thread stay
deterministic. Kernels release the GIL, so threads overlap preparation with compute.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from .. import _random
from .._checks import boolean, integer
from .dataset import ArrayDataset, _is_batch_wise, fetch, gather
from .transforms import Transform, draw_key

__all__ = ["DataLoader", "EpochPlan"]


class EpochPlan(NamedTuple):
    """One epoch's draws: ``order``, the dataset index of each sample in turn (the shuffle
    permutation, or arange), and ``key``, the augmentation key (None without a gk.data transform).
    A plan may be cut before its batches are taken (``plan._replace(order=...)``): the Trainer
    keeps one rank's share of it."""
    order: np.ndarray
    key: object = None


class DataLoader:
    """Iterate over a dataset in batches: ``for x, y in loader``.

    Args:
        dataset: ``gk.data.ArrayDataset`` or any object with ``__len__`` and ``__getitem__``
            (batch-wise: ``ds[index_array]`` returns a tuple of arrays; per-sample:
            ``ds[i]`` returns a tuple, collated by stacking).
        batch_size (32): samples per batch.
        shuffle (False): a new permutation every epoch, from ``gk.manual_seed``.
        drop_last (False): drop the last batch when it is smaller than batch_size.
        transform (None): applied to the first array of each batch (e.g.
            ``gk.data.Compose([...])``, or any callable batch -> batch).
        num_workers (0): background threads preparing batches (0: in the caller's thread).
        prefetch (2): batches prepared ahead of the one in use (with num_workers > 0).

    ``len(loader)`` is the number of batches per epoch. Memory is O(prefetch * batch).
    """

    def __init__(self, dataset, batch_size=32, shuffle=False, drop_last=False, transform=None, num_workers=0,
                 prefetch=2):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader: dataset: expected an object with __len__ and __getitem__, "
                            f"got {type(dataset).__name__}")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform: expected a callable or None, got {type(transform).__name__}")
        self.dataset = dataset
        self.batch_size = integer("DataLoader", "batch_size", batch_size, 1)
        self.shuffle = boolean("DataLoader", "shuffle", shuffle)
        self.drop_last = boolean("DataLoader", "drop_last", drop_last)
        self.transform = transform
        self.num_workers = integer("DataLoader", "num_workers", num_workers, 0)
        self.prefetch = integer("DataLoader", "prefetch", prefetch, 1)
        self._batch_wise = len(dataset) > 0 and _is_batch_wise(dataset)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Samples per epoch (all of them, or the whole batches when drop_last)."""
        return min(len(self) * self.batch_size, len(self.dataset))

    def __iter__(self):
        return self.batches(self.plan_epoch())

    # -- an epoch in two steps: its draws, then its batches (what the Trainer uses) ---------------
    def plan_epoch(self) -> EpochPlan:
        """Draw the epoch, in the calling thread: the shuffle permutation (if shuffling), then the
        augmentation key (if the transform is a gk.data transform). ``iter(loader)`` is
        ``loader.batches(loader.plan_epoch())``."""
        n = len(self.dataset)
        order = _random.permutation(n) if self.shuffle else np.arange(n, dtype=np.int64)
        key = draw_key() if isinstance(self.transform, Transform) else None
        return EpochPlan(order, key)

    def num_batches(self, plan: EpochPlan) -> int:
        """The batches of ``plan`` (of its order's length; the last one dropped when short and drop_last)."""
        m = len(plan.order)
        return m // self.batch_size if self.drop_last else -(-m // self.batch_size)

    def batch_indices(self, plan: EpochPlan, b: int) -> np.ndarray:
        """The dataset indices of the samples in batch b of ``plan``: row j of the batch is sample
        ``batch_indices(plan, b)[j]`` of the dataset."""
        return plan.order[b * self.batch_size:(b + 1) * self.batch_size]

    def _batch(self, plan, b: int, nthreads: int, reused=None):
        idx = self.batch_indices(plan, b)
        batch = reused.take(idx) if reused is not None else fetch(self.dataset, idx, self._batch_wise, nthreads)
        if self.transform is not None:
            x = batch[0]
            x = self.transform.apply_keyed(x, plan.key, b, 0, nthreads) if plan.key is not None else self.transform(x)
            batch = (x,) + tuple(batch[1:])
        return batch

    def batches(self, plan: EpochPlan, start_batch: int = 0, reuse_buffers: bool = False):
        """Iterator over batches start_batch.. of ``plan`` (from ``plan_epoch``), in its order.

        A child process fork()ed mid-epoch that goes on with the iterator prepares the rest
        of the epoch in its own thread (the parent's workers do not exist there): the same
        batches, as num_workers=0 would give them.

        reuse_buffers (False): for an ``ArrayDataset`` with num_workers=0, gather every batch into
            the same arrays (a batch is valid until the next one is taken), or, when the plan is
            in order (not shuffled) over C-contiguous arrays, give views of them: no allocation or
            copy per batch beyond the gather. The Trainer trains on arrays this way. The values
            are the same.
        """
        nbatches = self.num_batches(plan)
        if reuse_buffers:
            if self.num_workers != 0 or not isinstance(self.dataset, ArrayDataset):
                raise ValueError(f"DataLoader.batches: reuse_buffers: expected an ArrayDataset and num_workers=0, "
                                 f"got {type(self.dataset).__name__} and num_workers={self.num_workers}")
            reused = _ReusedBatch(self.dataset.arrays, plan.order, min(self.batch_size, len(plan.order)))
            for b in range(start_batch, nbatches):
                yield self._batch(plan, b, 0, reused)
            return
        if self.num_workers == 0:
            for b in range(start_batch, nbatches):
                yield self._batch(plan, b, 0)
            return
        # Kernels in workers run on one thread each: the workers are the parallelism, and the
        # main thread's kernels keep the global thread count.
        pool = ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="gk-data")
        pending = deque()
        pid = os.getpid()
        b = start_batch
        try:
            while b < nbatches and os.getpid() == pid:
                while b + len(pending) < nbatches and len(pending) < self.prefetch:
                    pending.append(pool.submit(self._batch, plan, b + len(pending), 1))
                yield pending.popleft().result()
                b += 1
        finally:
            # In a forked child the futures and the pool's queue belong to threads that are gone
            # (their locks may be held forever): leave them untouched.
            if os.getpid() == pid:
                for future in pending:
                    future.cancel()
                pool.shutdown(wait=True)
        for b in range(b, nbatches):  # only in a forked child
            yield self._batch(plan, b, 0)

    def __repr__(self) -> str:
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, transform={self.transform!r}, num_workers={self.num_workers}, "
                f"prefetch={self.prefetch})")


class _ReusedBatch:
    """Batches of arrays gathered into buffers reused from batch to batch (``DataLoader.batches``
    with reuse_buffers). When the epoch's order is 0, 1, ..., n-1 (not shuffled, one rank) and the
    arrays are C-contiguous, a batch is a view of its rows instead (checked once per epoch)."""

    def __init__(self, arrays, order: np.ndarray, rows: int):
        self.arrays = arrays
        n = len(order)
        self.views = (all(a.flags.c_contiguous for a in arrays) and n > 0 and order[0] == 0
                      and bool((np.diff(order) == 1).all()))
        self.buffers = None if self.views else [np.empty((rows,) + a.shape[1:], a.dtype) for a in arrays]

    def take(self, idx: np.ndarray) -> tuple:
        m = len(idx)
        if self.views:
            lo = int(idx[0])
            return tuple(a[lo:lo + m] for a in self.arrays)
        return tuple(gather(a, idx, buf[:m]) for a, buf in zip(self.arrays, self.buffers))
