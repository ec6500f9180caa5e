"""Benchmark setup: 2 kernel threads, NumPy's BLAS limited to 2 threads
(threadpoolctl), PyTorch on 2 threads when it is installed, and a closing
table of time ratios per group, measured side by side in this process.

Run: python -m pytest benchmarks --benchmark-only
With GRADKIT_ISA=avx2 on an AVX-512 machine, the baselines are held to AVX2 too (baseline_isa.py).
Each benchmark sets ``benchmark.group`` (the shape) and ``benchmark.extra_info["impl"]``
("gradkit", "numpy" or "torch"); the table divides each baseline's median by gradkit's,
and in brackets each one's minimum by gradkit's: the implementations run one after the
other, so a burst of load on a shared machine can land on one of them only (the minimum
is the less sensitive; benchmarks/interleaved_conv.py alternates call by call instead).
"""
import baseline_isa  # noqa: F401  (first: holds NumPy and PyTorch to GRADKIT_ISA, see that module)
import pytest

import gradkit as gk

THREADS = 2

try:
    import torch
except ImportError:  # PyTorch is never a dependency; its columns are skipped
    torch = None


@pytest.fixture(scope="session", autouse=True)
def _bench_threads():
    from threadpoolctl import threadpool_limits

    gk.set_num_threads(THREADS)
    if torch is not None:
        torch.set_num_threads(THREADS)
    with threadpool_limits(limits=THREADS):
        yield


@pytest.fixture
def needs_torch():
    if torch is None:
        pytest.skip("PyTorch is not installed (pip install torch==2.13.0 for the side-by-side numbers)")
    return torch


def pytest_terminal_summary(terminalreporter):
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups, gbps, stream = {}, {}, None
    for bench in session.benchmarks:
        if bench.extra_info.get("bandwidth") and "GB/s" in bench.extra_info:
            stream = bench.extra_info["GB/s"]  # a streaming reference measured in this run
        impl = bench.extra_info.get("impl")
        if impl and bench.stats is not None:
            groups.setdefault(bench.group, {})[impl] = (bench.stats.median, bench.stats.min)
            if impl == "gradkit" and "GB/s" in bench.extra_info:
                gbps[bench.group] = bench.extra_info["GB/s"]
    rows = []
    for group, times in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if "gradkit" not in times:
            continue
        gk_t, gk_min = times["gradkit"]
        cols = [f"{group}", f"gradkit {gk_t * 1e3:9.3f} ms"]
        if group in gbps:
            cols[-1] += f" ({gbps[group]} GB/s" + (f", {gbps[group] / stream:.2f}x stream)" if stream else ")")
        for impl in ("numpy", "torch"):
            if impl in times:
                t, t_min = times[impl]
                cols.append(f"{impl} {t * 1e3:9.3f} ms ({t / gk_t:5.2f}x, min {t_min / gk_min:5.2f}x)")
        rows.append(" | ".join(cols))
    if rows:
        if stream:
            terminalreporter.write_line(f"streaming bandwidth (relu out=, this run): {stream} GB/s")
        terminalreporter.write_sep(
            "=", "speed vs baselines (baseline median / gradkit median, and of minima; >1 means gradkit is faster)")
        terminalreporter.write_line(f"{baseline_isa.describe()}; gradkit kernels: {gk._core.get_isa()}")
        for row in rows:
            terminalreporter.write_line(row)
