"""Every optimizer step of bench_optim.py, gradkit, PyTorch and a streaming copy interleaved call by call.

Run: PYTHONPATH=python python benchmarks/interleaved_optim.py [--threads 2] [--rounds 30] [--only Adam]

Every round times one gradkit step, one PyTorch step (Adam/AdamW fused=True, the others
foreach=True; PyTorch has no L1 term, so its l1 row is its step without a penalty) and
one relu with ``out=`` over as many bytes as the step must move (the streaming
bandwidth), in an order rotating between rounds, so that all three see the same load.
Printed per case: medians in ms, gradkit's time over PyTorch's (medians and minima;
target <= 1.0), gradkit's effective GB/s and its ratio to the stream's (target >= 0.8).
Set GRADKIT_ISA=avx2 (or generic) to run another ISA's kernels on the same cores.
"""
from __future__ import annotations

import baseline_isa  # noqa: F401  (first: holds NumPy and PyTorch to GRADKIT_ISA)
import time

import numpy as np

import gradkit as gk
from bench_optim import CASES, TOTAL, bytes_moved, make_problem, make_step, make_stream


def main(argv=None):
    p = baseline_isa.side_by_side_parser(__doc__, rounds=30)
    p.add_argument("--only", default="", help="run the cases whose optimizer name contains this text")
    args = p.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    gk.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    problem = make_problem()
    print(baseline_isa.describe())
    print(f"optimizer step, {TOTAL / 1e6:.1f}M float32 params, ISA {gk._core.get_isa()}, gradkit vs torch "
          f"{torch.__version__}, {args.threads} threads, {args.rounds} interleaved rounds")
    print(f"{'case':<46} {'gradkit':>8} {'torch':>8} {'stream':>8} {'gk/torch med':>13} {'min':>6} "
          f"{'gk GB/s':>8} {'stream GB/s':>12} {'gk/stream':>10}")
    for opt_name, pen_name in CASES:
        if args.only not in opt_name:
            continue
        med, low, gk_rate, stream_rate = interleave(opt_name, pen_name, problem, args.rounds)
        print(f"{opt_name + ', ' + pen_name:<46} {med['gk'] * 1e3:8.2f} {med['torch'] * 1e3:8.2f} "
              f"{med['stream'] * 1e3:8.2f} {med['gk'] / med['torch']:12.2f}x {low['gk'] / low['torch']:5.2f}x "
              f"{gk_rate:8.1f} {stream_rate:12.1f} {gk_rate / stream_rate:9.2f}x", flush=True)


def interleave(opt_name, pen_name, problem, rounds):
    """One case: gradkit's step, torch's and the stream, in an order rotating between rounds.

    Returns the medians and minima in seconds (keys "gk", "torch", "stream") and the GB/s of
    gradkit's step and of the stream.
    """
    nbytes = bytes_moved(opt_name, pen_name)
    stream, stream_bytes = make_stream(nbytes)
    order = [("gk", make_step(opt_name, pen_name, "gradkit", problem)),
             ("torch", make_step(opt_name, pen_name, "torch", problem)), ("stream", stream)]
    times = {k: [] for k, _ in order}
    for r in range(rounds):
        for name, f in order[r % 3:] + order[:r % 3]:
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    low = {k: float(np.min(v)) for k, v in times.items()}
    return med, low, nbytes / med["gk"] / 1e9, stream_bytes / med["stream"] / 1e9


if __name__ == "__main__":
    main()
