"""``Parameter``: a trainable array and its gradient."""
from __future__ import annotations

import numpy as np

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Parameter:
    """A trainable array: ``.data`` and ``.grad`` (same shape and dtype; grad starts at zero).

    ``backward`` passes ADD into ``.grad``; ``zero_grad()`` clears it. Optimizers
    update ``.data`` in place.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        if isinstance(data, Parameter):
            data = data.data
        arr = np.array(data, copy=True)
        if arr.dtype not in _FLOAT_DTYPES:
            if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer):
                arr = arr.astype(np.float32)
            else:
                raise TypeError(f"Parameter: data: expected a float32 or float64 array, got dtype {arr.dtype}")
        self.data = np.ascontiguousarray(arr)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def __array__(self, dtype=None, copy=None):
        # np.asarray(p) views p.data (a copy only when a dtype change is asked for)
        if dtype is None or np.dtype(dtype) == self.data.dtype:
            return self.data.copy() if copy else self.data
        if copy is False:
            raise ValueError(f"Parameter: cannot view {self.data.dtype} data as {np.dtype(dtype)} without a copy")
        return self.data.astype(dtype)

    def zero_grad(self) -> None:
        self.grad.fill(0)

    def _set_dtype(self, dtype) -> None:
        if self.data.dtype != dtype:
            self.data = self.data.astype(dtype)
            self.grad = self.grad.astype(dtype)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"
