"""Process-wide settings: threads, seeding, gradient mode, build configuration."""
from __future__ import annotations

import contextlib
import os
import threading

from . import _core
from ._checks import integer

__all__ = ["set_num_threads", "get_num_threads", "manual_seed", "show_config", "no_grad", "is_grad_enabled"]


# More kernel threads than any CPU has hardware threads would only oversubscribe it (and a
# count near 2**31 makes OpenMP fail to create its threads, which ends the process).
_MAX_THREADS = 1024


def set_num_threads(n: int) -> None:
    """Set the number of OpenMP threads every kernel uses (1 <= n <= 1024).

    A child process created by ``fork`` (multiprocessing's default on Linux) runs kernels on
    one thread: OpenMP's thread pool does not survive fork. There ``n > 1`` raises
    ``RuntimeError``; use the "spawn" or "forkserver" start method for multi-threaded workers.
    """
    n = integer("set_num_threads", "n", n, 1, _MAX_THREADS)
    global _threads_set
    _threads_set = True  # gk.distributed.init() then keeps the user's choice
    _core.set_num_threads(n)


_threads_set = False


def num_threads_chosen() -> bool:
    """Whether the user chose the thread count (``set_num_threads`` or ``OMP_NUM_THREADS``)."""
    return _threads_set or "OMP_NUM_THREADS" in os.environ


def get_num_threads() -> int:
    """The number of kernel threads (default: OMP_NUM_THREADS, else the CPU count)."""
    return _core.get_num_threads()


def manual_seed(seed: int) -> None:
    """Seed every random draw of the library: initialization, dropout, shuffling.

    The generator is counter-based (Philox4x32-10), so a seed gives the same
    numbers whatever the thread count.
    """
    seed = integer("manual_seed", "seed", seed, -(2**63), 2**64 - 1)
    _core.manual_seed(seed % 2**64)


def show_config() -> str:
    """Return (and print) the version, chosen SIMD level (and each kernel area's), threads, compiler and flags."""
    info = _core.build_info
    lines = [
        f"gradkit {_core.__version__}",
        f"  isa: {_core.get_isa()} (supported: {', '.join(_core.supported_isas())})",
        "  kernels: " + ", ".join(f"{area} {isa}" for area, isa in _core.kernel_isas().items()),
        _gemm_line(_core.gemm_blocking()),
        f"  threads: {_core.get_num_threads()}",
        f"  compiler: {info['compiler']}",
        f"  flags: {info['flags']}",
    ]
    if info["x86_kernels"]:
        lines.append(f"  avx2 kernels: {info['avx2_flags']}")
        lines.append(f"  avx512 kernels: {info['avx512_flags']}")
    text = "\n".join(lines)
    print(text)
    return text


def _gemm_line(b: dict) -> str:
    def size(n):
        return f"{n // 1024} KiB" if n else "unknown"
    in_l1 = "B sliver" if b["order"] == "b_sliver_in_l1" else "A panel"
    return (f"  sgemm: {b['mr']}x{b['nr']} micro-tile, blocks mc/kc/nc {b['mc']}/{b['kc']}/{b['nc']}, {in_l1} in L1 "
            f"(L1d {size(b['l1d_bytes'])}, L2 {size(b['l2_bytes'])}, L3 {size(b['l3_bytes'])} per core)")


_grad_state = threading.local()


def is_grad_enabled() -> bool:
    """False inside ``gk.no_grad()``: forward passes then keep no cache for backward."""
    return getattr(_grad_state, "enabled", True)


@contextlib.contextmanager
def no_grad():
    """Context manager: forward passes inside keep no cache; a later backward raises RuntimeError."""
    previous = is_grad_enabled()
    _grad_state.enabled = False
    try:
        yield
    finally:
        _grad_state.enabled = previous
