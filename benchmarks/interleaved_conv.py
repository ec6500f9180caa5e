"""conv2d forward+backward on shared/PERF.md's three shapes, gradkit and PyTorch interleaved call by call.

Run: PYTHONPATH=python python benchmarks/interleaved_conv.py [--threads 2] [--rounds 60]

pytest-benchmark times all of one implementation's rounds, then all of the next one's; on a
shared machine a burst of load then lands on one side only. Here every round times one
gradkit step and one PyTorch step back to back (the order alternating between rounds), so
both see the same load; the ratio of the medians (and of the minima) is printed per shape,
with each pass of gradkit's step (forward, input gradient, weight gradient) for reference.
The steps are those of bench_conv.py: 3x3, padding 1, float32; the first layer (one input
channel) computes no input gradient.
"""
from __future__ import annotations

import baseline_isa  # noqa: F401  (first: holds NumPy and PyTorch to GRADKIT_ISA)
import time

import numpy as np

import gradkit as gk
from gradkit import ops

SHAPES = [  # N, C, H, W, OC, need_dx
    (64, 1, 28, 28, 32, False),
    (64, 32, 28, 28, 64, True),
    (64, 64, 14, 14, 128, True),
]


def main(argv=None):
    p = baseline_isa.side_by_side_parser(__doc__, rounds=60)
    args = p.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    gk.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    print(baseline_isa.describe())
    print(f"conv2d fwd+bwd, gradkit vs torch {torch.__version__}, {args.threads} threads, "
          f"{args.rounds} interleaved rounds (ms)")
    print(f"{'shape':<22} {'gradkit':>8} {'torch':>8} {'ratio med':>10} {'ratio min':>10}   "
          f"{'gk fwd':>7} {'gk dx':>7} {'gk dW':>7}")
    for n, c, h, w, oc, need_dx in SHAPES:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        wt = (rng.standard_normal((oc, c, 3, 3)) * 0.1).astype(np.float32)
        b = rng.standard_normal(oc).astype(np.float32)
        dy = rng.standard_normal((n, oc, h, w)).astype(np.float32)
        dw, db = np.zeros_like(wt), np.zeros_like(b)
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, wt, b, dy))
        tx.requires_grad_(need_dx)
        tw.requires_grad_(True)
        tb.requires_grad_(True)

        def gk_step():
            ops.conv2d_forward(x, wt, b, 1, 1)
            ops.conv2d_backward(dy, x, wt, 1, 1, dweight=dw, dbias=db, need_dx=need_dx)

        def torch_step():
            torch.nn.functional.conv2d(tx, tw, tb, padding=1).backward(tdy)

        passes = {
            "fwd": lambda: ops.conv2d_forward(x, wt, b, 1, 1),
            "dx": lambda: ops.conv2d_backward(dy, x, wt, 1, 1, need_dweight=False, need_dbias=False),
            "dW": lambda: ops.conv2d_backward(dy, x, wt, 1, 1, dweight=dw, dbias=db, need_dx=False),
        }
        if not need_dx:
            del passes["dx"]
        times = {k: [] for k in ["gk", "torch", *passes]}
        for f in (gk_step, torch_step, *passes.values()):
            f()
        for r in range(args.rounds):
            order = [("gk", gk_step), ("torch", torch_step)]
            for name, f in order if r % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t0)
            for name, f in passes.items():
                t0 = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        low = {k: float(np.min(v)) * 1e3 for k, v in times.items()}
        label = f"N{n} C{c} {h}x{w} K{oc}"
        cols = "   ".join(f"{med[k]:7.2f}" if k in med else f"{'-':>7}" for k in ("fwd", "dx", "dW"))
        print(f"{label:<22} {med['gk']:8.2f} {med['torch']:8.2f} {med['gk'] / med['torch']:9.2f}x "
              f"{low['gk'] / low['torch']:9.2f}x   {cols}")


if __name__ == "__main__":
    main()
