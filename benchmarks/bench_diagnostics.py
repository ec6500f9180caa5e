"""Cost of gk.callbacks.ActivationStats on the quickstart CNN epoch (target: at most 5%).

Two runners train the quickstart CNN (shared/PERF.md) from the same weights on the same
batches (no shuffling), one without callbacks, one with ``ActivationStats()`` (its default:
one batch in 8 measured); batch 128, Adam, 2 threads.

pytest (part of ``python -m pytest benchmarks --benchmark-only``): one timed pass over
GRADKIT_BENCH_EPOCH_SAMPLES images (default 6400 = 50 steps) per round, off and on.

Script: ``python benchmarks/bench_diagnostics.py [--samples 60000] [--rounds 3] [--steps 200]``
alternates off and on epochs in one process and prints seconds per epoch and the overhead; then,
since load on a shared machine shifts within seconds, it also alternates single training steps
(batch 128: forward, backward, Adam) of two copies of the model, one hooked and measuring one
step in 8 as the callback does, and prints the ratio of their summed times and the cost of one
measured step.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import pytest

import gradkit as gk
from gradkit.examples.fashion_mnist import MODELS

BATCH = 128
SAMPLES = int(os.environ.get("GRADKIT_BENCH_EPOCH_SAMPLES", "6400"))


def synthetic(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, size=n).astype(np.int64)


def runner(stats_on, x, y):
    gk.manual_seed(0)
    model = MODELS["cnn"]()
    callbacks = [gk.callbacks.ActivationStats()] if stats_on else []
    trainer = gk.Trainer(model, gk.nn.CrossEntropyLoss(), gk.optim.Adam(model.parameters(), lr=1e-3),
                         callbacks=callbacks)

    def epoch():
        trainer.fit(x, y, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)

    return epoch, callbacks


@pytest.fixture(scope="module")
def data():
    return synthetic(SAMPLES)


@pytest.mark.parametrize("stats_on", [False, True], ids=["off", "on"])
def test_epoch_activation_stats(benchmark, data, stats_on):
    epoch, callbacks = runner(stats_on, *data)
    epoch()  # warm-up (allocations, first-touch)
    benchmark.group = f"quickstart CNN epoch, {SAMPLES} images, ActivationStats off/on"
    benchmark.extra_info["impl"] = "gradkit" if stats_on else "gradkit (stats off)"
    benchmark.pedantic(epoch, rounds=3, iterations=1)
    if stats_on:
        assert set(callbacks[0].stats[-1]) == {"2", "6", "10"}  # both fused BN-ReLU-pool ReLUs and Linear-ReLU


def paired_steps(x, y, steps, sample_every=8):
    """(sum of hooked step times / sum of plain ones, median ratio over the measured steps only);
    the order alternates within each pair."""
    from gradkit.diagnostics import _stats

    gk.manual_seed(0)
    models = [MODELS["cnn"](), MODELS["cnn"]()]
    models[1].load_state_dict(models[0].state_dict())
    layers, recorder = _stats.install(models[1])
    loss = gk.nn.CrossEntropyLoss()
    opts = [gk.optim.Adam(m.parameters(), lr=1e-3) for m in models]
    nb = len(x) // BATCH

    def step(k, b):
        xb, yb = x[b * BATCH:(b + 1) * BATCH], y[b * BATCH:(b + 1) * BATCH]
        start = time.perf_counter()
        opts[k].zero_grad()
        loss.forward(models[k](xb), yb)
        models[k].backward_maybe_input(loss.backward(), False)
        opts[k].step()
        return time.perf_counter() - start

    pairs = []
    for i in range(steps + 2):
        b = i % nb
        recorder.active = i % sample_every == 0
        if i % 2 == 0:
            off, on = step(0, b), step(1, b)
        else:
            on, off = step(1, b), step(0, b)
        if i >= 2:  # the first two pairs warm up
            pairs.append((on, off, recorder.active))
    _stats.uninstall(models[1])
    assert set(layers) == {"2", "6", "10"}
    total = sum(p[0] for p in pairs) / sum(p[1] for p in pairs)
    measured = statistics.median(p[0] / p[1] for p in pairs if p[2])
    return total, measured


def main(argv=None):
    p = argparse.ArgumentParser(description="ActivationStats overhead on the quickstart CNN epoch (2 threads).")
    p.add_argument("--samples", type=int, default=60000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=200, help="pairs of single steps (0: skip)")
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    gk.set_num_threads(args.threads)
    try:
        (x, y), _ = gk.datasets.load_fashion_mnist(download=False)
        x, y = (x[:args.samples].astype(np.float32)[:, None] / 255.0 - 0.286) / 0.353, y[:args.samples]
        source = "Fashion-MNIST"
    except (OSError, RuntimeError, ValueError):
        x, y = synthetic(args.samples)
        source = "synthetic"
    times = {False: [], True: []}
    with threadpool_limits(limits=args.threads):
        if args.steps:
            total, measured = paired_steps(x, y, args.steps)
            print(f"paired steps ({args.steps} pairs, one in 8 measured): hooked / plain time {total:.3f}, "
                  f"overhead {100 * (total - 1):+.1f}%; a measured step alone: median ratio {measured:.3f}",
                  flush=True)
        if not args.rounds:
            return
        runs = {on: runner(on, x, y)[0] for on in (False, True)}
        for on in (False, True):
            runs[on]()  # warm-up
        for r in range(args.rounds):
            for on in ((False, True) if r % 2 == 0 else (True, False)):
                start = time.perf_counter()
                runs[on]()
                times[on].append(time.perf_counter() - start)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"{source}, {len(x)} images, batch {BATCH}, {args.threads} threads, {args.rounds} alternating rounds")
    print(f"off: {off:.2f} s/epoch ({', '.join(f'{t:.2f}' for t in times[False])})")
    print(f"on:  {on:.2f} s/epoch ({', '.join(f'{t:.2f}' for t in times[True])})")
    print(f"overhead of ActivationStats: {100 * (on / off - 1):+.1f}% (median), "
          f"{100 * (min(times[True]) / min(times[False]) - 1):+.1f}% (minimum)")


if __name__ == "__main__":
    main()
