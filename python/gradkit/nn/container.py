"""Containers and shape layers: ``Sequential``, ``Residual``, ``Flatten``."""
from __future__ import annotations

import operator
from collections import OrderedDict

import numpy as np

from .._checks import integer
from . import _record, functional, fusion
from .module import Module


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse.

    Args:
        *modules: the layers, named ``'0'``, ``'1'``, ... (or one OrderedDict of name -> module).

    ``seq[i]`` (negative too) returns a layer, ``seq[a:b]`` a Sequential sharing the layers;
    ``len(seq)``, iteration and ``append`` work as for a list.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(str(name), module)
        else:
            for i, module in enumerate(modules):
                if not isinstance(module, Module):
                    raise TypeError(f"Sequential: modules[{i}]: expected a gk.nn.Module, got {type(module).__name__}")
                self.add_module(str(i), module)

    def _index(self, idx) -> int:
        try:
            i = operator.index(idx)
        except TypeError:
            raise TypeError(f"Sequential: index: expected an int or a slice, got {type(idx).__name__}") from None
        n = len(self._modules)
        if not -n <= i < n:
            raise IndexError(f"Sequential: index: expected a value in [{-n}, {n}), got {i}")
        return i % n

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[self._index(idx)]

    def __setitem__(self, idx, module) -> None:
        key = list(self._modules.keys())[self._index(idx)]
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: module: expected a gk.nn.Module, got {type(module).__name__}")
        self._modules[key] = module

    def __delitem__(self, idx) -> None:
        """Remove a layer; the remaining ones are renamed ``'0'``, ``'1'``, ..."""
        if isinstance(idx, slice):
            keys = list(self._modules.keys())[idx]
        else:
            keys = [list(self._modules.keys())[self._index(idx)]]
        for key in keys:
            del self._modules[key]
        remaining = list(self._modules.values())
        self._modules.clear()
        for i, module in enumerate(remaining):
            self._modules[str(i)] = module
        self._cache = None

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))

    def append(self, module: Module) -> "Sequential":
        """Add a layer at the end (named ``str(len(self))``); returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: module: expected a gk.nn.Module, got {type(module).__name__}")
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules) -> "Sequential":
        for module in modules:
            self.append(module)
        return self

    def forward(self, x):
        """Apply the layers in order. Runs such as ``BatchNorm2d -> ReLU -> MaxPool2d(2)`` or
        ``Linear -> ReLU`` go through one fused kernel (nn/fusion.py): the same result, less
        memory traffic."""
        modules = list(self._modules.values())
        runs = {} if _record.tracing() else fusion.fusable_runs(modules)
        fused = {}  # index of a fused run's last layer -> (its kind, first layer's index, cache)
        y = x
        i = 0
        while i < len(modules):
            kind = runs.get(i)
            if kind is not None and kind.fits(y):
                j = i + kind.length - 1
                y, cache = kind.forward(modules[i:j + 1], y)
                fused[j] = (kind, i, cache)
                i = j + 1
            else:
                y = modules[i](y)
                i += 1
        out_shape = np.shape(y)
        self._save_for_backward(out_shape=out_shape, out_dtype=getattr(y, "dtype", None), fused=fused)
        return y

    _input_grad_optional = True
    #: A subclass that redefines forward gets a derived backward (this one replays the layers in order).
    _backward_fits_own_forward = True
    #: Set by gk.distributed.DistributedDataParallel during its backward: called with the layers
    #: whose backward just finished (their gradients are final), to start reducing them early.
    _grads_ready_hook = None

    def backward(self, dy, input_grad: bool = True):
        """Run the layers' backward in reverse; returns the input gradient.

        With ``input_grad=False`` (nothing needs the gradient of the input, e.g. a Trainer's
        model), the layers in front of the first one with a trainable parameter
        (``requires_grad``) are skipped (a frozen backbone at the front runs no backward at
        all), that one computes only its parameter gradients if it can, and None is returned.
        """
        saved = self._saved()
        if isinstance(dy, np.ndarray) and saved["out_dtype"] is not None:
            self._check_grad(dy, saved["out_shape"], saved["out_dtype"])
        modules = list(self._modules.values())
        first = 0
        if not input_grad:
            first = next((i for i, m in enumerate(modules) if m._has_trainable_parameters()), len(modules))
        fused = saved["fused"]
        hook = self._grads_ready_hook
        i = len(modules) - 1
        while i >= first:
            if i in fused:  # a fused run ending at layer i (its first layer has the parameters: start >= first)
                kind, start, cache = fused[i]
                dy = kind.backward(modules[start:i + 1], cache, dy, input_grad or start > first)
            else:
                start = i
                dy = modules[i].backward_maybe_input(dy, input_grad or i > first)
            if hook is not None:
                hook(modules[start:i + 1])
            i = start - 1
        return dy if input_grad else None


class Residual(Module):
    """``y = x + block(x)``; the wrapped module is the child ``block``.

    Shape: block must map its input to an output of the same shape.
    """

    def __init__(self, block: Module):
        super().__init__()
        if not isinstance(block, Module):
            raise TypeError(f"Residual: block: expected a gk.nn.Module, got {type(block).__name__}")
        self.block = block

    def forward(self, x):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Residual: input: expected a numpy.ndarray, got {type(x).__name__}")
        fx = self.block(x)
        if not isinstance(fx, np.ndarray) or fx.shape != x.shape:
            raise ValueError(f"Residual: block output: expected shape {x.shape} (the input's), "
                             f"got {getattr(fx, 'shape', type(fx).__name__)}")
        if fx.dtype != x.dtype:
            raise TypeError(f"Residual: block output: expected dtype {x.dtype} (the input's), got {fx.dtype}")
        y = functional.add(x, fx)  # recorded as a node when traced for export
        self._save_for_backward(shape=x.shape, dtype=x.dtype)
        return y

    _input_grad_optional = True
    _backward_fits_own_forward = True

    def backward(self, dy, input_grad: bool = True):
        """``dx = dy + block.backward(dy)``; with ``input_grad=False`` only the block's parameter
        gradients are computed (nothing at all when they are all frozen) and None is returned."""
        saved = self._saved()
        dy = self._check_grad(dy, saved["shape"], saved["dtype"])
        if not input_grad and not self.block._has_trainable_parameters():
            return None
        dx = self.block.backward_maybe_input(dy, input_grad)
        return dx + dy if input_grad else None


class Flatten(Module):
    """Merge the dimensions ``start_dim..end_dim`` into one (default: ``(N, ...) -> (N, -1)``).

    Args:
        start_dim: first dimension to flatten (default 1).
        end_dim: last dimension to flatten (default -1).
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = integer("Flatten", "start_dim", start_dim)
        self.end_dim = integer("Flatten", "end_dim", end_dim)

    def forward(self, x):
        x = self._check_input(x)
        nd = x.ndim
        start = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        end = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if not (0 <= start < nd and 0 <= end < nd and start <= end):
            raise ValueError(f"Flatten: input: expected an array with dimensions {self.start_dim}..{self.end_dim} "
                             f"(at least {max(self.start_dim, -self.end_dim - 1) + 1}-D), got {nd}-D of shape {x.shape}")
        shape = x.shape[:start] + (int(np.prod(x.shape[start:end + 1])),) + x.shape[end + 1:]
        self._save_for_backward(in_shape=x.shape, out_shape=shape, dtype=x.dtype)
        return x.reshape(shape)

    def backward(self, dy):
        saved = self._saved()
        dy = self._check_grad(dy, saved["out_shape"], saved["dtype"])
        return dy.reshape(saved["in_shape"])

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
