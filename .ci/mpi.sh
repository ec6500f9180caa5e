#!/usr/bin/env bash
# CI, distributed part: install gradkit's [mpi] extra into the active environment (gradkit itself
# already installed, e.g. by .ci/run from dist/), then run tests/distributed on 2 MPI ranks.
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
[ -x "$mpiexec" ] || mpiexec=$(command -v mpiexec)
flags=()
if "$mpiexec" --version 2>&1 | grep -qi "open mpi" && [ "$(id -u)" = 0 ]; then
  flags=(--allow-run-as-root --oversubscribe)
fi
echo "ci: $("$mpiexec" --version 2>&1 | head -n 2 | tr -s ' \n' ' ')"

# Each rank runs the same tests in the same order; a failing rank aborts the job (non-zero exit).
# One kernel thread per rank: the CI machine may have 2 cores.
OMP_NUM_THREADS=1 timeout 900 "$mpiexec" "${flags[@]}" -n 2 \
  python -m pytest -q -p no:cacheprovider tests/distributed
echo "ci: distributed tests passed on 2 ranks"
