"""Data-parallel scaling of the quickstart CNN: 2 ranks x 1 thread against 1 rank x 1 thread at
the same per-rank batch, and the time each step waits for the gradient allreduce.

Run (the two ranks take turns with the single-process baseline inside one job, so load from
other processes hits both alike):
    PYTHONPATH=python mpiexec -n 2 python benchmarks/distributed_scaling.py --rounds 10

Each round times ``--steps`` training steps (forward, loss, backward with the allreduce,
Adam) of one process alone on rank 0 while rank 1 sleeps, then ``--steps`` steps of the
DistributedDataParallel model on both ranks. Throughput ratio = 2 x t(1 rank) / t(2 ranks)
per step (medians over rounds; 2.0 is perfect scaling). "waiting" is the time backward spends
blocked on gradient communication after the last layer's backward; "allreduce alone" is a
blocking gk.distributed.all_reduce of all the gradients (about 1.7 MB), with nothing else running.
"""
import argparse
import os
import sys
import time

import numpy as np

import gradkit as gk
from gradkit.examples.fashion_mnist import build_cnn


def step(model, ddp, loss, opt, x, y):
    opt.zero_grad()
    loss.forward(model(x), y)
    (ddp or model).backward_maybe_input(loss.backward(), False)
    opt.step()


def idle_until_all_arrive(comm):
    """A barrier that sleeps instead of spinning (MPICH's Barrier polls and would take a core)."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.002)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=128, help="per rank")
    p.add_argument("--steps", type=int, default=5, help="timed steps per phase and round")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--bucket-cap-mb", type=float, default=25.0)
    args = p.parse_args()

    from mpi4py import MPI
    from threadpoolctl import threadpool_limits

    gk.distributed.init()
    rank, world = gk.distributed.rank(), gk.distributed.world_size()
    if world < 2:
        sys.exit("run with mpiexec -n 2 (see the docstring)")
    comm = MPI.COMM_WORLD
    gk.set_num_threads(1)
    threadpool_limits(1)
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((args.batch_size, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, args.batch_size)
    loss = gk.nn.CrossEntropyLoss()
    gk.manual_seed(0)
    single = build_cnn()
    single_opt = gk.optim.Adam(single.parameters(), lr=1e-3)
    ddp = gk.distributed.DistributedDataParallel(build_cnn(), bucket_cap_mb=args.bucket_cap_mb)
    ddp_opt = gk.optim.Adam(ddp.parameters(), lr=1e-3)
    for _ in range(2):  # warm up both
        if rank == 0:
            step(single, None, loss, single_opt, x, y)
        step(ddp, ddp, loss, ddp_opt, x, y)
    grads = np.concatenate([p.grad.ravel() for p in ddp.parameters()])

    single_t, ddp_t, waits, alone = [], [], [], []
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        idle_until_all_arrive(comm)
        if rank == 0:
            start = time.perf_counter()
            for _ in range(args.steps):
                step(single, None, loss, single_opt, x, y)
            single_t.append((time.perf_counter() - start) / args.steps)
        idle_until_all_arrive(comm)
        ddp._wait_seconds = 0.0
        start = time.perf_counter()
        for _ in range(args.steps):
            step(ddp, ddp, loss, ddp_opt, x, y)
        ddp_t.append((time.perf_counter() - start) / args.steps)
        waits.append(ddp._wait_seconds / args.steps)
        comm.Barrier()
        start = time.perf_counter()
        gk.distributed.all_reduce(grads, op="mean")
        alone.append(time.perf_counter() - start)

    ddp_t = np.max(comm.allgather(ddp_t), axis=0)  # a step ends when the slower rank ends it
    waits = comm.gather(np.median(waits), root=0)
    if rank == 0:
        t1, t2 = np.median(single_t), np.median(ddp_t)
        print(f"quickstart CNN, batch {args.batch_size} per rank, 1 thread per rank, {args.rounds} rounds x "
              f"{args.steps} steps, bucket_cap_mb={args.bucket_cap_mb:g} ({len(ddp._buckets)} bucket(s)); "
              f"load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"  1 rank : {t1 * 1e3:7.1f} ms/step  {args.batch_size / t1:7.0f} samples/s")
        print(f"  2 ranks: {t2 * 1e3:7.1f} ms/step  {2 * args.batch_size / t2:7.0f} samples/s  "
              f"throughput ratio {2 * t1 / t2:.2f}x (min-based {2 * np.min(single_t) / np.min(ddp_t):.2f}x)")
        print(f"  waiting for gradients after backward: "
              + ", ".join(f"rank {r} {w * 1e3:.2f} ms/step" for r, w in enumerate(waits)))
        print(f"  allreduce alone of {grads.nbytes / 2**20:.2f} MiB of gradients: {np.median(alone) * 1e3:.2f} ms "
              f"(min {np.min(alone) * 1e3:.2f} ms)")


if __name__ == "__main__":
    main()
