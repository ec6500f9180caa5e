"""Every conv (and batch norm) shape of ResNet-20 and the VGG-style net: gradkit vs PyTorch, pass by pass.

Run: PYTHONPATH=python python benchmarks/profile_conv_shapes.py [--threads 2] [--batch 32 128 512]
     [--rounds 15] [--net resnet20 vgg] [--only SUBSTRING] [--no-bn] [--clock wall|cpu]
On a loaded machine, wall times of 2-thread runs follow the scheduler more than the kernels; then
``--threads 1 --clock cpu`` (each side's CPU time, interleaved) gives the ratios that repeat.
(GRADKIT_ISA=avx2 / generic to pick gradkit's kernels; baseline_isa holds PyTorch to the same ISA.)

For each shape (3x32x32 inputs) and batch, every round times gradkit's and PyTorch's forward, input
gradient and weight gradient back to back (the order alternating between rounds), so both see the
same load; the medians and the time ratio gradkit / torch per pass are printed, then the sum over
the network's conv and batch-norm layers (each shape weighted by how often the net uses it) against
torch's. The batch-norm rows also time a residual join (bn -> add -> relu) forward and backward:
gradkit's fused batch_norm_relu ops against PyTorch's three ops (not in the totals).
"""
from __future__ import annotations

import baseline_isa  # noqa: F401  (first: holds NumPy and PyTorch to GRADKIT_ISA)
import os
import time

import numpy as np

import gradkit as gk
from gradkit import ops

# name, C, H, OC, kernel, stride, padding, uses per net, need_dx
NETS = {
    "resnet20": [
        ("stem 3->16 3x3", 3, 32, 16, 3, 1, 1, 1, False),
        ("16->16 3x3 @32", 16, 32, 16, 3, 1, 1, 6, True),
        ("16->32 3x3 s2", 16, 32, 32, 3, 2, 1, 1, True),
        ("16->32 1x1 s2", 16, 32, 32, 1, 2, 0, 1, True),
        ("32->32 3x3 @16", 32, 16, 32, 3, 1, 1, 5, True),
        ("32->64 3x3 s2", 32, 16, 64, 3, 2, 1, 1, True),
        ("32->64 1x1 s2", 32, 16, 64, 1, 2, 0, 1, True),
        ("64->64 3x3 @8", 64, 8, 64, 3, 1, 1, 5, True),
    ],
    "vgg": [
        ("3->64 3x3 @32", 3, 32, 64, 3, 1, 1, 1, False),
        ("64->64 3x3 @32", 64, 32, 64, 3, 1, 1, 1, True),
        ("64->128 3x3 @16", 64, 16, 128, 3, 1, 1, 1, True),
        ("128->128 3x3 @16", 128, 16, 128, 3, 1, 1, 1, True),
        ("128->256 3x3 @8", 128, 8, 256, 3, 1, 1, 1, True),
        ("256->256 3x3 @8", 256, 8, 256, 3, 1, 1, 1, True),
    ],
}
# batch norm shapes of ResNet-20: C, H, uses (each conv is followed by one)
BN_SHAPES = {"resnet20": [(16, 32, 7), (32, 16, 8), (64, 8, 8)], "vgg": [(64, 32, 2), (128, 16, 2), (256, 8, 2)]}


def _median(v):
    return float(np.median(v)) * 1e3


CLOCK = time.perf_counter


def interleave(pairs, rounds):
    """pairs: {name: (gk_fn, torch_fn)} -> {name: (gk ms, torch ms)} medians, timed side by side."""
    for g, t in pairs.values():
        g(), t()
    times = {k: ([], []) for k in pairs}
    for r in range(rounds):
        for name, (g, t) in pairs.items():
            order = [(0, g), (1, t)] if r % 2 == 0 else [(1, t), (0, g)]
            for side, f in order:
                t0 = CLOCK()
                f()
                times[name][side].append(CLOCK() - t0)
    return {k: (_median(a), _median(b)) for k, (a, b) in times.items()}


def conv_pairs(torch, n, c, h, oc, k, s, p, need_dx):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, h)).astype(np.float32)
    w = (rng.standard_normal((oc, c, k, k)) * 0.1).astype(np.float32)
    oh = (h + 2 * p - k) // s + 1
    dy = rng.standard_normal((n, oc, oh, oh)).astype(np.float32)
    dw, db = np.zeros_like(w), np.zeros(oc, np.float32)
    tx, tw, tdy = (torch.from_numpy(a) for a in (x, w, dy))
    bwd = torch.ops.aten.convolution_backward
    args = (tdy, tx, tw, [oc], [s, s], [p, p], [1, 1], False, [0, 0], 1)
    pairs = {
        "fwd": (lambda: ops.conv2d_forward(x, w, None, s, p),
                lambda: torch.nn.functional.conv2d(tx, tw, None, stride=s, padding=p)),
        "dW": (lambda: ops.conv2d_backward(dy, x, w, s, p, dweight=dw, dbias=db, need_dx=False),
               lambda: bwd(*args, [False, True, True])),
    }
    if need_dx:
        pairs["dx"] = (lambda: ops.conv2d_backward(dy, x, w, s, p, need_dweight=False, need_dbias=False),
                       lambda: bwd(*args, [True, False, False]))
    return pairs


def bn_pairs(torch, n, c, h):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, h)).astype(np.float32)
    dy = rng.standard_normal((n, c, h, h)).astype(np.float32)
    g, b = np.ones(c, np.float32), np.zeros(c, np.float32)
    dg, dbb = np.zeros_like(g), np.zeros_like(b)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    _, mean, rstd = ops.batch_norm_forward(x, g, b, rm, rv, training=True)
    tx, tdy, tg, tb = (torch.from_numpy(a) for a in (x, dy, g, b))
    trm, trv = torch.zeros(c), torch.ones(c)
    tout = torch.ops.aten.native_batch_norm(tx, tg, tb, trm, trv, True, 0.1, 1e-5)
    res = rng.standard_normal((n, c, h, h)).astype(np.float32)
    tres = torch.from_numpy(res)
    y_r, mean_r, rstd_r = ops.batch_norm_relu_forward(x, g, b, rm, rv, residual=res)
    ty_r = torch.relu(tout[0] + tres)

    def torch_bn_add_relu():
        y = torch.ops.aten.native_batch_norm(tx, tg, tb, trm, trv, True, 0.1, 1e-5)[0]
        return torch.relu_(y.add_(tres))

    def torch_bn_add_relu_backward():
        g_ = torch.ops.aten.threshold_backward(tdy, ty_r, 0)
        return torch.ops.aten.native_batch_norm_backward(g_, tx, tg, trm, trv, tout[1], tout[2], True, 1e-5,
                                                         [True, True, True]), g_

    return {
        "bn fwd": (lambda: ops.batch_norm_forward(x, g, b, rm, rv, training=True),
                   lambda: torch.ops.aten.native_batch_norm(tx, tg, tb, trm, trv, True, 0.1, 1e-5)),
        "bn bwd": (lambda: ops.batch_norm_backward(dy, x, mean, rstd, g, dweight=dg, dbias=dbb),
                   lambda: torch.ops.aten.native_batch_norm_backward(tdy, tx, tg, trm, trv, tout[1], tout[2], True,
                                                                     1e-5, [True, True, True])),
        # the residual join, bn -> add -> relu: gradkit's fused op against PyTorch's three
        "bnar fwd": (lambda: ops.batch_norm_relu_forward(x, g, b, rm, rv, residual=res), torch_bn_add_relu),
        "bnar bwd": (lambda: ops.batch_norm_relu_backward(dy, y_r, x, mean_r, rstd_r, g, dg, dbb, need_dresidual=True),
                     torch_bn_add_relu_backward),
    }


def main(argv=None):
    p = baseline_isa.side_by_side_parser(__doc__, rounds=15)
    p.add_argument("--batch", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--net", nargs="+", default=list(NETS))
    p.add_argument("--only", default="")
    p.add_argument("--no-bn", action="store_true")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: the process's CPU time (all its threads), which a loaded machine inflates far "
                        "less than wall time; with --threads 1 it is the work done (more threads add spin-waits)")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    import torch

    gk.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    try:  # NumPy's BLAS threads (only the reference data uses NumPy here)
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ImportError:
        pass
    print(baseline_isa.describe(), f"| torch {torch.__version__}, {args.threads} threads,",
          f"{args.rounds} interleaved rounds, {args.clock} clock, load average {os.getloadavg()[0]:.2f}")
    hdr = f"{'shape':<18} {'N':>4} " + "".join(f"{'gk ' + q:>9} {'torch':>8} {'ratio':>6}  " for q in ("fwd", "dx", "dW"))
    hdr += "\n(bn rows: bn fwd, bn bwd, then bn + add + relu fwd and bwd: fused in gradkit, three ops in torch)"
    for net in args.net:
        for n in args.batch:
            print(f"\n{net}, batch {n} (ms; ratio = gradkit / torch time)\n{hdr}")
            tot_g = tot_t = 0.0
            for name, c, h, oc, k, s, pad, uses, need_dx in NETS[net]:
                if args.only not in name:
                    continue
                r = interleave(conv_pairs(torch, n, c, h, oc, k, s, pad, need_dx), args.rounds)
                line = f"{name:<18} {n:>4} "
                for q in ("fwd", "dx", "dW"):
                    if q in r:
                        g, t = r[q]
                        tot_g += uses * g
                        tot_t += uses * t
                        line += f"{g:>9.2f} {t:>8.2f} {g / t:>6.2f}  "
                    else:
                        line += " " * 27
                print(line, flush=True)
            if not args.no_bn and not args.only:
                for c, h, uses in BN_SHAPES[net]:
                    r = interleave(bn_pairs(torch, n, c, h), args.rounds)
                    line = f"{f'bn C{c} @{h}':<18} {n:>4} "
                    tot_g -= uses * (r["bnar fwd"][0] + r["bnar bwd"][0])  # not in the net's total
                    tot_t -= uses * (r["bnar fwd"][1] + r["bnar bwd"][1])
                    for q in ("bn fwd", "bn bwd", "bnar fwd", "bnar bwd"):
                        g, t = r[q]
                        tot_g += uses * g
                        tot_t += uses * t
                        line += f"{g:>9.2f} {t:>8.2f} {g / t:>6.2f}  "
                    print(line, flush=True)
            if tot_t > 0:
                print(f"{'net total':<18} {n:>4} gradkit {tot_g:.1f} ms, torch {tot_t:.1f} ms, ratio {tot_g / tot_t:.2f}"
                      f"  ({tot_g / n * 1e3:.0f} us/sample)")


if __name__ == "__main__":
    main()
