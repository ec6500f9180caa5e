"""Helpers shared by the distributed tests (imported as a plain module)."""
import numpy as np


def same_on_every_rank(comm, arrays, what):
    """Assert that every rank holds bitwise the same arrays."""
    mine = [np.ascontiguousarray(a).tobytes() for a in arrays]
    for r, theirs in enumerate(comm.allgather(mine)):
        for i, (a, b) in enumerate(zip(mine, theirs)):
            assert a == b, f"{what}: array {i} differs between this rank and rank {r}"
