"""gk.data pipeline: the C++ gather and augmentation kernels against NumPy float64 references,
ArrayDataset, DataLoader (shuffling, drop_last, workers, per-sample collation, errors) and
the Trainer with loaders."""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import gradkit as gk
from gradkit import _core, nn
from gradkit.data import ArrayDataset, Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0.0))


def images(rng, n, c, h, w):
    return rng.standard_normal((n, c, h, w)).astype(np.float32)


# -- gather kernel ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int16, np.int64, np.bool_, np.complex64])
@pytest.mark.parametrize("rows,feature", [(0, (3,)), (1, (1,)), (7, (5, 3)), (301, (1003,))])
def test_gather_rows_matches_take(isa, threads, rng, dtype, rows, feature):
    src = (rng.standard_normal((max(rows, 1) + 4,) + feature) * 50).astype(dtype)
    idx = rng.integers(0, len(src), size=rows).astype(np.int64)  # unsorted, with repeats
    out = np.full((rows,) + feature, 7, dtype)
    _core.gather_rows(out, src, idx)
    assert np.array_equal(out, np.take(src, idx, axis=0))


def test_gather_rows_parallel_path(isa, threads, rng):
    src = rng.standard_normal((3000, 1031)).astype(np.float32)  # above the 4 MB serial limit
    idx = rng.integers(0, 3000, size=2500).astype(np.int64)
    out = np.empty((2500, 1031), np.float32)
    _core.gather_rows(out, src, idx)
    assert np.array_equal(out, src[idx])


def test_gather_rows_from_memmap(tmp_path, rng, threads):
    data = rng.integers(0, 255, size=(513, 3, 5, 5), dtype=np.uint8)
    mm = np.memmap(tmp_path / "x.u8", dtype=np.uint8, mode="w+", shape=data.shape)
    mm[:] = data
    mm.flush()
    ro = np.memmap(tmp_path / "x.u8", dtype=np.uint8, mode="r", shape=data.shape)
    idx = rng.permutation(513)[:100].astype(np.int64)
    out = np.empty((100, 3, 5, 5), np.uint8)
    _core.gather_rows(out, ro, idx)
    assert np.array_equal(out, data[idx])


def test_gather_rows_errors():
    src = np.zeros((4, 3), np.float32)
    with pytest.raises(IndexError, match=r"idx: expected indices in \[0, 4\), got 4"):
        _core.gather_rows(np.empty((1, 3), np.float32), src, np.array([4]))
    with pytest.raises(IndexError, match="got -1"):
        _core.gather_rows(np.empty((1, 3), np.float32), src, np.array([-1]))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        _core.gather_rows(np.empty((1, 3), np.float64), src, np.array([0]))
    with pytest.raises(ValueError, match=r"out: expected shape \(2, 3\)"):
        _core.gather_rows(np.empty((1, 3), np.float32), src, np.array([0, 1]))
    with pytest.raises(ValueError, match="src: expected a C-contiguous"):
        _core.gather_rows(np.empty((1, 2), np.float32), src[:, :2], np.array([0]))
    with pytest.raises(TypeError, match="idx: expected dtype int64"):
        _core.gather_rows(np.empty((1, 3), np.float32), src, np.array([0], np.int32))


# -- augmentation kernels vs float64 NumPy with the same draws ------------------------------
def crop_ref(x, offsets, size, pad):
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.empty(x.shape[:2] + size)
    for i, (oy, ox) in enumerate(offsets):
        out[i] = xp[i, :, oy:oy + size[0], ox:ox + size[1]]
    return out


SHAPES = [(0, 3, 7, 9), (1, 1, 1, 1), (5, 3, 7, 9), (300, 3, 41, 43)]  # the last above the 4 MB serial limit


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size,pad", [((1, 1), 0), ((5, 6), 0), ((7, 9), 2), ((9, 11), 1), ((3, 3), 4)])
def test_random_crop_matches_reference(isa, threads, rng, shape, size, pad):
    n, c, h, w = shape
    size = (min(size[0], h + 2 * pad), min(size[1], w + 2 * pad))  # at most the padded image
    x = images(rng, *shape)
    t = RandomCrop(size, padding=pad)
    key = 12345
    got = t.apply_keyed(x, key, 3, 0, 0)
    offsets = t.draws(n, h, w, key, stream=3)
    assert offsets.shape == (n, 2) and offsets.dtype == np.int32
    assert got.dtype == np.float32 and got.shape == (n, c) + size
    d = max_diff(got, crop_ref(x, offsets, size, pad))
    assert d == 0.0, f"crop differs by {d}"


def test_random_crop_offsets_cover_the_range():
    offsets = RandomCrop(28, padding=2).draws(20000, 28, 28, key=7)
    for axis in range(2):
        counts = np.bincount(offsets[:, axis], minlength=5)
        assert len(counts) == 5 and counts.min() > 3500, counts  # uniform over 0..4: 4000 each


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_random_flip_matches_reference(isa, threads, rng, shape, p):
    x = images(rng, *shape)
    t = RandomHorizontalFlip(p)
    got = t.apply_keyed(x, 99, 1, 2, 0)
    flags = t.draws(len(x), 99, stream=1, slot=2).astype(bool)
    ref = np.where(flags[:, None, None, None], x[..., ::-1].astype(np.float64), x)
    assert max_diff(got, ref) == 0.0
    if p == 0.0:
        assert not flags.any()
    if p == 1.0:
        assert flags.all()


def test_flip_probability():
    flags = RandomHorizontalFlip(0.3).draws(20000, key=5)
    assert abs(flags.mean() - 0.3) < 0.015  # 4.6 standard deviations


@pytest.mark.parametrize("shape", SHAPES)
def test_normalize_matches_reference(isa, threads, rng, shape):
    x = images(rng, *shape)
    c = shape[1]
    mean, std = rng.standard_normal(c), rng.uniform(0.1, 3.0, c)
    got = Normalize(mean.tolist(), std.tolist())(x)
    ref = (x.astype(np.float64) - mean[None, :, None, None]) / std[None, :, None, None]
    d = max_diff(got, ref)
    assert d <= 1e-5 * max(1.0, np.abs(ref).max(initial=0.0)), f"normalize differs by {d}"
    one = Normalize(0.5, 2.0)(x)  # one value for every channel
    assert max_diff(one, (x.astype(np.float64) - 0.5) / 2.0) <= 1e-5 * max(1.0, np.abs(x).max(initial=0.0))


def test_compose_equals_steps_with_their_slots(rng):
    x = images(rng, 9, 3, 11, 13)
    crop, flip, norm = RandomCrop((9, 10), padding=2), RandomHorizontalFlip(), Normalize([1, 2, 3], [2, 3, 4])
    got = Compose([crop, flip, norm]).apply_keyed(x, 42, 5, 0, 0)
    ref = norm.apply_keyed(flip.apply_keyed(crop.apply_keyed(x, 42, 5, 0, 0), 42, 5, 1, 0), 42, 5, 2, 0)
    assert np.array_equal(got, ref)
    plain = Compose([lambda b: b * 2.0, norm])(x)  # any callable fits in
    assert max_diff(plain, norm(x * 2.0)) == 0.0


def test_transform_results_do_not_depend_on_threads(isa, rng):
    x = images(rng, 300, 3, 32, 32)
    t = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), Normalize([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])])
    results = []
    for n in (1, 2):
        gk.set_num_threads(n)
        results.append(t.apply_keyed(x, 8, 0, 0, 0))
    results.append(t.apply_keyed(x, 8, 0, 0, 1))  # the per-call thread count of workers
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_direct_call_draws_from_the_global_generator(rng):
    x = images(rng, 16, 1, 8, 8)
    t = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip()])
    gk.manual_seed(3)
    a, b = t(x), t(x)
    gk.manual_seed(3)
    assert np.array_equal(t(x), a) and np.array_equal(t(x), b)
    assert not np.array_equal(a, b)


def test_transform_errors(rng):
    x = images(rng, 2, 3, 8, 8)
    with pytest.raises(ValueError, match="NCHW batch"):
        RandomCrop(4)(x[0])
    with pytest.raises(ValueError, match="expected dtype float32, got float64"):
        RandomHorizontalFlip()(x.astype(np.float64))
    with pytest.raises(ValueError, match="expected dtype float32, got uint8"):
        Normalize(0, 1)(x.astype(np.uint8))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        RandomCrop(4)([1, 2])
    with pytest.raises(ValueError, match="smaller than the crop size 11x8"):
        RandomCrop((11, 8), padding=1)(x)
    with pytest.raises(ValueError, match="expected 2 channels"):
        Normalize([0, 0], [1, 1])(x)
    with pytest.raises(ValueError, match="std > 0"):
        Normalize([0, 0, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="disagree in length"):
        Normalize([0, 0, 0], [1, 1])
    with pytest.raises(ValueError, match=r"RandomHorizontalFlip: p: expected a value in \[0, 1\], got 1.5"):
        RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match=rf"RandomCrop: size: expected an integer in \[1, {2**30}\], got 0"):
        RandomCrop(0)
    with pytest.raises(ValueError, match=rf"RandomCrop: padding: expected an integer in \[0, {2**30}\], got -1"):
        RandomCrop(3, padding=-1)
    with pytest.raises(TypeError, match="transforms: expected a list"):
        Compose(RandomCrop(3))


# -- ArrayDataset -----------------------------------------------------------------------
def test_array_dataset_indexing(rng):
    x, y = images(rng, 10, 1, 3, 3), np.arange(10)
    ds = ArrayDataset(x, y)
    assert len(ds) == 10
    xi, yi = ds[4]
    assert np.array_equal(xi, x[4]) and yi == 4
    xs, ys = ds[np.array([9, 0, 9, -1])]
    assert np.array_equal(xs, x[[9, 0, 9, 9]]) and np.array_equal(ys, [9, 0, 9, 9])
    xs, ys = ds[[2, 3]]
    assert np.array_equal(ys, [2, 3])
    assert np.shares_memory(ds[2:5][0], x)  # slices are views, index arrays never copy the whole
    with pytest.raises(IndexError, match="index 10 is out of range for 10 samples"):
        ds[10]
    with pytest.raises(IndexError, match="index -11 is out of range"):
        ds[np.array([0, -11])]
    with pytest.raises(TypeError, match="1-D integer array"):
        ds[np.array([0.5])]


def test_array_dataset_errors():
    with pytest.raises(ValueError, match=r"arrays disagree in length: arrays\[0\] has 5 rows, arrays\[1\] has 4"):
        ArrayDataset(np.zeros(5), np.zeros(4))
    with pytest.raises(ValueError, match="at least one array"):
        ArrayDataset()
    with pytest.raises(TypeError, match=r"arrays\[0\]: expected a numpy.ndarray"):
        ArrayDataset([1, 2, 3])
    with pytest.raises(ValueError, match="0-d array"):
        ArrayDataset(np.array(1.0))


def test_array_dataset_non_contiguous_source(rng):
    x = rng.standard_normal((6, 8)).astype(np.float32)[:, ::2]
    assert np.array_equal(ArrayDataset(x)[np.array([5, 1])][0], x[[5, 1]])


# -- DataLoader -----------------------------------------------------------------------
def collect(loader):
    return [tuple(np.copy(a) for a in batch) for batch in loader]


@pytest.mark.parametrize("n,bs,drop_last,expected", [(10, 3, False, 4), (10, 3, True, 3), (9, 3, True, 3),
                                                      (2, 5, True, 0), (2, 5, False, 1), (0, 4, False, 0)])
def test_len_and_drop_last(n, bs, drop_last, expected):
    loader = DataLoader(ArrayDataset(np.arange(n)), batch_size=bs, drop_last=drop_last)
    assert len(loader) == expected
    batches = collect(loader)
    assert len(batches) == expected
    sizes = [len(b[0]) for b in batches]
    assert all(s == bs for s in sizes[:-1] if drop_last or s != sizes[-1])
    assert sum(sizes) == loader.num_samples == (expected * bs if drop_last else n)


def test_unshuffled_order_and_tuple_batches():
    x, y = np.arange(7.0), np.arange(7) * 10
    batches = collect(DataLoader(ArrayDataset(x, y), batch_size=3))
    assert [b[1].tolist() for b in batches] == [[0, 10, 20], [30, 40, 50], [60]]
    assert all(isinstance(b, tuple) and len(b) == 2 for b in batches)


def test_shuffle_is_a_new_permutation_each_epoch_and_follows_the_seed():
    loader = DataLoader(ArrayDataset(np.arange(50)), batch_size=8, shuffle=True)
    gk.manual_seed(1)
    e1 = np.concatenate([b[0] for b in loader])
    e2 = np.concatenate([b[0] for b in loader])
    assert sorted(e1) == list(range(50)) and sorted(e2) == list(range(50))
    assert not np.array_equal(e1, e2)
    gk.manual_seed(1)
    assert np.array_equal(np.concatenate([b[0] for b in loader]), e1)


def pipeline(x, y, num_workers, prefetch=2):
    transform = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip(), Normalize(0.5, 2.0)])
    return DataLoader(ArrayDataset(x, y), batch_size=7, shuffle=True, transform=transform,
                      num_workers=num_workers, prefetch=prefetch)


@pytest.mark.parametrize("threads_", [1, 2])
def test_same_batches_for_any_num_workers_and_threads(rng, threads_):
    x, y = images(rng, 45, 2, 8, 8), np.arange(45)
    gk.set_num_threads(threads_)
    runs = []
    for workers, prefetch in [(0, 2), (1, 1), (3, 2), (2, 5)]:
        gk.manual_seed(11)
        runs.append([collect(pipeline(x, y, workers, prefetch)) for _ in range(2)])  # two epochs
    for run in runs[1:]:
        for epoch_ref, epoch in zip(runs[0], run):
            assert len(epoch_ref) == len(epoch) == 7
            for a, b in zip(epoch_ref, epoch):
                assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(runs[0][0][0][0], runs[0][1][0][0])  # epochs differ
    # The transform saw the right samples: unaugmented crops of the labelled image.
    first = runs[0][0][0]
    assert first[0].shape == (7, 2, 8, 8)
    centre = first[0][:, :, 2:6, 2:6] * 2.0 + 0.5  # undo Normalize; some pixels stay in the image
    for img, label in zip(centre, first[1]):
        nearest = np.abs(img.reshape(-1, 1) - x[label].reshape(1, -1)).min(axis=1)
        assert nearest.max() < 1e-5, f"pixels not from sample {label}: off by {nearest.max()}"


def test_transform_applies_to_the_first_array_only(rng):
    x, z = images(rng, 6, 1, 4, 4), images(rng, 6, 1, 4, 4)
    (bx, bz), = collect(DataLoader(ArrayDataset(x, z), batch_size=6, transform=Normalize(1.0, 2.0)))
    assert max_diff(bx, (x.astype(np.float64) - 1.0) / 2.0) < 1e-6 and np.array_equal(bz, z)


class PerSample:
    """PyTorch style: one sample per __getitem__(int), an int label."""

    def __init__(self, x, ragged_at=None):
        self.x, self.ragged_at = x, ragged_at

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        img = self.x[i]
        if i == self.ragged_at:
            img = img[:, :-1]
        return img * 1.0, int(i) % 3  # int(i) fails for an index array


class SumsRows:
    """Accepts index arrays, but means something else by them: must be treated per-sample."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return (np.asarray(self.x[i]) + np.asarray(i).sum(),)


class BatchWise:
    """ds[index_array] -> a tuple of arrays; integers are not supported."""

    def __init__(self, x):
        self.x, self.calls = x, 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        if np.ndim(idx) != 1:
            raise TypeError("index arrays only")
        self.calls += 1
        return self.x[idx], np.asarray(idx)


def test_per_sample_dataset_is_collated(rng):
    x = rng.standard_normal((11, 2, 3)).astype(np.float32)
    loader = DataLoader(PerSample(x), batch_size=4, shuffle=True, num_workers=2)
    assert not loader._batch_wise
    gk.manual_seed(0)
    batches = collect(loader)
    gk.manual_seed(0)
    order = np.concatenate([b for b, in DataLoader(ArrayDataset(np.arange(11)), batch_size=4, shuffle=True)])
    xs, ys = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    assert xs.dtype == np.float32 and xs.shape == (11, 2, 3)
    assert np.array_equal(xs, x[order]) and np.array_equal(ys, order % 3) and ys.dtype == np.int64


def test_dataset_kind_is_probed_by_values(rng):
    x = rng.standard_normal((5, 3)).astype(np.float32)
    assert not DataLoader(SumsRows(x))._batch_wise
    (got,), = collect(DataLoader(SumsRows(x), batch_size=5))
    assert np.array_equal(got, x + np.arange(5)[:, None])
    ds = BatchWise(x)
    loader = DataLoader(ds, batch_size=2, shuffle=True)
    assert loader._batch_wise
    calls = ds.calls
    batches = collect(loader)
    assert ds.calls - calls == 3  # one call per batch
    for bx, bi in batches:
        assert np.array_equal(bx, x[bi])


def test_per_sample_errors(rng):
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"ragged shapes: field 0 of sample 4 has shape \(2, 2\)"):
        collect(DataLoader(PerSample(x, ragged_at=4), batch_size=6))

    class Fields(PerSample):
        def __getitem__(self, i):
            return (self.x[i],) if i == 2 else (self.x[i], 0)

    with pytest.raises(ValueError, match="returned 1 fields for sample 2, but 2"):
        collect(DataLoader(Fields(x), batch_size=6))


def test_worker_errors_propagate_and_early_exit_does_not_hang(rng):
    x = rng.standard_normal((20, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="ragged"):
        collect(DataLoader(PerSample(x[:, :, None], ragged_at=13), batch_size=4, num_workers=2))
    before = threading.active_count()
    for batch in DataLoader(ArrayDataset(x), batch_size=2, num_workers=3, prefetch=4):
        break
    del batch
    import gc

    gc.collect()
    assert threading.active_count() <= before


def test_loader_argument_errors():
    ds = ArrayDataset(np.arange(4))
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1, got 0"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="num_workers: expected an integer >= 0"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="prefetch: expected an integer >= 1"):
        DataLoader(ds, prefetch=0)
    with pytest.raises(TypeError, match="batch_size: expected an int, got float"):
        DataLoader(ds, batch_size=2.0)
    with pytest.raises(TypeError, match="dataset: expected an object with __len__ and __getitem__"):
        DataLoader(3)
    with pytest.raises(TypeError, match="transform: expected a callable"):
        DataLoader(ds, transform=3)


def test_memmap_dataset(tmp_path, rng):
    x = rng.standard_normal((40, 1, 6, 6)).astype(np.float32)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=x.shape)
    mm[:] = x
    mm.flush()
    del mm
    src = np.load(tmp_path / "x.npy", mmap_mode="r")
    gk.manual_seed(2)
    got = collect(DataLoader(ArrayDataset(src, np.arange(40)), batch_size=16, shuffle=True, num_workers=1))
    for bx, by in got:
        assert np.array_equal(bx, x[by])


# -- Trainer with loaders -----------------------------------------------------------------
def blobs(rng, n=200, d=12, classes=3):
    centers = rng.normal(size=(classes, d)) * 3.0
    y = rng.integers(0, classes, size=n)
    return (centers[y] + 0.3 * rng.normal(size=(n, d))).astype(np.float32).reshape(n, 1, 3, 4), y


def trainer(dropout=0.0):
    gk.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))
    return gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.Adam(model.parameters(), lr=1e-2))


def test_fit_with_a_loader_equals_fit_with_arrays(rng):
    x, y = blobs(rng)
    t1 = trainer(dropout=0.2)
    h1 = t1.fit(x, y, epochs=3, batch_size=16, verbose=0)
    t2 = trainer(dropout=0.2)
    h2 = t2.fit(DataLoader(ArrayDataset(x, y), batch_size=16, shuffle=True), epochs=3, verbose=0)
    assert h1.history["loss"] == h2.history["loss"]
    for a, b in zip(t1.model.parameters(), t2.model.parameters()):
        assert np.array_equal(a.data, b.data)


def test_fit_with_augmentation_is_the_same_for_any_num_workers(rng):
    x, y = blobs(rng)
    histories = []
    for workers in (0, 2):
        t = trainer(dropout=0.3)  # dropout draws in the main thread interleave with the workers
        loader = DataLoader(ArrayDataset(x, y), batch_size=16, shuffle=True, num_workers=workers,
                            transform=Compose([RandomCrop((3, 4), padding=1), RandomHorizontalFlip()]))
        val = DataLoader(ArrayDataset(x[:50], y[:50]), batch_size=20, num_workers=workers)
        histories.append(t.fit(loader, epochs=2, validation_data=val, verbose=0).history)
    assert histories[0] == histories[1]
    assert histories[0]["val_accuracy"][-1] > 0.6  # learns despite the augmentation (chance: 0.33)


def test_evaluate_and_predict_accept_loaders(rng):
    x, y = blobs(rng, n=101)
    t = trainer()
    t.fit(x, y, epochs=2, verbose=0)
    ref = t.evaluate(x, y)
    got = t.evaluate(DataLoader(ArrayDataset(x, y), batch_size=13, num_workers=1))
    assert got.keys() == ref.keys()
    assert abs(got["loss"] - ref["loss"]) < 1e-6 and got["accuracy"] == ref["accuracy"]
    out = t.predict(DataLoader(ArrayDataset(x), batch_size=13))
    assert np.array_equal(out, t.predict(x))
    assert t.history.params["samples"] == 101


def test_trainer_loader_errors(rng):
    x, y = blobs(rng, n=20)
    t = trainer()
    loader = DataLoader(ArrayDataset(x, y), batch_size=4)
    with pytest.raises(ValueError, match="y: expected None when x is a DataLoader"):
        t.fit(loader, y, verbose=0)
    with pytest.raises(ValueError, match="validation_split: not available with a DataLoader"):
        t.fit(loader, validation_split=0.2, verbose=0)
    with pytest.raises(TypeError, match="DataLoader batch: x: expected dtype float32"):
        t.fit(DataLoader(ArrayDataset(x.astype(np.float64), y)), verbose=0)
    with pytest.raises(ValueError, match=r"expected a DataLoader of \(x, y\) batches"):
        t.evaluate(DataLoader(ArrayDataset(x)))
    with pytest.raises(ValueError, match="empty DataLoader"):
        t.fit(DataLoader(ArrayDataset(x, y), batch_size=32, drop_last=True), verbose=0)


def test_array_fit_from_a_memmap_equals_in_memory(tmp_path, rng):
    x, y = blobs(rng, n=90)
    np.save(tmp_path / "x.npy", x)
    t1 = trainer()  # seeds the generator: both runs draw the same permutations
    h1 = t1.fit(x, y, epochs=2, batch_size=16, verbose=0)
    t2 = trainer()
    h2 = t2.fit(np.load(tmp_path / "x.npy", mmap_mode="r"), y, epochs=2, batch_size=16, verbose=0)
    assert h1.history == h2.history
    for a, b in zip(t1.model.parameters(), t2.model.parameters()):
        assert np.array_equal(a.data, b.data)


# -- issue 25: object arrays, fork, nested Compose, collation dtypes, argument errors ------
def run_script(script, timeout=180):
    """Run a script in a fresh interpreter (a crash or a hang there fails the test, not pytest)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_object_arrays_are_gathered_with_reference_counts():
    # The C++ row copy once copied the PyObject pointers without counting them: freed labels,
    # then a crash after a few epochs. In a subprocess, so a crash fails this test only.
    out = run_script("""
        import sys
        import numpy as np
        import gradkit as gk
        from gradkit import _core
        from gradkit.data import ArrayDataset, DataLoader

        n = 50
        labels = np.array(["label-%d-" % i + "x" * (i % 7) for i in range(n)], dtype=object)
        pairs = np.empty((n, 2), dtype=object)  # 2-D object rows too
        pairs[:, 0], pairs[:, 1] = labels, [(i, str(i)) for i in range(n)]
        counts = [sys.getrefcount(s) for s in labels]
        ds = ArrayDataset(np.arange(n), labels, pairs)
        gk.manual_seed(0)
        for epoch in range(30):
            for workers in (0, 2):
                for i, lab, pair in DataLoader(ds, batch_size=7, shuffle=True, num_workers=workers):
                    assert lab.dtype == object and pair.dtype == object
                    assert all(a is labels[j] for a, j in zip(lab, i)), "not the source's objects"
                    assert all(p[0] is labels[j] and p[1] == (j, str(j)) for p, j in zip(pair, i))
        del i, lab, pair
        assert [sys.getrefcount(s) for s in labels] == counts, "reference counts changed"
        lab, = ArrayDataset(labels)[np.array([3, 3, 3, 0])]
        assert lab.tolist() == [labels[3]] * 3 + [labels[0]]
        try:
            _core.gather_rows(np.empty(1, object), labels, np.array([0]))
        except TypeError as e:
            assert "src: expected an array without Python objects" in str(e), e
        else:
            raise AssertionError("gather_rows copied object pointers")
        print("objects ok")
    """)
    assert out.returncode == 0 and "objects ok" in out.stdout, f"exit {out.returncode}: {out.stdout}{out.stderr}"


def test_a_child_forked_mid_epoch_continues_the_iterator():
    # The parent's prefetch threads do not exist in a forked child: it once blocked forever
    # on their futures. The child must give the same batches as the parent, without hanging.
    out = run_script("""
        import multiprocessing as mp
        import numpy as np
        import gradkit as gk
        from gradkit.data import ArrayDataset, Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip

        rng = np.random.default_rng(0)
        x = rng.standard_normal((60, 2, 6, 6)).astype(np.float32)
        t = Compose([RandomCrop(6, padding=1), RandomHorizontalFlip(), Normalize(0.5, 2.0)])
        loader = DataLoader(ArrayDataset(x, np.arange(60)), batch_size=4, shuffle=True, transform=t, num_workers=2,
                            prefetch=3)

        def rest(it):
            return [(a.copy(), b.copy()) for a, b in it]

        def child(it, q):
            try:
                q.put((rest(it), rest(iter(loader))))  # the epoch's rest, then a new epoch with workers
            except BaseException as e:  # report, never leave the parent waiting
                q.put(repr(e))

        if __name__ == "__main__":
            gk.manual_seed(3)
            it = iter(loader)
            first = [next(it) for _ in range(2)]
            ctx = mp.get_context("fork")
            q = ctx.Queue()
            p = ctx.Process(target=child, args=(it, q), daemon=True)  # a hung child dies with us
            p.start()
            mine, next_epoch = rest(it), rest(iter(loader))
            got = q.get(timeout=60)
            p.join(30)
            assert not isinstance(got, str), "child failed: " + got
            assert p.exitcode == 0, f"child exit code {p.exitcode}"
            theirs, their_next = got
            assert len(first) + len(mine) == len(loader) == 15 and len(theirs) == len(mine)
            for (a, b), (c, d) in zip(mine + next_epoch, theirs + their_next):
                assert np.array_equal(a, c) and np.array_equal(b, d)
            print("fork ok")
    """)
    assert out.returncode == 0 and "fork ok" in out.stdout, f"exit {out.returncode}: {out.stdout}{out.stderr}"


def test_nested_compose_gives_each_random_transform_its_own_draws(rng):
    # Inner and outer flips once drew from the same slot: every image flipped twice or never.
    x = images(rng, 200, 1, 3, 4)
    inner, outer = RandomHorizontalFlip(), RandomHorizontalFlip()
    t = Compose([Compose([Normalize(0.0, 1.0), inner]), outer])
    gk.manual_seed(5)
    y = t(x)
    unchanged = int(np.all(y == x, axis=(1, 2, 3)).sum())
    assert 60 <= unchanged <= 140, f"{unchanged} of 200 images unchanged (independent flips: about 100)"
    # Depth-first slots: Normalize 0, inner 1, outer 2, whatever the nesting.
    key = 987654321
    flags = inner.draws(200, key, 4, 1) ^ outer.draws(200, key, 4, 2)
    assert np.array_equal(t.apply_keyed(x, key, 4, 0, 0), np.where(flags[:, None, None, None] == 1, x[..., ::-1], x))
    crop, flip, norm = RandomCrop(3, padding=1), RandomHorizontalFlip(), Normalize(1.0, 2.0)
    deep = Compose([Compose([Compose([crop]), flip]), Compose([]), norm, Compose([RandomCrop(2)])])
    ref = RandomCrop(2).apply_keyed(norm.apply_keyed(flip.apply_keyed(crop.apply_keyed(x, key, 4, 0, 0), key, 4, 1, 0), key, 4, 2, 0),
                               key, 4, 3, 0)
    assert np.array_equal(deep.apply_keyed(x, key, 4, 0, 0), ref)


def test_nested_compose_is_the_same_for_any_num_workers(rng):
    x, y = images(rng, 30, 2, 6, 6), np.arange(30)
    t = Compose([RandomHorizontalFlip(), Compose([RandomCrop(6, padding=2), RandomHorizontalFlip(0.3)])])
    runs = []
    for workers in (0, 1, 2):
        gk.manual_seed(2)
        runs.append(collect(DataLoader(ArrayDataset(x, y), batch_size=7, shuffle=True, transform=t,
                                       num_workers=workers)))
    for run in runs[1:]:
        assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(runs[0], run))


class Items:
    """A per-sample dataset over a list of prepared items."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[int(i)]


def test_per_sample_collation_keeps_every_value_or_refuses():
    # Mixed ints and floats once became ints, strings were cut to the first one's width.
    (x, y), = collect(DataLoader(Items([(np.zeros(2, np.float32), [1, 2]), (np.ones(2, np.float32), [1.7, 2.5])]),
                                 batch_size=2))
    assert y.dtype == np.float64 and y.tolist() == [[1.0, 2.0], [1.7, 2.5]] and x.dtype == np.float32
    (s,), = collect(DataLoader(Items([("ab",), ("abcd",), ("c",)]), batch_size=3))
    assert s.tolist() == ["ab", "abcd", "c"]
    (b,), = collect(DataLoader(Items([(True,), (7,)]), batch_size=2))
    assert b.dtype == np.int64 and b.tolist() == [1, 7]
    (u,), = collect(DataLoader(Items([(np.uint8(200),), (np.float32(0.5),)]), batch_size=2))
    assert u.dtype == np.float32 and u.tolist() == [200.0, 0.5]
    with pytest.raises(TypeError, match=r"field 0 as int64 for sample 1 and as float64 for sample 0: float64, "
                                        r"which holds both, would round the first one's integers beyond 2\*\*53"):
        collect(DataLoader(Items([(0.5,), (2**53 + 1,)]), batch_size=2))
    with pytest.raises(TypeError, match=r"field 1 as <U1 for sample 1 and as int64 for sample 0: no dtype holds both"):
        collect(DataLoader(Items([(0.0, 3), (1.0, "a")]), batch_size=2))
    with pytest.raises(TypeError, match=r"field 0 as <U1 for sample 1 and as \|S1 for sample 0"):
        collect(DataLoader(Items([(b"a",), ("a",)]), batch_size=2))
    with pytest.raises(TypeError, match=r"returned NoneType as field 1 of sample 2; expected an array, a number"):
        collect(DataLoader(Items([(0.0, 1), (1.0, 2), (2.0, None)]), batch_size=3))
    with pytest.raises(TypeError, match=r"returned NoneType as field 0 of sample 0"):
        collect(DataLoader(Items([None, None]), batch_size=2))
    with pytest.raises(TypeError, match=r"returned a dict for sample 0; expected a tuple"):
        collect(DataLoader(Items([{"x": 1}, {"x": 2}]), batch_size=2))
    with pytest.raises(TypeError, match=r"returned list as field 0 of sample 1"):
        collect(DataLoader(Items([([1, 2],), ([1, [2, 3]],)]), batch_size=2))


def test_batch_indices_name_each_row_s_sample_in_the_dataset(rng):
    # What the Trainer needs to name a bad label by its sample, not its row in the batch.
    loader = DataLoader(ArrayDataset(np.arange(23) * 10), batch_size=5, shuffle=True, num_workers=2)
    gk.manual_seed(4)
    plan = loader.plan_epoch()
    for b, (values,) in enumerate(loader.batches(plan)):
        assert np.array_equal(values, loader.batch_indices(plan, b) * 10)
    assert b == 4 and len(loader.batch_indices(plan, 4)) == 3


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_epoch_plan_and_reused_batches_give_the_plain_batches(rng, shuffle, drop_last):
    """plan_epoch + batches(reuse_buffers=True), the Trainer's way with arrays: the same values as
    iterating, views of the arrays when in order, one pair of buffers reused when shuffled."""
    x, y = rng.normal(size=(23, 3, 2)).astype(np.float32), rng.integers(0, 5, 23)
    loader = DataLoader(ArrayDataset(x, y), batch_size=5, shuffle=shuffle, drop_last=drop_last)
    gk.manual_seed(6)
    expected = [tuple(a.copy() for a in batch) for batch in loader]
    gk.manual_seed(6)
    plan = loader.plan_epoch()
    assert isinstance(plan, gk.data.loader.EpochPlan) and plan.key is None and len(plan.order) == 23
    assert loader.num_batches(plan) == len(loader) == (4 if drop_last else 5)
    got, bases = [], set()
    for b, (xb, yb) in enumerate(loader.batches(plan, reuse_buffers=True)):
        rows = loader.batch_indices(plan, b)
        assert np.array_equal(xb, x[rows]) and np.array_equal(yb, y[rows])
        assert np.shares_memory(xb, x) == (not shuffle)
        bases.add(id(xb.base) if shuffle else None)
        got.append((xb.copy(), yb.copy()))
    assert len(bases) == 1  # shuffled: every batch is a view of the same buffer
    assert len(got) == len(expected) and all(np.array_equal(a, b) for g, e in zip(got, expected)
                                              for a, b in zip(g, e))
    later = [yb.copy() for _, yb in loader.batches(plan, start_batch=2, reuse_buffers=True)]
    assert len(later) == len(expected) - 2 and all(np.array_equal(a, e[1]) for a, e in zip(later, expected[2:]))


def test_reused_batches_need_arrays_and_the_calling_thread(rng):
    x = rng.normal(size=(6, 2)).astype(np.float32)
    threaded = DataLoader(ArrayDataset(x), batch_size=2, num_workers=1)
    with pytest.raises(ValueError, match="reuse_buffers: expected an ArrayDataset and num_workers=0, got "
                                         "ArrayDataset and num_workers=1"):
        next(threaded.batches(threaded.plan_epoch(), reuse_buffers=True))
    per_sample = DataLoader([(v,) for v in x], batch_size=2)
    with pytest.raises(ValueError, match="got list and num_workers=0"):
        next(per_sample.batches(per_sample.plan_epoch(), reuse_buffers=True))
    strided = np.asfortranarray(rng.normal(size=(6, 4)).astype(np.float32))  # not C-contiguous: gathered
    loader = DataLoader(ArrayDataset(strided), batch_size=4)
    batches = [b[0].copy() for b in loader.batches(loader.plan_epoch(), reuse_buffers=True)]
    assert np.array_equal(np.concatenate(batches), strided)


def test_transform_and_index_arguments_name_the_argument(rng):
    x = images(rng, 2, 1, 5, 5)
    with pytest.raises(ValueError, match=rf"RandomCrop: padding: expected an integer in \[0, {2**30}\], "
                                         r"got 1099511627776"):
        RandomCrop(4, padding=2**40)
    with pytest.raises(ValueError, match=rf"RandomCrop: size: expected an integer in \[1, {2**30}\], got {2**62}"):
        RandomCrop((4, 2**62))
    with pytest.raises(TypeError, match=r"RandomCrop: size: expected an int or a pair of ints, got True"):
        RandomCrop(True)
    with pytest.raises(TypeError, match=r"RandomCrop: padding: expected an int, got bool"):
        RandomCrop(4, padding=True)
    with pytest.raises(TypeError, match=r"Normalize: mean: expected a number or a sequence of numbers, got 'abc'"):
        Normalize("abc", 1.0)
    with pytest.raises(TypeError, match=r"Normalize: std: expected a number or a sequence of numbers"):
        Normalize(0.0, [True, False])
    with pytest.raises(TypeError, match=r"Normalize: std: expected a number or a sequence of numbers"):
        Normalize(0.0, [1.0, [2.0]])
    assert RandomCrop(5, padding=2**30 - 1).apply_keyed(x, 1, 0, 0, 0).shape == (2, 1, 5, 5)  # int32 offsets
    with pytest.raises(ValueError, match=r"RandomCrop: x: images of 5x5 padded by 1073741824 give more than 2\*\*31 "
                                         r"crop positions per axis"):
        RandomCrop(5, padding=2**30)(x)
    with pytest.raises(TypeError, match=r"ArrayDataset: index: expected an int, a slice or a 1-D integer array, "
                                        r"got bool"):
        ArrayDataset(np.arange(3))[True]
    with pytest.raises(TypeError, match=r"DataLoader: num_workers: expected an int, got bool"):
        DataLoader(ArrayDataset(np.arange(3)), num_workers=True)
