"""Datasets: ``ArrayDataset`` over arrays or memmaps, and fetching a batch from any dataset.

A dataset is any object with ``__len__`` and ``__getitem__``. It is batch-wise when
``ds[index_array]`` returns a tuple of arrays (one row per index), per-sample (PyTorch
style) when ``ds[i]`` returns a tuple for one sample; per-sample items are collated
by stacking.
"""
from __future__ import annotations

import operator

import numpy as np

from .. import _core

__all__ = ["ArrayDataset"]


def gather(src: np.ndarray, idx: np.ndarray, out: np.ndarray, nthreads: int = 0) -> np.ndarray:
    """out[i] = src[idx[i]] (idx int64, in range): the C++ gather, straight from src (a memmap too).

    Arrays holding Python objects (e.g. string labels of dtype object) are gathered by NumPy,
    which counts the objects' references; a row copy would not.
    """
    if src.flags.c_contiguous and not src.dtype.hasobject:
        _core.gather_rows(out, src, idx, nthreads)
    else:
        np.take(src, idx, axis=0, out=out)
    return out


def _index_array(index, n: int, who: str) -> np.ndarray:
    """index as an int64 array of indices in [0, n) (negative ones counted from the end)."""
    idx = np.asarray(index)
    if isinstance(index, (list, tuple)) and not index:  # [] reads as float64
        idx = idx.astype(np.int64)
    if idx.dtype == np.bool_ or not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1:
        raise TypeError(f"{who}: index: expected an int, a slice or a 1-D integer array, got "
                        f"{type(index).__name__} of dtype {idx.dtype} and shape {idx.shape}")
    idx = idx.astype(np.int64, copy=False)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = idx[(idx < -n) | (idx >= n)][0]
        raise IndexError(f"{who}: index {bad} is out of range for {n} samples")
    return np.where(idx < 0, idx + n, idx) if idx.size and idx.min() < 0 else idx


class ArrayDataset:
    """Samples from arrays (or memmaps) that share their first axis, never copied whole.

    ``ds[i]`` returns a tuple of rows (views), ``ds[index_array]`` a tuple of new
    arrays gathered by index in C++ straight from the source (a memmap reads only
    those rows; arrays of Python objects are gathered by NumPy), ``ds[slice]`` a tuple of views.

    Args:
        *arrays: one or more ``numpy.ndarray`` (or ``numpy.memmap``) of shape (N, ...).

    Attributes:
        arrays: the tuple of source arrays.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("ArrayDataset: arrays: expected at least one array, got none")
        for k, a in enumerate(arrays):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"ArrayDataset: arrays[{k}]: expected a numpy.ndarray or numpy.memmap, "
                                f"got {type(a).__name__}")
            if a.ndim < 1:
                raise ValueError(f"ArrayDataset: arrays[{k}]: expected an array of shape (N, ...), got a 0-d array")
            if len(a) != len(arrays[0]):
                raise ValueError(f"ArrayDataset: arrays disagree in length: arrays[0] has {len(arrays[0])} rows, "
                                 f"arrays[{k}] has {len(a)}")
        self.arrays = tuple(arrays)

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(a[index] for a in self.arrays)
        if not isinstance(index, (np.ndarray, list, tuple)):
            try:
                i = None if isinstance(index, (bool, np.bool_)) else operator.index(index)
            except TypeError:
                i = None
            if i is None:
                raise TypeError(f"ArrayDataset: index: expected an int, a slice or a 1-D integer array, "
                                f"got {type(index).__name__}")
            n = len(self)
            if not -n <= i < n:
                raise IndexError(f"ArrayDataset: index {i} is out of range for {n} samples")
            return tuple(a[i] for a in self.arrays)
        return self.gather(_index_array(index, len(self), "ArrayDataset"))

    def gather(self, idx: np.ndarray, nthreads: int = 0):
        """Rows idx (int64, in range) of every array, as new arrays."""
        return tuple(gather(a, idx, np.empty((len(idx),) + a.shape[1:], a.dtype), nthreads) for a in self.arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{a.dtype}{tuple(a.shape)}" for a in self.arrays)
        return f"ArrayDataset({shapes})"


# -- fetching a batch from any dataset ---------------------------------------------------
def _is_batch(result, m: int) -> bool:
    return (isinstance(result, (tuple, list)) and len(result) > 0
            and all(isinstance(a, np.ndarray) and a.ndim >= 1 and len(a) == m for a in result))


def _is_batch_wise(dataset) -> bool:
    """Probe once: does ``dataset[index_array]`` give the rows that ``dataset[i]`` gives?

    A dataset that answers an index array with a batch is batch-wise; when it also answers
    single indices, the batch must equal the stacked samples (else the index array was
    not understood, e.g. a per-sample ``__getitem__`` that happens to accept arrays).
    """
    n = len(dataset)
    probe = np.array([0, n - 1], dtype=np.int64)
    try:
        batch = dataset[probe]
    except Exception:  # noqa: BLE001 - any failure means "not batch-wise"
        return False
    if not _is_batch(batch, 2):
        return False
    try:
        samples = [dataset[0], dataset[n - 1]]
    except Exception:  # noqa: BLE001 - batch-wise only
        return True
    for j, sample in enumerate(samples):
        if not isinstance(sample, (tuple, list)) or len(sample) != len(batch):
            return True
        if not all(np.array_equal(np.asarray(s), b[j]) for s, b in zip(sample, batch)):
            return False
    return True


def _fields(sample, i: int) -> list:
    """The fields of per-sample item ``dataset[i]`` as arrays of numbers, booleans or strings."""
    if isinstance(sample, dict):
        raise TypeError(f"DataLoader: per-sample dataset returned a dict for sample {i}; expected a tuple with "
                        "one array, number or string per field (dict samples are not collated)")
    if not isinstance(sample, (tuple, list)):
        sample = (sample,)
    fields = []
    for k, v in enumerate(sample):
        try:
            a = np.asarray(v)
        except ValueError:  # ragged nested sequences
            a = None
        if a is None or a.dtype.hasobject:
            raise TypeError(f"DataLoader: per-sample dataset returned {type(v).__name__} as field {k} of sample "
                            f"{i}; expected an array, a number or a string")
        fields.append(a)
    return fields


def _exact_in(v: np.ndarray, dtype: np.dtype) -> bool:
    """Does casting v to dtype (a NumPy promotion of v's dtype) keep every value?"""
    if v.dtype.kind in "iu" and dtype.kind in "fc" and v.size:
        limit = 2 ** (np.finfo(dtype).nmant + 1)  # integers beyond it are rounded
        return -limit <= int(v.min()) and int(v.max()) <= limit
    return True


def _stack_field(values, k: int, idx: np.ndarray) -> np.ndarray:
    """Field k of every sample, stacked in a dtype that holds each sample's values exactly."""
    first = values[0]
    for row, v in enumerate(values):
        if v.shape != first.shape:
            raise ValueError(f"DataLoader: per-sample dataset returned ragged shapes: field {k} of sample "
                             f"{int(idx[row])} has shape {v.shape}, sample {int(idx[0])} had {first.shape}")
    dtypes = {v.dtype for v in values}
    if len(dtypes) > 1:
        kinds = {d.kind for d in dtypes}
        dtype = np.result_type(*dtypes) if kinds <= set("biufc") or kinds in ({"U"}, {"S"}) else None
        if dtype is None:
            bad = next(row for row, v in enumerate(values) if v.dtype != first.dtype)
        else:
            bad = next((row for row, v in enumerate(values) if not _exact_in(v, dtype)), None)
        if bad is not None:
            v = values[bad]
            other = next(row for row, w in enumerate(values) if w.dtype != v.dtype)
            why = ("no dtype holds both" if dtype is None else
                   f"{dtype}, which holds both, would round the first one's integers beyond 2**"
                   f"{np.finfo(dtype).nmant + 1}")
            raise TypeError(f"DataLoader: per-sample dataset returned field {k} as {v.dtype} for sample "
                            f"{int(idx[bad])} and as {values[other].dtype} for sample {int(idx[other])}: {why}")
        values = [v.astype(dtype) for v in values]
    return np.stack(values)


def _collate(dataset, idx: np.ndarray):
    """Stack per-sample tuples ``dataset[i]`` for i in idx into a tuple of arrays.

    Samples whose field dtypes differ are stacked in NumPy's promotion of them (ints and
    floats: floats; strings: the widest) when that holds every value exactly, else TypeError.
    """
    samples = [_fields(dataset[int(i)], int(i)) for i in idx]
    for row, sample in enumerate(samples):
        if len(sample) != len(samples[0]):
            raise ValueError(f"DataLoader: per-sample dataset returned {len(sample)} fields for sample "
                             f"{int(idx[row])}, but {len(samples[0])} for sample {int(idx[0])}")
    return tuple(_stack_field([s[k] for s in samples], k, idx) for k in range(len(samples[0])))


def fetch(dataset, idx: np.ndarray, batch_wise: bool, nthreads: int = 0):
    """The batch of samples idx (int64, in range) as a tuple of arrays."""
    if isinstance(dataset, ArrayDataset):
        return dataset.gather(idx, nthreads)
    if batch_wise:
        batch = dataset[idx]
        if not _is_batch(batch, len(idx)):
            raise ValueError(f"DataLoader: batch-wise dataset returned {type(batch).__name__} for {len(idx)} "
                             f"indices; expected a tuple of arrays with {len(idx)} rows each")
        return tuple(batch)
    return _collate(dataset, idx)
