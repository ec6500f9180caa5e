"""``Parameter``: a trainable array and its gradient."""
from __future__ import annotations

import numpy as np

from .._checks import instance

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Parameter:
    """A trainable array: ``.data`` and ``.grad`` (same shape and dtype; grad starts at zero).

    ``backward`` passes ADD into ``.grad``; ``zero_grad()`` clears it. Optimizers
    update ``.data`` in place.

    Args:
        data: the initial values (copied; float32 or float64, other numbers become float32).
        requires_grad: trainable (default True). A frozen parameter (False) keeps its ``.grad``
            exactly as it is: layers skip its gradient work, optimizers leave it untouched (no
            update, no weight decay, no state) and ``Module.zero_grad`` / ``Optimizer.zero_grad``
            do not clear it. Kept by ``copy.deepcopy``, pickle and ``Module.to(dtype)``; not
            part of ``state_dict``. Only a bool is accepted (TypeError otherwise).
    """

    __slots__ = ("data", "grad", "_requires_grad")

    #: Bumped whenever a parameter's requires_grad changes: optimizers compare it (one int per
    #: step) to know when their prepared argument lists must be rebuilt.
    _requires_grad_changes = 0

    def __init__(self, data, requires_grad: bool = True):
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
        self._requires_grad = instance("Parameter", "requires_grad", requires_grad, bool, "a bool")

    @property
    def requires_grad(self) -> bool:
        """False when the parameter is frozen (see the class docstring)."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value) -> None:
        value = instance("Parameter", "requires_grad", value, bool, "a bool")
        if value is not self._requires_grad:
            self._requires_grad = value
            Parameter._requires_grad_changes += 1

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
        frozen = "" if self._requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype}{frozen})"
