"""Trainer.fit with each optimizer, a scheduler, Dropout and a save/load resume (portable_runs.py),
run here and in a native process on the same ISA.

Under qemu-user a child process runs natively, so in CI the second run is on the host CPU
with the same kernels (``_core.set_isa``), and the same libm and NumPy code paths
(``emulation.native_env``): the emulated run must give the same bits, since the instructions
and the reduction orders are the same. Run natively, the two runs must agree too.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import portable_runs
from emulation import native_env
from gradkit import _core

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """portable_runs.results() for every ISA this CPU has, computed by a native process."""
    out = tmp_path_factory.mktemp("native") / "runs.npz"
    result = subprocess.run([sys.executable, os.path.join(HERE, "portable_runs.py"), str(out),
                             *_core.supported_isas()], env=native_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"native run failed ({result.returncode}): {result.stderr[-3000:]}"
    with np.load(out) as runs:
        return dict(runs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(portable_runs.OPTIMIZERS))
def test_training_run(name, dtype, isa, native):
    losses, state, resumed = portable_runs.run(name, dtype)
    assert np.all(np.isfinite(losses)), f"{name}: losses {losses}"
    assert losses[-1] < 0.9 * losses[0], f"{name}: the loss did not go down: {losses}"
    for key, value in state.items():
        assert value.dtype == (np.dtype(dtype) if value.dtype.kind == "f" else value.dtype), key
        np.testing.assert_array_equal(resumed[key], value, err_msg=f"{name}: {key} after resuming from gk.load")
    prefix = f"{isa}/{name}/{np.dtype(dtype).name}"
    np.testing.assert_array_equal(losses, native[f"{prefix}/loss"], err_msg=f"{prefix}: losses vs the native run")
    for key, value in state.items():
        np.testing.assert_array_equal(value, native[f"{prefix}/{key}"], err_msg=f"{prefix}: {key} vs the native run")
