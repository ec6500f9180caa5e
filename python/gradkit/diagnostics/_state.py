"""Snapshot and restore everything a diagnostic may touch: parameters, gradients, buffers,
train/eval flags, forward caches, optimizer state and the library's random generator."""
from __future__ import annotations

import copy

import numpy as np

from .. import _core


class Snapshot:
    """``Snapshot(model, optimizer=None)`` copies the state; ``restore()`` writes it back in place
    (the same arrays, so optimizers and views keep pointing at them), bit for bit."""

    def __init__(self, model, optimizer=None):
        self.model, self.optimizer = model, optimizer
        self.params = [(p, p.data.copy(), p.grad.copy()) for p in model.parameters()]
        self.modules = [(m, dict(m.named_buffers(recurse=False)),
                         {k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v))
                          for k, v in m.named_buffers(recurse=False)}, m.training)
                        for m in model.modules()]
        self.caches = model.saved_caches()
        self.rng = _core.rng_state()
        self.opt_state = optimizer.state_dict() if optimizer is not None else None

    def restore(self):
        for p, data, grad in self.params:
            np.copyto(p.data, data)
            np.copyto(p.grad, grad)
        for m, objects, values, training in self.modules:
            for name, value in values.items():
                original = objects[name]
                if isinstance(original, np.ndarray) and original.shape == value.shape and original.dtype == value.dtype:
                    np.copyto(original, value)
                    setattr(m, name, original)
                else:
                    setattr(m, name, value)
            object.__setattr__(m, "training", training)
        self.model.restore_caches(self.caches)
        _core.set_rng_state(*self.rng)
        if self.optimizer is not None:
            self.optimizer.load_state_dict(self.opt_state)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()
        return False
