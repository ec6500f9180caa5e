"""Run the baselines on the instruction set gradkit runs: import this before NumPy or PyTorch.

``GRADKIT_ISA=avx2`` on an AVX-512 machine runs gradkit's AVX2 kernels on the same cores; a fair
comparison needs OpenBLAS (NumPy), MKL, oneDNN and ATen (PyTorch) held to AVX2 as well, as they
would be on an AVX2 CPU. Each library reads its limit from the environment when it loads, so this
module sets the variables (unless already set) and must be imported first. Without GRADKIT_ISA it
does nothing.
"""
import argparse
import os
import sys

# The variable each baseline reads, per gradkit ISA (OpenBLAS's DYNAMIC_ARCH core names).
_LIMITS = {
    "avx2": {"OPENBLAS_CORETYPE": "Haswell", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "ATEN_CPU_CAPABILITY": "avx2"},
    "generic": {"OPENBLAS_CORETYPE": "Nehalem", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41",
                "ATEN_CPU_CAPABILITY": "default"},
}

ISA = os.environ.get("GRADKIT_ISA", "").strip().lower()
for _name, _value in _LIMITS.get(ISA, {}).items():
    os.environ.setdefault(_name, _value)
if ISA in _LIMITS and ("numpy" in sys.modules or "torch" in sys.modules):
    raise ImportError("baseline_isa must be imported before numpy and torch: they read the ISA limits when they load")


def describe() -> str:
    """One line naming the ISA each side runs."""
    limits = ", ".join(f"{k}={os.environ[k]}" for k in _LIMITS.get(ISA, {}) if k in os.environ)
    return f"GRADKIT_ISA={ISA or '(best)'}" + (f"; baselines held to it: {limits}" if limits else "")


def side_by_side_parser(doc: str, rounds: int) -> argparse.ArgumentParser:
    """The command line every side-by-side script starts from: --threads (2) and --rounds."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=rounds)
    return p
