"""The MPI job under ``gk.distributed`` and ``gk.nn.SyncBatchNorm``: its state and collectives.

This module sits below ``gk.nn`` (it imports only ``_core`` and ``_config``), so layers that
talk to other ranks (``SyncBatchNorm``) and ``gk.distributed`` (``DistributedDataParallel``,
which builds on ``gk.nn``) both import it, and neither imports the other. ``gk.distributed``
re-exports the public functions. mpi4py is imported on first use only, so ``import gradkit``
works without it.

Every float sum over ranks here is a reduce-scatter (element i is added up on exactly one
rank) followed by an allgather of the results, so every rank gets the same bits. MPI's own
allreduce does not promise that: the standard only "strongly recommends" (advice to
implementors, MPI_Reduce) the same result for the same arguments in the same order, and an
allreduce algorithm may add the terms in a different order on different ranks.
"""
from __future__ import annotations

import os
import shutil
import sys

import numpy as np

from . import _config, _core
from ._checks import integer

__all__ = ["init", "is_initialized", "rank", "world_size", "barrier", "all_reduce", "broadcast"]

_INSTALL_HINT = ('gk.distributed needs mpi4py and an MPI library: pip install "gradkit[mpi]" '
                 "(or pip install mpi4py mpich; on a cluster, mpi4py built against the site's MPI)")

# The world size mpiexec announces in each process it starts (MPICH/Hydra and Intel MPI, Open MPI).
_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


class _State:
    """The job as this process sees it (set by ``init``)."""
    comm = None        # a duplicate of COMM_WORLD for this module's collectives
    rank = 0
    world_size = 1


state = _State()


def mpi():
    """The mpi4py.MPI module (imported, which initialises MPI, on first use)."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"{_INSTALL_HINT} ({e})") from None
    return MPI


def _launched_size() -> int:
    """The world size announced by the launcher's environment (1 when none)."""
    for var in _LAUNCHER_SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


def _abort_on_uncaught(previous, MPI):
    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stdout.flush()
        sys.stderr.flush()
        # Other ranks may wait in a collective for this one: end them all now (as `python -m mpi4py`).
        MPI.COMM_WORLD.Abort(1)

    return hook


def _set_threads_per_rank(MPI, comm) -> None:
    """ranks x threads <= cores: unless the user chose (OMP_NUM_THREADS, gk.set_num_threads),
    each rank gets the cores this process may use divided by the ranks on its machine."""
    if _config.num_threads_chosen():
        return
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_ranks = local.Get_size()
    local.Free()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _core.set_num_threads(max(1, cores // local_ranks))


def init() -> None:
    """Join the MPI job (idempotent).

    Installs an excepthook that ends every rank (``MPI_Abort``) when one dies of an uncaught
    exception, and, unless set (``OMP_NUM_THREADS`` or ``gk.set_num_threads``), sets the kernel
    threads to the cores divided by the ranks on this machine.

    Raises:
        ImportError: mpi4py is not installed.
        RuntimeError: the launcher announced N > 1 processes but MPI sees one (an ``mpiexec``
            from another MPI than the one mpi4py uses).
    """
    if state.comm is not None:
        return
    MPI = mpi()
    world = MPI.COMM_WORLD
    announced = _launched_size()
    if world.Get_size() == 1 and announced > 1:
        raise RuntimeError(f"gk.distributed.init: the launcher started {announced} processes but MPI sees only this "
                           f"one: the mpiexec used ({_which_mpiexec()}) belongs to another MPI than mpi4py's "
                           f"({MPI.Get_library_version().splitlines()[0].strip()}). Launch with the mpiexec of "
                           "mpi4py's MPI (python -m mpi4py --mpi-library; with the PyPI mpich, the one in the "
                           "Python environment's bin/).")
    if world.Get_size() > 1:
        sys.excepthook = _abort_on_uncaught(sys.excepthook, MPI)
    _set_threads_per_rank(MPI, world)
    state.rank, state.world_size = world.Get_rank(), world.Get_size()
    state.comm = world.Dup()


def _which_mpiexec() -> str:
    return shutil.which("mpiexec") or "mpiexec"


def is_initialized() -> bool:
    """True once ``init()`` has run in this process."""
    return state.comm is not None


def communicator(who: str):
    if state.comm is None:
        raise RuntimeError(f"gk.distributed.{who}: call gk.distributed.init() first")
    return state.comm


def rank() -> int:
    """This process's rank in [0, world_size())."""
    communicator("rank")
    return state.rank


def world_size() -> int:
    """The number of processes in the job."""
    communicator("world_size")
    return state.world_size


def barrier() -> None:
    """Wait until every rank has called ``barrier()``."""
    communicator("barrier").Barrier()


def is_writer() -> bool:
    """False on every rank but 0 of an initialised job: they print, plot and save nothing."""
    return state.rank == 0


def _check_inplace(who: str, array) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"gk.distributed.{who}: array: expected a numpy.ndarray, got {type(array).__name__}")
    if not array.flags.c_contiguous:
        raise ValueError(f"gk.distributed.{who}: array: expected a C-contiguous array (it is written in place), "
                         f"got strides {array.strides} for shape {array.shape}; use np.ascontiguousarray first")
    if not array.flags.writeable:
        raise ValueError(f"gk.distributed.{who}: array: expected a writeable array (it is written in place), "
                         "got a read-only one")
    if array.dtype.kind not in "iuf" or array.dtype.byteorder == ">":
        raise TypeError(f"gk.distributed.{who}: array: expected a numeric dtype (float, int or uint in native byte "
                        f"order), got {array.dtype}")
    return array


def split_counts(n: int, world: int):
    """(counts, displacements): n elements cut into ``world`` near-equal contiguous parts."""
    counts = np.full(world, n // world, dtype=np.int64)
    counts[:n % world] += 1
    displs = np.zeros(world, dtype=np.int64)
    np.cumsum(counts[:-1], out=displs[1:])
    return counts, displs


def reduce_identical(comm, flat: np.ndarray, chunk: np.ndarray, counts, displs, mean: bool) -> None:
    """Blocking sum (or mean) of the 1-D ``flat`` over ranks, in place, the same bits on every rank:
    a reduce-scatter into ``chunk`` (this rank's part), then an allgather of the parts."""
    from mpi4py.util.dtlib import from_numpy_dtype

    comm.Reduce_scatter(flat, chunk, counts, mpi().SUM)
    if mean:
        np.divide(chunk, comm.Get_size(), out=chunk)
    comm.Allgatherv(chunk, [flat, (counts, displs), from_numpy_dtype(flat.dtype)])


def all_reduce(array: np.ndarray, op: str = "sum") -> np.ndarray:
    """Sum (op="sum") or average (op="mean", float arrays) ``array`` over ranks, in place.

    Every rank must call it with an array of the same shape and dtype; every rank gets the
    same bits. Returns ``array``.
    """
    comm = communicator("all_reduce")
    array = _check_inplace("all_reduce", array)
    if op not in ("sum", "mean"):
        raise ValueError(f"gk.distributed.all_reduce: op: expected 'sum' or 'mean', got {op!r}")
    if op == "mean" and array.dtype.kind != "f":
        raise TypeError(f"gk.distributed.all_reduce: op='mean' needs a float array, got dtype {array.dtype}")
    world = comm.Get_size()
    flat = array.reshape(-1)
    counts, displs = split_counts(flat.size, world)
    chunk = np.empty(int(counts[state.rank]), dtype=array.dtype)
    reduce_identical(comm, flat, chunk, counts, displs, op == "mean")
    return array


def broadcast(array: np.ndarray, root: int = 0) -> np.ndarray:
    """Overwrite ``array`` on every rank with root's (in place). Returns ``array``."""
    comm = communicator("broadcast")
    array = _check_inplace("broadcast", array)
    root = integer("gk.distributed.broadcast", "root", root, 0, state.world_size - 1)
    comm.Bcast(array, root=root)
    return array
