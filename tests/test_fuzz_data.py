"""Fuzzing the data pipeline with hypothesis (fixed seed per run): ArrayDataset, per-sample and
batch-wise datasets through DataLoader with random batch_size, shuffle, drop_last, num_workers
0/1/2, prefetch and transforms (nested Composes included), plus bad arguments, index kinds and
per-sample dtype mixes. Each case either raises a TypeError/ValueError naming the argument or
its batches are checked against a NumPy reference: every sample exactly once (the first
num_samples of a permutation), rows that belong to their labels, each transformed image one of
the outcomes its transforms allow, and the same batches as num_workers=0. A case counts only
after its checks ran (CHECKED below, per test, checked against its plan at the end)."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import gradkit as gk
from fuzz_helpers import check_error, fuzz, planned
from gradkit.data import ArrayDataset, Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip
from test_data_pipeline import Items

CHECKED = {}  # test name -> cases whose checks all ran


def checked(name):
    CHECKED[name] = CHECKED.get(name, 0) + 1


class PerSample:
    """PyTorch style: ds[i] -> (image, label), one sample per call."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[int(i)], int(self.y[int(i)])


class BatchWise(PerSample):
    """ds[index_array] -> (images, labels); no single-index access."""

    def __getitem__(self, idx):
        if np.ndim(idx) != 1:
            raise TypeError("index arrays only")
        return self.x[idx], self.y[idx]


# -- transforms and the outcomes a NumPy reference allows ------------------------------------
@st.composite
def transforms(draw, depth=0):
    """A gk transform (crop, flip, normalize, or a Compose of them, nested up to depth 2), or a callable."""
    kinds = ["crop", "flip", "normalize", "callable"] + (["compose"] if depth < 2 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "crop":
        return RandomCrop(draw(st.sampled_from([1, 2, 3, (2, 3), (4, 1)])), padding=draw(st.sampled_from([0, 1, 2])))
    if kind == "flip":
        return RandomHorizontalFlip(draw(st.sampled_from([0.0, 0.5, 1.0])))
    if kind == "normalize":
        return Normalize(draw(st.sampled_from([0.0, 0.5, -2.0])), draw(st.sampled_from([1.0, 0.25, 3.0])))
    if kind == "callable":
        return lambda b: b * np.float32(2.0) + np.float32(1.0)
    return Compose(draw(st.lists(transforms(depth=depth + 1), min_size=0, max_size=3)))


def outcomes(img, t):
    """Every image (float64, C x H x W) that transform t may give for img, or None if t must refuse it."""
    if isinstance(t, Compose):
        outs = [img]
        for step in t.transforms:
            outs = [o for prev in outs for o in (outcomes(prev, step) or [])]
        return outs
    if isinstance(t, RandomCrop):
        (oh, ow), p = t.size, t.padding
        padded = np.pad(img, ((0, 0), (p, p), (p, p)))
        if padded.shape[1] < oh or padded.shape[2] < ow:
            return None
        return [padded[:, y:y + oh, x:x + ow] for y in range(padded.shape[1] - oh + 1)
                for x in range(padded.shape[2] - ow + 1)]
    if isinstance(t, RandomHorizontalFlip):
        return [img[:, :, ::-1]] if t.p == 1.0 else [img] if t.p == 0.0 else [img, img[:, :, ::-1]]
    if isinstance(t, Normalize):
        return [(img - t.mean[0]) / t.std[0]]
    return [img * 2.0 + 1.0]


def n_outcomes(shape, t) -> int:
    """How many outcomes outcomes() lists for an image of this shape (to keep the search small)."""
    if isinstance(t, Compose):
        total = 1
        for step in t.transforms:
            total *= n_outcomes(shape, step)
            if isinstance(step, RandomCrop):
                shape = shape[:1] + step.size
        return total
    if isinstance(t, RandomCrop):
        return max(1, (shape[1] + 2 * t.padding - t.size[0] + 1) * (shape[2] + 2 * t.padding - t.size[1] + 1))
    return 2 if isinstance(t, RandomHorizontalFlip) else 1


def refused(shape, t) -> bool:
    """Does some crop in t find images smaller than its size?"""
    if isinstance(t, Compose):
        for step in t.transforms:
            if refused(shape, step):
                return True
            if isinstance(step, RandomCrop):
                shape = shape[:1] + step.size
        return False
    return isinstance(t, RandomCrop) and (shape[1] + 2 * t.padding < t.size[0] or shape[2] + 2 * t.padding < t.size[1])


# -- loaders: every sample once, rows from their labels, transforms as the reference allows --
def run(loader, seed, epochs=2):
    gk.manual_seed(seed)
    return [[tuple(np.copy(a) for a in batch) for batch in loader] for _ in range(epochs)]


@fuzz(300)
@given(kind=st.sampled_from(["array", "per_sample", "batch_wise"]), n=st.sampled_from([1, 2, 3, 5, 8, 17]),
       chw=st.tuples(st.sampled_from([1, 2]), st.sampled_from([1, 2, 3, 4]), st.sampled_from([1, 3, 4])),
       batch_size=st.sampled_from([1, 2, 3, 5, 16]), shuffle=st.booleans(), drop_last=st.booleans(),
       num_workers=st.sampled_from([0, 1, 2]), prefetch=st.sampled_from([1, 2, 5]),
       transform=st.one_of(st.none(), transforms()), seed=st.integers(0, 2**32 - 1))
def test_loader_batches_match_the_reference(kind, n, chw, batch_size, shuffle, drop_last, num_workers, prefetch,
                                             transform, seed):
    assume(transform is None or n_outcomes(chw, transform) <= 600)  # the reference searches every outcome
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + chw).astype(np.float32)
    y = np.arange(n, dtype=np.int64) * 7 + 3  # the label names the sample
    ds = {"array": ArrayDataset, "per_sample": PerSample, "batch_wise": BatchWise}[kind](x, y)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, transform=transform,
                        num_workers=num_workers, prefetch=prefetch)
    expected_batches = n // batch_size if drop_last else -(-n // batch_size)
    assert len(loader) == expected_batches and loader.num_samples == min(expected_batches * batch_size, n)
    if transform is not None and expected_batches and refused(chw, transform):
        with pytest.raises(ValueError, match="smaller than the crop size"):
            run(loader, seed, epochs=1)
        checked("test_loader_batches_match_the_reference")
        checked("test_loader_batches_match_the_reference: a crop refused")
        return
    epochs = run(loader, seed)
    for epoch in epochs:
        assert len(epoch) == expected_batches
        labels = np.concatenate([b[1] for b in epoch]) if epoch else np.zeros(0, np.int64)
        assert labels.dtype == np.int64 and len(labels) == loader.num_samples
        samples = (labels - 3) // 7
        assert np.array_equal(samples * 7 + 3, labels) and len(set(samples.tolist())) == len(samples)
        assert samples.min(initial=0) >= 0 and samples.max(initial=0) < n
        if not shuffle:
            assert np.array_equal(samples, np.arange(loader.num_samples))
        for b, (xb, yb) in enumerate(epoch):
            assert len(xb) == len(yb) == (batch_size if b < expected_batches - 1 or drop_last
                                          else n - b * batch_size)
            for img, label in zip(xb, yb):
                src = x[(label - 3) // 7].astype(np.float64)
                if transform is None:
                    assert img.dtype == np.float32 and np.array_equal(img, src)
                    continue
                cands = outcomes(src, transform)
                errs = [np.max(np.abs(img - c), initial=0.0) / (1.0 + np.max(np.abs(c), initial=0.0))
                        for c in cands if c.shape == img.shape]
                assert errs and min(errs) <= 1e-6, f"image of sample {(label - 3) // 7}: off by {min(errs or [np.inf])}"
    # the same seed gives the same batches whatever num_workers and prefetch
    serial = run(DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, transform=transform), seed)
    for e1, e2 in zip(epochs, serial):
        assert len(e1) == len(e2)
        for b1, b2 in zip(e1, e2):
            assert all(np.array_equal(u, v) for u, v in zip(b1, b2))
    checked("test_loader_batches_match_the_reference")
    if transform is not None:
        checked("test_loader_batches_match_the_reference: transformed images checked")


# -- bad arguments: some arguments bad, the others valid -----------------------------------
def loader_args():
    ds = ArrayDataset(np.arange(6.0))
    return {
        "dataset": ([ds, PerSample(np.zeros((4, 1, 2, 2), np.float32), np.arange(4))], [3, None, np.float32(1.0)]),
        "batch_size": ([1, 2, 5, 64], [0, -3, 2.0, True, "4", None]),
        "shuffle": ([True, False], []),
        "drop_last": ([True, False], []),
        "transform": ([None, Normalize(0.0, 1.0), lambda b: b], [3, "flip", [RandomHorizontalFlip()]]),
        "num_workers": ([0, 1, 2], [-1, True, 1.5, "2"]),
        "prefetch": ([1, 2, 5], [0, -2, False, 2.5]),
    }


TRANSFORM_ARGS = {  # constructor -> {argument: (valid values, bad values)}
    RandomCrop: {"size": ([1, 3, (2, 4)], [0, -1, True, 2.5, (1, 2, 3), 2**31, (3, 2**40), "3", None]),
                 "padding": ([0, 1, 4], [-1, True, 1.5, 2**40, None, "1"])},
    RandomHorizontalFlip: {"p": ([0.0, 0.3, 1.0, 1], [-0.1, 1.5, True, "a", float("nan"), None])},
    Normalize: {"mean": ([0.0, [1.0, 2.0], np.float32(3.0), 4], ["abc", None, [True], [1.0, [2.0]], float("inf"),
                                                                  [[1.0]]]),
                "std": ([1.0, 0.5, [2.0, 3.0]], [0.0, -1.0, "x", [1.0, 0.0], [False], float("nan")])},
    Compose: {"transforms": ([[], [RandomHorizontalFlip()], [Compose([Normalize(0.0, 1.0)]), lambda b: b]],
                             [RandomHorizontalFlip(), 3, "ab", [3], [RandomCrop(1), None]])},
}


def some_bad(draw, spec):
    """Arguments drawn from spec (name -> (valid, bad)), at least one of them bad; and the bad names."""
    names = sorted(n for n, (_, bad) in spec.items() if bad)
    bad_names = draw(st.sets(st.sampled_from(names), min_size=1))
    args = {n: draw(st.sampled_from(spec[n][1] if n in bad_names else spec[n][0])) for n in spec}
    return args, bad_names


@fuzz(300)
@given(data=st.data())
def test_bad_loader_arguments_name_the_argument(data):
    args, bad = some_bad(data.draw, loader_args())
    with pytest.raises((TypeError, ValueError)) as info:
        DataLoader(**args)
    check_error(info.value, sorted(bad))
    assert str(info.value).startswith("DataLoader:"), str(info.value)
    checked("test_bad_loader_arguments_name_the_argument")


@fuzz(150)  # the space holds about 190 distinct cases
@given(cls=st.sampled_from(list(TRANSFORM_ARGS)), data=st.data())
def test_bad_transform_arguments_name_the_argument(cls, data):
    args, bad = some_bad(data.draw, TRANSFORM_ARGS[cls])
    with pytest.raises((TypeError, ValueError)) as info:
        cls(**args)
    check_error(info.value, sorted(bad))
    assert str(info.value).startswith(cls.__name__ + ":"), str(info.value)
    checked("test_bad_transform_arguments_name_the_argument")


# -- ArrayDataset indexing against NumPy ---------------------------------------------------
@fuzz(200)
@given(n=st.sampled_from([0, 1, 2, 5, 9]), dtype=st.sampled_from([np.float32, np.int16, np.bool_, "<U3", object]),
       index=st.one_of(st.integers(-12, 12), st.lists(st.integers(-12, 12), max_size=6),
                       st.sampled_from([True, 1.5, "0", None, (0, 1), slice(1, None, 2)])),
       seed=st.integers(0, 2**32 - 1))
def test_array_dataset_indexing_matches_numpy(n, dtype, index, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 100, size=(n, 2)).astype(dtype)
    b = np.arange(n)
    ds = ArrayDataset(a, b)
    if isinstance(index, slice):
        got = ds[index]
        assert np.array_equal(got[0], a[index]) and np.array_equal(got[1], b[index])
    elif isinstance(index, (bool, float, str)) or index is None:
        with pytest.raises(TypeError, match=r"ArrayDataset: index: expected an int, a slice or a 1-D integer array"):
            ds[index]
    else:  # an int, a list or a tuple of ints
        ref = index if isinstance(index, int) else np.array(index, dtype=np.int64)
        if any(not -n <= i < n for i in np.atleast_1d(ref)):
            with pytest.raises(IndexError, match=r"ArrayDataset: index -?\d+ is out of range for \d+ samples"):
                ds[index]
        else:
            got = ds[index]
            assert np.array_equal(got[0], a[ref]) and np.array_equal(got[1], b[ref])
            assert got[0].dtype == a.dtype
    checked("test_array_dataset_indexing_matches_numpy")


# -- per-sample collation: a dtype that holds every value exactly, or a clear error ----------
VALUES = st.one_of(st.integers(-5, 5), st.sampled_from([2**53 + 1, -(2**60), 2**40]),
                   st.floats(allow_nan=False, allow_infinity=False, width=64), st.booleans(),
                   st.text(alphabet="ab\x00é", max_size=4), st.sampled_from([None, {"k": 1}]))


def expected_collation(values):
    """The reference rule: the stacked values, or the exception type and message part."""
    if any(v is None or isinstance(v, dict) for v in values):
        return TypeError, "expected an array, a number or a string"
    kinds = {"str" if isinstance(v, str) else "num" for v in values}
    if len(kinds) > 1:
        return TypeError, "no dtype holds both"
    has_float = any(isinstance(v, float) for v in values)
    if has_float and any(isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53 for v in values):
        return TypeError, "would round"
    if kinds == {"str"}:
        return [v.rstrip("\x00") for v in values], np.str_  # NumPy's strings drop trailing NULs, as in any array
    if has_float:
        return values, np.float64
    return values, np.int64 if any(not isinstance(v, bool) for v in values) else np.bool_


@fuzz(300)
@given(values=st.lists(VALUES, min_size=1, max_size=5), num_workers=st.sampled_from([0, 2]))
def test_per_sample_collation_is_exact_or_refused(values, num_workers):
    expected = expected_collation(values)
    loader = DataLoader(Items([(v,) for v in values]), batch_size=len(values), num_workers=num_workers)
    if isinstance(expected[0], type):
        with pytest.raises(expected[0], match=expected[1]):
            list(loader)
    else:
        (batch,), = list(loader)
        assert batch.shape == (len(values),) and batch.dtype.type == expected[1], f"{values} as {batch!r}"
        assert batch.tolist() == expected[0], f"{values} collated as {batch!r}"
    checked("test_per_sample_collation_is_exact_or_refused")


PLANNED = {"test_loader_batches_match_the_reference": 300, "test_bad_loader_arguments_name_the_argument": 300,
           "test_bad_transform_arguments_name_the_argument": 150, "test_array_dataset_indexing_matches_numpy": 200,
           "test_per_sample_collation_is_exact_or_refused": 300}


@pytest.fixture(autouse=True)
def _each_test_checks_its_cases(request):
    name = request.node.name
    before, before_parts = CHECKED.get(name, 0), dict(CHECKED)
    yield
    done = CHECKED.get(name, 0) - before
    assert done >= planned(PLANNED[name]), f"{name}: {done} cases checked, {planned(PLANNED[name])} planned"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        parts = "".join(f", {CHECKED[key] - before_parts.get(key, 0)} with {key.split(': ')[1]}" for key in CHECKED
                        if key.startswith(name + ": "))
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"fuzz data: {name}: {done} cases checked{parts}")
