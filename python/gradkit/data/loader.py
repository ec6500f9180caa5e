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

import numpy as np

from .. import _random
from .._config import _int_arg
from .dataset import _is_batch_wise, fetch
from .transforms import Transform, draw_key

__all__ = ["DataLoader"]


def _check_count(name: str, value, low: int) -> int:
    value = _int_arg(value, "DataLoader", name)
    if value < low:
        raise ValueError(f"DataLoader: {name}: expected an integer >= {low}, got {value}")
    return value


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
        self.batch_size = _check_count("batch_size", batch_size, 1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.num_workers = _check_count("num_workers", num_workers, 0)
        self.prefetch = _check_count("prefetch", prefetch, 1)
        self._batch_wise = len(dataset) > 0 and _is_batch_wise(dataset)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Samples per epoch (all of them, or the whole batches when drop_last)."""
        return min(len(self) * self.batch_size, len(self.dataset))

    def __iter__(self):
        return self._batches(self._plan_epoch())

    # -- used by the Trainer -----------------------------------------------------------
    def _plan_epoch(self):
        """The epoch's draws, in the main thread: (sample order, augmentation key or None)."""
        n = len(self.dataset)
        order = _random.permutation(n) if self.shuffle else np.arange(n, dtype=np.int64)
        key = draw_key() if isinstance(self.transform, Transform) else None
        return order, key

    def _batch_indices(self, plan, b: int) -> np.ndarray:
        """The dataset indices of the samples in batch b of an epoch planned by ``_plan_epoch``
        (row j of the batch is sample ``_batch_indices(plan, b)[j]`` of the dataset)."""
        return plan[0][b * self.batch_size:(b + 1) * self.batch_size]

    def _batch(self, plan, b: int, nthreads: int):
        key = plan[1]
        batch = fetch(self.dataset, self._batch_indices(plan, b), self._batch_wise, nthreads)
        if self.transform is not None:
            x = batch[0]
            x = self.transform._apply(x, key, b, 0, nthreads) if key is not None else self.transform(x)
            batch = (x,) + tuple(batch[1:])
        return batch

    def _batches(self, plan, start_batch: int = 0):
        """Iterator over batches start_batch.. of an epoch planned by ``_plan_epoch``.

        The batches follow the plan's order, which the Trainer may cut to one rank's share.
        A child process fork()ed mid-epoch that goes on with the iterator prepares the rest
        of the epoch in its own thread (the parent's workers do not exist there): the same
        batches, as num_workers=0 would give them.
        """
        m = len(plan[0])
        nbatches = m // self.batch_size if self.drop_last else -(-m // self.batch_size)
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
