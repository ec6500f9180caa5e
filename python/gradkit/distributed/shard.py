"""How ``Trainer`` splits work across ranks when its model is a ``DistributedDataParallel``."""
from __future__ import annotations

import numpy as np

from .._mpi import all_reduce, communicator, state
from .ddp import DistributedDataParallel

__all__ = ["Shard", "shard_of"]


class Shard:
    """This rank's part of the data: ``rank`` of ``world`` ranks."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world

    def samples(self, n: int) -> int:
        """Samples per rank per epoch: n rounded up to a multiple of the ranks (as PyTorch's
        DistributedSampler), so every rank runs the same number of batches."""
        return -(-n // self.world)

    def indices(self, order: np.ndarray) -> np.ndarray:
        """This rank's slice of the epoch's index array ``order`` (the permutation, or arange).

        The order is padded by repeating its start to a multiple of the ranks; rank r takes
        entries r, r + world, ...: batch b of every rank together is the single-process batch b
        of ``world`` times the size.
        """
        padded = np.resize(order, self.samples(len(order)) * self.world)
        return padded[self.rank::self.world]

    def part(self, n: int) -> slice:
        """This rank's contiguous part of n evaluation samples (no padding; may be empty)."""
        return slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def sum(self, values) -> list:
        """The float sums over every rank (the same bits on each)."""
        total = np.array(values, dtype=np.float64)
        if total.size:
            all_reduce(total)
        return total.tolist()

    def gather(self, obj, who: str):
        """Every rank's ``obj`` (any picklable value) as a list in rank order on rank 0; None on the others."""
        return communicator(who).gather(obj, root=0)

    def share(self, obj, who: str):
        """Rank 0's ``obj`` (any picklable value), returned on every rank."""
        return communicator(who).bcast(obj, root=0)


def shard_of(model):
    """The ``Shard`` of a ``DistributedDataParallel`` model (None for any other model)."""
    if not isinstance(model, DistributedDataParallel):
        return None
    communicator("Trainer")
    return Shard(state.rank, state.world_size)
