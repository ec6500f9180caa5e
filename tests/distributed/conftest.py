"""Distributed tests: run by ``mpiexec -n 2 python -m pytest -p no:cacheprovider tests/distributed`` (.ci/mpi.sh);
the plain suite runs them as a single rank (or skips them without mpi4py).

Every rank runs the same tests in the same order, so their collectives match. A test that fails
on one rank would leave the others waiting in the next collective: the failing rank prints its
report and ends the whole job (MPI_Abort) at once.

Each rank gets a temporary directory root of its own (``--basetemp``, unless given): ranks
sharing pytest's default root race in its numbered-directory cleanup (one rank's scandir
meets the other's deletions), which failed a CI run with an unclosed-iterator warning.
"""
import os
import sys
import tempfile

import pytest

# The rank the launcher gave this process (MPICH/Hydra and Intel MPI, Open MPI).
_LAUNCHER_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK")


@pytest.hookimpl(tryfirst=True)  # before the tmpdir plugin builds its factory from the option
def pytest_configure(config):
    rank = next((os.environ[v] for v in _LAUNCHER_RANK_VARS if os.environ.get(v, "").isdigit()), None)
    if rank is not None and config.option.basetemp is None:
        config.option.basetemp = os.path.join(tempfile.gettempdir(), f"gradkit-mpi-tests-{os.getuid()}-rank{rank}")

import gradkit as gk


@pytest.fixture(scope="session")
def world():
    """(rank, world_size, mpi4py's COMM_WORLD) after gk.distributed.init()."""
    MPI = pytest.importorskip("mpi4py.MPI")
    gk.distributed.init()
    return gk.distributed.rank(), gk.distributed.world_size(), MPI.COMM_WORLD


@pytest.fixture
def two_ranks(world):
    if world[1] < 2:
        pytest.skip("needs 2 or more ranks (mpiexec -n 2)")
    return world


def pytest_runtest_logreport(report):
    if report.failed and gk.distributed.is_initialized() and gk.distributed.world_size() > 1:
        from mpi4py import MPI

        sys.stderr.write(f"\n[rank {gk.distributed.rank()}] {report.nodeid} failed:\n{report.longreprtext}\n")
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)
