"""The ISA gradkit picks is the best one the CPU has, read independently of gradkit.

NumPy runs its own cpuid at import, so on an emulated CPU (qemu-x86_64 -cpu Haswell or
Nehalem) its feature list is the emulated CPU's, while /proc/cpuinfo still shows the host's.
CI also sets GRADKIT_EXPECT_ISA (avx2 under Haswell, generic under Nehalem) so that a wrong
guess on both sides cannot pass, and GRADKIT_TEST_EMULATOR (e.g. "qemu-x86_64 -cpu Haswell")
so that subprocesses run on the same emulated CPU (a process started from one emulated by
qemu-user runs natively otherwise).
"""
import os

import pytest

import gradkit as gk
from emulation import cpu_features, run_here
from gradkit import _core

ISA_ORDER = ["generic", "avx2", "avx512"]
# What gradkit's cpu_has() asks cpuid for, in NumPy's feature names.
NEEDS = {"avx2": ("AVX2", "FMA3"), "avx512": ("AVX512F", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX2", "FMA3")}


def isas_from_numpy():
    if not _core.build_info["x86_kernels"]:
        return ["generic"]
    have = cpu_features()
    return ["generic"] + [isa for isa in ISA_ORDER[1:] if all(have.get(f, False) for f in NEEDS[isa])]


def test_supported_isas_match_the_cpu():
    assert _core.supported_isas() == isas_from_numpy(), (
        f"gradkit supports {_core.supported_isas()}, NumPy's cpuid says {isas_from_numpy()}")


def test_chosen_isa_is_the_best_supported():
    expected = os.environ.get("GRADKIT_EXPECT_ISA") or isas_from_numpy()[-1]
    assert expected in ISA_ORDER, f"GRADKIT_EXPECT_ISA: expected one of {ISA_ORDER}, got {expected!r}"
    forced = os.environ.get("GRADKIT_ISA")
    best = _core.supported_isas()[-1]
    assert best == expected, f"best ISA {best}, expected {expected} (supported: {_core.supported_isas()})"
    assert _core.get_isa() == (forced or expected)
    text = gk.show_config()
    assert f"isa: {_core.get_isa()} (supported: {', '.join(_core.supported_isas())})" in text, text


def test_a_fresh_process_picks_the_same_isa():
    result = run_here("from gradkit import _core; print(_core.get_isa(), *_core.supported_isas())",
                      GRADKIT_ISA="")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [isas_from_numpy()[-1]] + isas_from_numpy(), result.stdout


UNSUPPORTED = [isa for isa in ISA_ORDER if isa not in isas_from_numpy()]


@pytest.mark.skipif(not UNSUPPORTED, reason="this CPU has every ISA gradkit has kernels for")
@pytest.mark.parametrize("isa", UNSUPPORTED or ["none"])
def test_asking_for_a_missing_isa_is_a_clear_error(isa):
    with pytest.raises(RuntimeError, match=f"ISA '{isa}' is not supported by this CPU"):
        _core.set_isa(isa)
    result = run_here("import gradkit", GRADKIT_ISA=isa)
    assert result.returncode == 1, f"exit code {result.returncode} (132 is SIGILL): {result.stderr[-2000:]}"
    assert f"GRADKIT_ISA={isa} but this CPU or build does not support it" in result.stderr, result.stderr[-2000:]


def test_every_supported_isa_runs_a_kernel_of_each_area():
    """One call per kernel area on every ISA, in a fresh process: no table init may use an
    instruction the CPU lacks (issue 12: the AVX-512 inits died with SIGILL on AVX2 CPUs)."""
    code = "\n".join([
        "import numpy as np, gradkit as gk",
        "x = np.linspace(-2, 2, 2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)",
        "y = gk.ops.relu(x); gk.ops.max_pool2d_forward(x, 2); gk.ops.batch_norm_forward(x)",
        "gk.ops.conv2d_forward(x, np.ones((4, 3, 3, 3), np.float32), padding=1)",
        "gk.ops.matmul(x.reshape(6, 35), x.reshape(35, 6)); gk.ops.cross_entropy(x.reshape(6, 35), np.zeros(6, int))",
        "p = gk.nn.Parameter(np.ones(17, np.float32)); p.grad[...] = 1; opt = gk.optim.Adam([p]); opt.step()",
        "gk.optim.clip_grad_norm_([p], 0.5); print(gk._core.get_isa())",
    ])
    for isa in isas_from_numpy():
        result = run_here(code, GRADKIT_ISA=isa)
        assert result.returncode == 0, f"GRADKIT_ISA={isa}: exit code {result.returncode}: {result.stderr[-2000:]}"
        assert result.stdout.split() == [isa]
