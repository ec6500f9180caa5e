"""gk.distributed from outside a job: importing without mpi4py, a bad launch, and a rank that dies
(mpiexec must end every rank with a non-zero exit, not hang). Launches subprocesses.

The tests that need MPI skip without mpi4py or mpiexec; .ci/mpi.sh runs them with
GRADKIT_REQUIRE_MPI=1 after installing gradkit's [mpi] extra, where a missing MPI fails them."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import gradkit

# The gradkit this suite tests (the source tree, or an installed wheel), for the subprocesses.
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(gradkit.__file__)))
REQUIRE_MPI = os.environ.get("GRADKIT_REQUIRE_MPI") == "1"


def mpi(launcher=True):
    """The mpiexec of the MPI mpi4py loads (the environment's own, as .ci/mpi.sh picks it, else the
    first on PATH); skips without mpi4py (or without mpiexec, if `launcher`), or fails under
    GRADKIT_REQUIRE_MPI=1."""
    try:
        import mpi4py  # noqa: F401
    except ImportError as e:
        missing = f"mpi4py is not installed ({e})"
    else:
        own = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        path = own if os.access(own, os.X_OK) else shutil.which("mpiexec")
        if path is not None or not launcher:
            return path
        missing = "no mpiexec beside python or on PATH"
    if REQUIRE_MPI:
        pytest.fail(f"GRADKIT_REQUIRE_MPI=1 and {missing}")
    pytest.skip(f'{missing} (pip install "gradkit[mpi]")')


def run(code, timeout, launcher=(), env=None):
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([*launcher, sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def clean_env():
    """This environment without a launcher's variables (the suite may itself run under mpiexec)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_", "SLURM_", "MPI_"))}


def test_gradkit_imports_without_mpi4py_and_says_what_to_install():
    result = run("""
        import sys
        sys.modules["mpi4py"] = None  # as if not installed
        import numpy as np
        import gradkit as gk
        assert not gk.distributed.is_initialized()
        try:
            gk.distributed.init()
        except ImportError as e:
            print("ImportError:", e)
        try:
            gk.distributed.DistributedDataParallel(gk.nn.Linear(2, 2))
        except ImportError as e:
            print("ImportError:", e)
        try:
            gk.distributed.all_reduce(np.zeros(2))
        except RuntimeError as e:
            print("RuntimeError:", e)
        x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
        assert np.array_equal(gk.nn.SyncBatchNorm(3)(x), gk.nn.BatchNorm1d(3)(x))  # one process: a batch norm
    """, timeout=60, env=clean_env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    assert all('pip install "gradkit[mpi]"' in line for line in lines[:2]), result.stdout
    assert lines[2] == "RuntimeError: gk.distributed.all_reduce: call gk.distributed.init() first"


def test_mpiexec_of_another_mpi_is_a_clear_error():
    mpi(launcher=False)
    env = clean_env()
    env["OMPI_COMM_WORLD_SIZE"] = "2"  # what Open MPI's mpiexec sets; mpi4py's MPICH then sees a world of 1
    result = run("import gradkit as gk; gk.distributed.init()", timeout=60, env=env)
    assert result.returncode != 0
    assert "RuntimeError: gk.distributed.init: the launcher started 2 processes but MPI sees only this one" \
        in result.stderr, result.stderr


def test_a_rank_that_raises_ends_the_job_non_zero():
    mpiexec = mpi()
    try:
        result = run("""
            import gradkit as gk
            gk.distributed.init()
            if gk.distributed.rank() == 1:
                raise ValueError("rank 1 fails")
            gk.distributed.barrier()  # rank 0 would wait here forever
        """, timeout=30, launcher=(mpiexec, "-n", "2"), env=clean_env())
    except subprocess.TimeoutExpired:
        pytest.fail("mpiexec did not end within 30 s after rank 1 raised")
    assert result.returncode != 0
    assert "ValueError: rank 1 fails" in result.stderr, result.stderr


@pytest.mark.parametrize("omp, set_threads", [(None, None), ("3", None), (None, 5)])
def test_threads_per_rank_default_to_the_cores_over_the_local_ranks(omp, set_threads):
    mpiexec = mpi()
    env = clean_env()
    env.pop("OMP_NUM_THREADS", None)
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    result = run(f"""
        import os
        import gradkit as gk
        if {set_threads!r} is not None:
            gk.set_num_threads({set_threads!r})
        gk.distributed.init()
        from mpi4py import MPI
        mine = "%d %d" % (gk.get_num_threads(), len(os.sched_getaffinity(0)))
        everyone = MPI.COMM_WORLD.gather(mine, root=0)  # one writer: mpiexec may interleave two
        for line in everyone or ():
            print(line)
    """, timeout=60, launcher=(mpiexec, "-n", "2"), env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    for line in lines:
        threads, cores = map(int, line.split())
        expected = set_threads or (int(omp) if omp else max(1, cores // 2))
        assert threads == expected, (line, omp, set_threads)
