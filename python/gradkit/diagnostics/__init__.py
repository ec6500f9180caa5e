"""Diagnostics: the lessons of training neural networks as measurements.

- ``propagation(model, x, y=None, loss=None)``: activation and gradient statistics per layer
  at the current weights, and a verdict on the initialisation.
- ``sanity_check(model, loss, x, y, optimizer=None)``: initial loss against ln(C), L2 raises the
  loss, the model can overfit 20 samples.
- ``lr_find(model, loss, optimizer, x, y, ...)``: the learning-rate range test.
- ``gk.callbacks.ActivationStats`` and ``gk.callbacks.UpdateRatio`` (in
  ``gradkit/callbacks/diagnostics.py``, built on ``_stats`` and ``_plot`` here): statistics
  gathered during ``Trainer.fit``.

Each leaves the model, the optimizer and the random generator as it found them.
"""
from .lr_finder import LRFinderResult, lr_find
from .propagation import PropagationReport, propagation
from .sanity import SanityReport, sanity_check

__all__ = ["propagation", "sanity_check", "lr_find", "PropagationReport", "SanityReport", "LRFinderResult"]
