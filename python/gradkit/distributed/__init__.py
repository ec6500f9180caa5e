"""Data-parallel training over MPI processes (extra ``gradkit[mpi]``: mpi4py and an MPI).

Start N processes with ``mpiexec -n N python script.py``; each calls ``init()`` (or builds a
``DistributedDataParallel``, which calls it). mpi4py is imported on first use only, so
``import gradkit`` works without it.

The job's state and the collectives live in ``gradkit._mpi``, below ``gk.nn`` (whose
``SyncBatchNorm`` uses them too); this package adds what builds on the layers:
``DistributedDataParallel`` and the ``Shard`` the Trainer trains on. Every float sum over
ranks gives every rank the same bits (see ``gradkit._mpi``).
"""
from .._mpi import all_reduce, barrier, broadcast, init, is_initialized, rank, world_size
from .ddp import DistributedDataParallel

__all__ = ["init", "is_initialized", "rank", "world_size", "barrier", "all_reduce", "broadcast",
           "DistributedDataParallel"]
