"""The data pipeline: augmentation and gather kernels (GB/s), memory when training from
a memmap, the cost of augmentation on background threads, and the array form of fit.

pytest (part of ``python -m pytest benchmarks --benchmark-only``): each kernel on a
256x3x64x64 float32 batch (12.6 MB) against the NumPy way of doing the same, with
GB/s = (bytes read + bytes written) / median time.

Script: ``python benchmarks/bench_data.py kernels|memmap|augment|array|all`` (2 kernel threads,
NumPy's BLAS limited to 2 threads):
- kernels: GB/s of each transform (output allocated, as users call it) and of the gather,
  on 1 and on 2 threads, interleaved.
- memmap: trains the quickstart CNN from a float32 memmap (default 512 MB, at least 4x
  the 100 MB budget) through a shuffled DataLoader and prints the growth of the
  process's anonymous memory (/proc/self/smaps_rollup), sampled after every batch.
- augment: the quickstart epoch (batch 128) from a DataLoader without augmentation vs
  with RandomCrop(28, padding=2) + RandomHorizontalFlip on num_workers=1, interleaved;
  prints the ratio of medians (target <= 1.1).
- array: ``fit(x, y)`` of this branch against main's Trainer (loaded from ``git show
  main:...``), interleaved in one process; and the data movement alone: main's
  whole-set ``np.take`` per epoch vs this branch's per-batch C++ gathers.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import gradkit as gk
from gradkit import _core
from gradkit.data import ArrayDataset, Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip

SHAPE = (256, 3, 64, 64)


def _gbps(benchmark, nbytes):
    benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.median / 1e9, 2)


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)


# -- kernels (pytest-benchmark) -------------------------------------------------------------
def test_crop_gradkit(benchmark, batch):
    benchmark.group, benchmark.extra_info["impl"] = "RandomCrop(64, padding=4) 256x3x64x64", "gradkit"
    t = RandomCrop(64, padding=4)
    benchmark(t._apply, batch, 1, 0, 0, 0)
    _gbps(benchmark, 2 * batch.nbytes)


def test_crop_numpy(benchmark, batch):
    benchmark.group, benchmark.extra_info["impl"] = "RandomCrop(64, padding=4) 256x3x64x64", "numpy"
    offsets = RandomCrop(64, padding=4).draws(len(batch), 64, 64, key=1)

    def crop():
        padded = np.pad(batch, ((0, 0), (0, 0), (4, 4), (4, 4)))
        out = np.empty_like(batch)
        for i, (oy, ox) in enumerate(offsets):
            out[i] = padded[i, :, oy:oy + 64, ox:ox + 64]
        return out

    benchmark(crop)


def test_flip_gradkit(benchmark, batch):
    benchmark.group, benchmark.extra_info["impl"] = "RandomHorizontalFlip 256x3x64x64", "gradkit"
    benchmark(RandomHorizontalFlip()._apply, batch, 1, 0, 0, 0)
    _gbps(benchmark, 2 * batch.nbytes)


def test_flip_numpy(benchmark, batch):
    benchmark.group, benchmark.extra_info["impl"] = "RandomHorizontalFlip 256x3x64x64", "numpy"
    flags = RandomHorizontalFlip().draws(len(batch), key=1).astype(bool)
    benchmark(lambda: np.where(flags[:, None, None, None], batch[..., ::-1], batch))


def test_normalize_gradkit(benchmark, batch):
    benchmark.group, benchmark.extra_info["impl"] = "Normalize 256x3x64x64", "gradkit"
    benchmark(Normalize([0.4, 0.5, 0.6], [0.2, 0.3, 0.4]), batch)
    _gbps(benchmark, 2 * batch.nbytes)


def test_normalize_numpy(benchmark, batch):
    benchmark.group, benchmark.extra_info["impl"] = "Normalize 256x3x64x64", "numpy"
    mean = np.array([0.4, 0.5, 0.6], np.float32)[:, None, None]
    std = np.array([0.2, 0.3, 0.4], np.float32)[:, None, None]
    benchmark(lambda: (batch - mean) / std)


def test_gather_gradkit(benchmark):
    benchmark.group, benchmark.extra_info["impl"] = "gather 256 of 60000x1x28x28", "gradkit"
    x = np.random.default_rng(0).standard_normal((60000, 1, 28, 28)).astype(np.float32)
    idx = np.random.default_rng(1).permutation(60000)[:256].astype(np.int64)
    out = np.empty((256, 1, 28, 28), np.float32)
    benchmark(_core.gather_rows, out, x, idx)
    _gbps(benchmark, 2 * out.nbytes)


def test_gather_numpy(benchmark):
    benchmark.group, benchmark.extra_info["impl"] = "gather 256 of 60000x1x28x28", "numpy"
    x = np.random.default_rng(0).standard_normal((60000, 1, 28, 28)).astype(np.float32)
    idx = np.random.default_rng(1).permutation(60000)[:256].astype(np.int64)
    out = np.empty((256, 1, 28, 28), np.float32)
    benchmark(np.take, x, idx, 0, out)


# -- scripts --------------------------------------------------------------------------------
def anon_mb() -> float:
    """Anonymous memory of this process (MB), from /proc/self/smaps_rollup."""
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no Anonymous: line in /proc/self/smaps_rollup")


def quickstart_trainer():
    from gradkit.examples.fashion_mnist import build_cnn

    gk.manual_seed(0)
    model = build_cnn()
    return gk.Trainer(model, gk.nn.CrossEntropyLoss(), gk.optim.Adam(model.parameters(), lr=1e-3))


class _Stop(Exception):
    pass


class _Sampler(gk.callbacks.Callback):
    """Peak anonymous memory over batch ends; stops fit after `steps` batches."""

    def __init__(self, steps):
        self.steps, self.peak, self.count = steps, 0.0, 0

    def on_batch_end(self, batch, logs=None):
        self.peak = max(self.peak, anon_mb())
        self.count += 1
        if self.count >= self.steps:
            raise _Stop


def run_memmap(size_mb: int, steps: int) -> None:
    n = size_mb * 2**20 // (28 * 28 * 4)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        path = os.path.join(tmp, "x.npy")
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, 1, 28, 28))
        rng = np.random.default_rng(0)
        for lo in range(0, n, 8192):  # written in chunks: the file never sits in anonymous memory
            mm[lo:lo + 8192] = rng.standard_normal((min(8192, n - lo), 1, 28, 28), dtype=np.float32)
        mm.flush()
        del mm
        x = np.load(path, mmap_mode="r")
        y = (np.arange(n) % 10).astype(np.int64)  # labels in memory: 8 bytes per image
        trainer = quickstart_trainer()
        loader = DataLoader(ArrayDataset(x, y), batch_size=128, shuffle=True, num_workers=1,
                            transform=Compose([RandomCrop(28, padding=2), RandomHorizontalFlip()]))
        sampler = _Sampler(steps)
        trainer.callbacks.append(sampler)
        base = anon_mb()
        start = time.perf_counter()
        try:
            trainer.fit(loader, epochs=1, verbose=0)
        except _Stop:
            pass
        seconds = time.perf_counter() - start
        print(f"memmap: {x.nbytes / 2**20:.0f} MB float32 ({n} images of 1x28x28), quickstart CNN, batch 128, "
              f"shuffled, augmented, num_workers=1: {sampler.count} steps in {seconds:.1f} s; anonymous memory "
              f"{base:.0f} MB before fit, peak {sampler.peak:.0f} MB: growth {sampler.peak - base:.0f} MB "
              f"({x.nbytes / 2**20 / max(sampler.peak - base, 1e-9):.1f}x smaller than the memmap)", flush=True)


def run_kernels(rounds: int) -> None:
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    src = np.random.default_rng(1).standard_normal((60000, 1, 28, 28)).astype(np.float32)
    idx = np.random.default_rng(2).permutation(60000)[:4096].astype(np.int64)  # 12.8 MB gathered
    buf = np.empty((4096, 1, 28, 28), np.float32)
    cases = {
        "RandomCrop(64, padding=4)": lambda: RandomCrop(64, padding=4)._apply(x, 1, 0, 0, 0),
        "RandomHorizontalFlip": lambda: RandomHorizontalFlip()._apply(x, 1, 0, 0, 0),
        "Normalize": lambda: Normalize([0.4, 0.5, 0.6], [0.2, 0.3, 0.4])(x),
        "gather 4096 rows of 60000x1x28x28": lambda: _core.gather_rows(buf, src, idx),
    }
    for name, f in cases.items():
        best = {}
        for _ in range(rounds):
            for threads in (1, 2):
                gk.set_num_threads(threads)
                f()
                times = []
                for _ in range(10):
                    start = time.perf_counter()
                    f()
                    times.append(time.perf_counter() - start)
                best.setdefault(threads, []).append(np.median(times))
        gk.set_num_threads(2)
        print(f"kernels: {name} on {x.nbytes / 2**20:.1f} MB: " + ", ".join(
            f"{t} thread(s) {2 * x.nbytes / np.median(v) / 1e9:.1f} GB/s" for t, v in best.items()), flush=True)


def _epoch_timer(trainer, loader):
    def run():
        start = time.perf_counter()
        trainer.fit(loader, epochs=1, verbose=0)
        return time.perf_counter() - start
    return run


def run_augment(samples: int, rounds: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, samples).astype(np.int64)
    plain = _epoch_timer(quickstart_trainer(), DataLoader(ArrayDataset(x, y), batch_size=128, shuffle=True))
    aug = _epoch_timer(quickstart_trainer(), DataLoader(
        ArrayDataset(x, y), batch_size=128, shuffle=True, num_workers=1,
        transform=Compose([RandomCrop(28, padding=2), RandomHorizontalFlip()])))
    plain(), aug()  # warm up
    t_plain, t_aug = [], []
    for _ in range(rounds):
        t_plain.append(plain())
        t_aug.append(aug())
    print(f"augment: quickstart epoch of {samples} images, batch 128, {rounds} interleaved rounds: without "
          f"augmentation median {np.median(t_plain):.2f} s, with crop+flip on num_workers=1 "
          f"{np.median(t_aug):.2f} s: ratio {np.median(t_aug) / np.median(t_plain):.3f} "
          f"(of minima {min(t_aug) / min(t_plain):.3f})", flush=True)


def _main_trainer_class():
    """main's Trainer, loaded from ``git show main:python/gradkit/train/trainer.py`` into gradkit.train."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(["git", "-C", root, "show", "main:python/gradkit/train/trainer.py"],
                            check=True, capture_output=True, text=True).stdout
    tmp = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    tmp.write(source)
    tmp.close()
    spec = importlib.util.spec_from_file_location("gradkit.train._main_trainer", tmp.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    os.unlink(tmp.name)
    return module.Trainer


def run_array(samples: int, rounds: int) -> None:
    from gradkit.examples.fashion_mnist import build_cnn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, samples).astype(np.int64)
    timers = {}
    for name, cls in (("main", _main_trainer_class()), ("data", gk.Trainer)):
        gk.manual_seed(0)
        model = build_cnn()
        trainer = cls(model, gk.nn.CrossEntropyLoss(), gk.optim.Adam(model.parameters(), lr=1e-3))

        def run(trainer=trainer):
            start = time.perf_counter()
            trainer.fit(x, y, epochs=1, batch_size=128, verbose=0)
            return time.perf_counter() - start
        timers[name] = run
    times = {name: [] for name in timers}
    for name in timers:
        timers[name]()  # warm up
    for _ in range(rounds):
        for name in timers:
            times[name].append(timers[name]())
    print(f"array fit: quickstart epoch of {samples} images, batch 128, shuffled, {rounds} interleaved rounds: "
          f"main {np.median(times['main']):.2f} s, this branch {np.median(times['data']):.2f} s: ratio "
          f"{np.median(times['data']) / np.median(times['main']):.3f} (of minima "
          f"{min(times['data']) / min(times['main']):.3f})", flush=True)

    # The data movement alone, on the full 60000-image set: main's per-epoch whole-set take
    # into a preallocated buffer vs this branch's per-batch gathers into one reused buffer.
    x = rng.standard_normal((60000, 1, 28, 28)).astype(np.float32)
    whole = np.empty_like(x)
    buf = np.empty((128, 1, 28, 28), np.float32)
    take_t, gather_t = [], []
    for _ in range(rounds * 2):
        perm = gk._random.permutation(len(x))
        start = time.perf_counter()
        np.take(x, perm, axis=0, out=whole)
        take_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        for lo in range(0, len(x), 128):
            idx = perm[lo:lo + 128]
            _core.gather_rows(buf[:len(idx)], x, idx)
        gather_t.append(time.perf_counter() - start)
    print(f"array fit data movement per 60000-image epoch: main np.take of the whole set {np.median(take_t) * 1e3:.1f}"
          f" ms (+{whole.nbytes / 2**20:.0f} MB held), per-batch C++ gathers {np.median(gather_t) * 1e3:.1f} ms "
          f"(+{buf.nbytes / 2**20:.1f} MB)", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("kernels", "memmap", "augment", "array", "all"))
    p.add_argument("--memmap-mb", type=int, default=512)
    p.add_argument("--steps", type=int, default=150, help="training steps from the memmap")
    p.add_argument("--samples", type=int, default=6400, help="images per timed epoch (augment, array)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    gk.set_num_threads(2)
    with threadpool_limits(limits=2):
        print(f"gradkit {gk.__version__}, {gk.get_num_threads()} threads, isa {_core.get_isa()}, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        if args.what in ("kernels", "all"):
            run_kernels(args.rounds)
        if args.what in ("memmap", "all"):
            run_memmap(args.memmap_mb, args.steps)
        if args.what in ("augment", "all"):
            run_augment(args.samples, args.rounds)
        if args.what in ("array", "all"):
            run_array(args.samples, args.rounds)


if __name__ == "__main__":
    main()
