"""Subprocesses for the portable suite, which CI runs under qemu-user's emulated CPUs.

A process started from one that qemu-user emulates runs natively (on the host CPU), unless
it is started through the emulator again. CI sets GRADKIT_TEST_EMULATOR (for example
"qemu-x86_64 -cpu Haswell") for ``run_here``.
"""
import os
import shlex
import subprocess
import sys


def cpu_features():
    """NumPy's cpuid of this process's CPU: the emulated one under qemu (/proc/cpuinfo is the host's)."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as umath
    return umath.__cpu_features__


def child_env(**env):
    """os.environ with this process's import path, and ``env``."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **env}


def run_here(code, **env):
    """``python -c code`` on this process's CPU (under GRADKIT_TEST_EMULATOR when set)."""
    prefix = shlex.split(os.environ.get("GRADKIT_TEST_EMULATOR", ""))
    return subprocess.run(prefix + [sys.executable, "-c", code], env=child_env(**env), capture_output=True,
                          text=True, timeout=600)


def native_env(**env):
    """The environment for a native child that computes what this process computes, bit for bit.

    glibc picks its libm variants at load time by CPU features (exp and log: FMA or SSE2 code,
    which round differently in a few cases in 10^4), and NumPy its loops by dispatch target;
    hide from both what this (maybe emulated) CPU lacks.
    """
    have = cpu_features()
    hide = [name for name, numpy_name in [("AVX", "AVX"), ("AVX2", "AVX2"), ("FMA", "FMA3"), ("FMA4", "FMA4"),
                                          ("AVX512F", "AVX512F")] if not have.get(numpy_name)]
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__ as dispatch
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__ as dispatch
    out = child_env(**env)
    out["NPY_DISABLE_CPU_FEATURES"] = " ".join(t for t in dispatch if not have.get(t))
    if hide:
        out["GLIBC_TUNABLES"] = "glibc.cpu.hwcaps=" + ",".join("-" + name for name in hide)
    out.pop("GRADKIT_ISA", None)
    return out
