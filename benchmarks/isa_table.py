"""The README's per-ISA performance table: each ISA's kernels against baselines held to the same ISA.

Run: PYTHONPATH=python python benchmarks/isa_table.py [--isa avx512 avx2] [--quick] [--only gemm|skinny|activations]

Where OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set for older OpenBLAS builds, unset both in the
command (``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...``) so that NumPy's OpenBLAS runs the
kernel it picks for this CPU; the ISA line names it (threadpoolctl's architecture).

For each ISA the script starts itself again with GRADKIT_ISA set (baseline_isa.py then holds
OpenBLAS, MKL, oneDNN and ATen to that ISA too, so an AVX-512 machine stands in for an AVX2 one
on the same cores) and measures, on 2 threads:
- sgemm, gradkit vs NumPy's OpenBLAS: blocks of calls of each in turn (a library's worker
  threads spin for a while after a call and would steal the other's cores if they alternated
  call by call; each block drops its first third); speed ratio OpenBLAS time / gradkit time,
  of the blocks' minima and medians;
- activations forward on 16M floats with ``out=``, for N(0, 1) and N(0, 9) inputs: GB/s (read +
  write) and the ratio to relu's, the memory bound, measured side by side (of the blocks' minima,
  and of their medians);
- with ``--only skinny``: the wide MLP's sgemm shapes, M = batch (32, 128, 512) with K, N of 2048
  and 3072, and the weight gradients' TN products with K = batch;
- every optimizer step of bench_optim.py (8 setups x no penalty, weight_decay=1e-4, l1=1e-5),
  interleaved call by call with PyTorch's fused/foreach step and a streaming pass over the
  same bytes: the range over the 24 cases of gradkit's time / torch's and of its rate / the stream's;
- the quickstart CNN's training epoch (bench_epoch.py, synthetic images), alternating with
  PyTorch's: gradkit's time / torch's (best epochs).
Prints one markdown table with a column per ISA, and the machine it ran on.
"""
from __future__ import annotations

import baseline_isa  # noqa: F401  (first: holds NumPy and PyTorch to GRADKIT_ISA)
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

GEMM_SHAPES = [((1024, 1024, 1024), "NN"), ((2048, 2048, 2048), "NN"), ((128, 784, 256), "NN"),
               ((128, 3136, 128), "NN"), ((64, 64, 50176), "NT")]  # (M, N, K)
# Wide-MLP shapes (--skinny): forward M = batch, and the weight gradient's K = batch (TN).
SKINNY_SHAPES = [((b, n, k), "NN") for b in (32, 128, 512) for (k, n) in ((2048, 2048), (3072, 2048))] + \
                [((k, n, b), "TN") for b in (32, 128, 512) for (k, n) in ((2048, 2048), (3072, 2048))]
ACTIVATIONS = ["relu", "tanh", "sigmoid", "gelu"]
ACT_SCALES = [1.0, 3.0]  # inputs N(0, 1) and N(0, 9): GELU's and tanh's tails are taken by more lanes at the second


def timed_blocks(fns: dict, rounds: int, reps: int, pause: float) -> dict:
    """Per name, one time per block: ``rounds`` blocks of ``reps`` calls, the names taking turns.

    A block's time is the median of its calls after the first third: the other library's
    worker threads may still be spinning when a block starts (OpenBLAS's and OpenMP's spin
    before they sleep), which slows the first calls of a block and is not this library's cost.
    """
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            time.sleep(pause)
            calls = []
            for _ in range(reps + reps // 2):
                t0 = time.perf_counter()
                f()
                calls.append(time.perf_counter() - t0)
            times[name].append(float(np.median(calls[reps // 2:])))
    return times


def measure_gemm(quick: bool, shapes=GEMM_SHAPES) -> dict:
    import gradkit as gk

    rng = np.random.default_rng(0)
    out = {}
    for (m, n, k), layout in shapes:
        trans_a, trans_b = layout[0] == "T", layout[1] == "T"
        a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
        c = np.empty((m, n), np.float32)
        a_op, b_op = (a.T if trans_a else a), (b.T if trans_b else b)
        fns = {"gradkit": lambda: gk.ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=c),
               "numpy": lambda: np.matmul(a_op, b_op, out=c)}
        reps = max(4, int(1e9 / (m * n * k)))  # blocks of >= 50 ms
        t = timed_blocks(fns, rounds=3 if quick else (5 if m >= 2048 else 10), reps=reps, pause=0.1)
        out[f"sgemm {m}x{n}x{k} {layout}"] = {
            "min": min(t["numpy"]) / min(t["gradkit"]), "median": np.median(t["numpy"]) / np.median(t["gradkit"]),
            "gflops": 2e-9 * m * n * k / min(t["gradkit"])}
    return out


def measure_activations(quick: bool) -> dict:
    """Per input scale (N(0, s^2)), each activation's forward rate and its ratio to relu's, side by side."""
    import gradkit as gk

    out = {}
    for scale in ACT_SCALES:
        x = (scale * np.random.default_rng(0).standard_normal(1 << 24)).astype(np.float32)
        y = np.empty_like(x)
        fns = {op: (lambda f=getattr(gk.ops, op): f(x, out=y)) for op in ACTIVATIONS}
        t = timed_blocks(fns, rounds=3 if quick else 10, reps=4, pause=0.0)
        # the blocks' minima (a shared machine only ever adds time) and, beside them, medians
        rate = {op: 2 * x.nbytes / min(v) / 1e9 for op, v in t.items()}
        median = {op: 2 * x.nbytes / np.median(v) / 1e9 for op, v in t.items()}
        out[f"{scale:g}"] = {op: {"gbps": rate[op], "vs_relu": rate[op] / rate["relu"],
                                  "vs_relu_median": median[op] / median["relu"]} for op in ACTIVATIONS}
    return out


def measure_optimizers(quick: bool) -> dict:
    from bench_optim import CASES, make_problem
    from interleaved_optim import interleave

    problem = make_problem()
    vs_torch, vs_stream = {}, {}
    for opt_name, pen_name in CASES:
        med, _, gk_rate, stream_rate = interleave(opt_name, pen_name, problem, rounds=3 if quick else 10)
        case = f"{opt_name}, {pen_name}"
        vs_torch[case] = med["gk"] / med["torch"]
        vs_stream[case] = gk_rate / stream_rate
    return {"vs_torch": vs_torch, "vs_stream": vs_stream}


def measure_epoch(quick: bool) -> dict:
    from bench_epoch import gradkit_runner, synthetic, torch_runner

    x, y = synthetic(3200 if quick else 12800)
    model, gk_epoch = gradkit_runner("cnn", x, y)
    _, t_epoch = torch_runner("cnn", x, y, like=model)
    # reps=1: each block is one whole epoch (nothing dropped)
    t = timed_blocks({"gradkit": gk_epoch, "torch": t_epoch}, rounds=2 if quick else 3, reps=1, pause=0.2)
    return {"vs_torch": min(t["gradkit"]) / min(t["torch"]), "gradkit_s": min(t["gradkit"]),
            "torch_s": min(t["torch"]), "samples": len(x)}


def child(quick: bool, only: str | None = None) -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    import gradkit as gk

    gk.set_num_threads(2)
    capability = "not loaded"
    if only is None:
        import torch

        torch.set_num_threads(2)
        capability = torch.backends.cpu.get_cpu_capability()
    with threadpool_limits(2):
        result = {"isa": gk._core.get_isa(), "baselines": baseline_isa.describe(),
                  "torch_capability": capability,
                  "blas": [f"{i['internal_api']} {i.get('architecture')}" for i in threadpool_info()
                           if i["user_api"] == "blas"],
                  "blocks": gk._core.gemm_blocking()}
        if only in (None, "gemm"):
            result["gemm"] = measure_gemm(quick)
        if only == "skinny":
            result["gemm"] = measure_gemm(quick, SKINNY_SHAPES)
        if only in (None, "activations"):
            result["activations"] = measure_activations(quick)
        if only is None:
            result["optimizers"] = measure_optimizers(quick)
            result["epoch"] = measure_epoch(quick)
    print("RESULT " + json.dumps(result))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def table(results: list) -> str:
    head = "| benchmark | " + " | ".join(f"GRADKIT_ISA={r['isa']}" for r in results) + " | target |"
    rows = [head, "|" + " --- |" * (len(results) + 2)]

    def row(name, cells, target):
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {target} |")

    for key in results[0].get("gemm", {}):
        row(key + " (OpenBLAS time / gradkit's)",
            [f"{r['gemm'][key]['min']:.2f}x (median {r['gemm'][key]['median']:.2f}x), "
             f"{r['gemm'][key]['gflops']:.0f} GFLOP/s" for r in results],
            ">= 0.95x" if key.startswith(("sgemm 1024x1024x1024 ", "sgemm 2048x2048x2048 ")) else ">= 1.0x")
    for scale in results[0].get("activations", {}):
        for op in ACTIVATIONS:
            target = {"relu": "the memory bound", "gelu": ">= 0.5x relu"}.get(op, ">= 0.7x relu")
            acts = [r["activations"][scale][op] for r in results]
            row(f"{op} forward 16M floats `out=`, N(0, {float(scale) ** 2:g}) inputs",
                [f"{a['gbps']:.0f} GB/s" + ("" if op == "relu" else
                                            f" ({a['vs_relu']:.2f}x relu, median {a['vs_relu_median']:.2f}x)")
                 for a in acts],
                target)
    if "optimizers" not in results[0]:
        return "\n".join(rows)

    def span(d):
        return f"{min(d.values()):.2f}-{max(d.values()):.2f}x"

    row("24 optimizer steps (8 optimizers x none / wd 1e-4 / l1 1e-5), gradkit time / torch fused or foreach",
        [span(r["optimizers"]["vs_torch"]) for r in results], "<= 1.0x")
    row("the same, gradkit's rate / streaming rate over the same bytes",
        [span(r["optimizers"]["vs_stream"]) for r in results], ">= 0.8x")
    row(f"CNN training epoch ({results[0]['epoch']['samples']} images), gradkit time / torch's",
        [f"{r['epoch']['vs_torch']:.2f}x ({r['epoch']['gradkit_s']:.2f} s vs {r['epoch']['torch_s']:.2f} s)"
         for r in results], "<= 0.4x")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--isa", nargs="+", default=["avx512", "avx2"])
    p.add_argument("--quick", action="store_true", help="few rounds (checks that the script runs)")
    p.add_argument("--only", choices=["gemm", "skinny", "activations"],
                   help="just the sgemm rows, the wide-MLP sgemm shapes (M or K = batch 32/128/512), or the "
                        "activation rows (no PyTorch comparisons then)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.quick, args.only)
        return
    import gradkit as gk

    results = []
    for isa in args.isa:
        if isa not in gk._core.supported_isas():
            print(f"skipping {isa}: this CPU or build cannot run it")
            continue
        env = dict(os.environ, GRADKIT_ISA=isa)
        cmd = [sys.executable, os.path.abspath(__file__), "--child"] + (["--quick"] if args.quick else []) + \
            (["--only", args.only] if args.only else [])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        results.append(json.loads(line[len("RESULT "):]))
        b = results[-1]["blocks"]
        print(f"{isa}: {results[-1]['baselines']} (torch capability {results[-1]['torch_capability']}; "
              f"NumPy's BLAS: {', '.join(results[-1]['blas'])}; sgemm blocks mc/kc/nc {b['mc']}/{b['kc']}/{b['nc']})",
              flush=True)
    if results:
        print(f"\n{cpu_name()}, {os.cpu_count()} CPUs, 2 threads, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"load average {os.getloadavg()[0]:.1f}\n")
        print(table(results))


if __name__ == "__main__":
    main()
