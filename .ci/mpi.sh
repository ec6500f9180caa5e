#!/usr/bin/env bash
# CI, distributed part: install gradkit's [mpi] extra into the active environment (gradkit itself
# already installed, e.g. by .ci/run from dist/), check that it launches 2 ranks, run the launch
# tests (tests/test_distributed_launch.py: they skip in the main suite, whose [test] extra has no
# mpi4py; here a missing MPI fails them), then tests/distributed on 2 MPI ranks.
# Called from .ci/run after the main suite; works as root (MPICH's mpiexec needs no flag for it).
set -euo pipefail
cd "$(dirname "$0")/.."

wheel=${GK_CI_WHEEL:-$(ls dist/gradkit-*.whl 2>/dev/null | head -n 1 || true)}
if [ -n "$wheel" ]; then
  python -m pip install -q "${wheel}[mpi]"
else
  python -m pip install -q "mpi4py>=4.0" mpich  # the [mpi] extra of pyproject.toml, gradkit from elsewhere
fi

# The mpiexec of the MPI that mpi4py loads: the environment's own (MPICH's wheel) first.
mpiexec="$(dirname "$(command -v python)")/mpiexec"
[ -x "$mpiexec" ] || mpiexec=$(command -v mpiexec) || { echo "ci: no mpiexec in the environment or on PATH" >&2; exit 1; }
flags=()
if "$mpiexec" --version 2>&1 | grep -qi "open mpi" && [ "$(id -u)" = 0 ]; then
  flags=(--allow-run-as-root --oversubscribe)
fi
echo "ci: $("$mpiexec" --version 2>&1 | head -n 2 | tr -s ' \n' ' ')"

# The tests below skip without mpi4py or a second rank: check both first, so that CI fails instead.
OMP_NUM_THREADS=1 timeout 120 "$mpiexec" "${flags[@]}" -n 2 python -c "
from mpi4py import MPI
assert MPI.COMM_WORLD.Get_size() == 2, f'mpiexec -n 2 started a world of {MPI.COMM_WORLD.Get_size()}'"
echo "ci: mpiexec -n 2 starts a world of 2 ranks"

# The launch tests start mpiexec themselves (a failing rank, another MPI's mpiexec, threads per
# rank): run once, outside mpiexec.
GRADKIT_REQUIRE_MPI=1 timeout 600 python -m pytest -q -rs -p no:cacheprovider tests/test_distributed_launch.py

# Each rank runs the same tests in the same order; a failing rank aborts the job (non-zero exit).
# One kernel thread per rank: the CI machine may have 2 cores.
OMP_NUM_THREADS=1 timeout 900 "$mpiexec" "${flags[@]}" -n 2 \
  python -m pytest -q -rs -p no:cacheprovider tests/distributed
echo "ci: distributed tests passed on 2 ranks"
