"""``sanity_check``: the course's checks before a long training run."""
from __future__ import annotations

import math

import numpy as np

from .._config import no_grad
from ..optim.optimizer import check_optimizer_of
from ._state import Snapshot

# The initial softmax cross-entropy must be within this fraction of ln(C).
INITIAL_LOSS_TOLERANCE = 0.25
# Weight decay used to check that the L2 penalty raises the loss.
L2_STRENGTH = 1e-2
# The tiny subset and the step budget for the overfitting check.
OVERFIT_SAMPLES = 20
OVERFIT_STEPS = 300


class SanityReport:
    """What ``sanity_check`` returns: ``.passed``, ``.checks`` (dicts "name", "passed", "detail")."""

    def __init__(self, checks):
        self.checks = checks
        self.passed = all(c["passed"] for c in checks)

    def __str__(self):
        lines = [f"[{'ok' if c['passed'] else 'FAIL'}] {c['name']}: {c['detail']}" for c in self.checks]
        lines.append("all checks passed" if self.passed else "some checks FAILED")
        return "\n".join(lines)

    __repr__ = __str__


def _is_cross_entropy(loss):
    return any(c.__name__ == "CrossEntropyLoss" for c in type(loss).__mro__)


def _data_loss(model, loss, x, y):
    with no_grad():
        return float(loss.forward(model(x), y))


def _accuracy(model, x, y):
    with no_grad():
        out = model(x)
    if out.ndim != 2:
        return math.nan
    return float(np.mean(out.argmax(axis=1) == (y.argmax(axis=1) if y.ndim == 2 else y)))


def sanity_check(model, loss, x, y, optimizer=None):
    """Check the initial loss, the effect of L2 and that the model can overfit 20 samples.

    - "initial loss": for softmax cross-entropy over C classes the loss of a fresh model is
      close to ln(C) (within 25%); other losses are only checked to be finite.
    - "L2 raises the loss": the data loss plus 0.5 * 1e-2 * sum of squared weights exceeds the
      data loss (fails when every weight is zero or the loss is not finite).
    - "overfits a tiny subset": up to 300 full-batch steps on the first 20 samples reach 100%
      training accuracy (classification outputs (N, C)) or cut the loss 100-fold (otherwise).
      The steps use ``optimizer`` if given, else Adam(lr=1e-3).

    The model (weights, gradients, buffers, mode, caches), the optimizer's state and the random
    generator are restored afterwards.

    Returns:
        A ``SanityReport``: ``.passed``, ``.checks``, ``str()``.
    """
    from ..nn.module import Module
    from ..optim import Adam

    if not isinstance(model, Module):
        raise TypeError(f"sanity_check: model: expected a gk.nn.Module, got {type(model).__name__}")
    for name, a in (("x", x), ("y", y)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"sanity_check: {name}: expected a numpy.ndarray, got {type(a).__name__}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"sanity_check: x, y: expected the same number (>= 1) of samples, got {len(x)} and {len(y)}")
    if optimizer is not None:
        check_optimizer_of("sanity_check", model, optimizer)
    checks = []
    with Snapshot(model, optimizer):
        model.eval()
        initial = _data_loss(model, loss, x, y)
        with no_grad():
            out = model(x[:1])
        if _is_cross_entropy(loss) and out.ndim == 2 and out.shape[1] == 1:
            ok = False  # softmax over one output is always 1: the loss is 0 whatever the weights
            detail = (f"{initial:.4g}, but cross-entropy over 1 class is 0 for any weights: the model has one "
                      "output; give it one output per class (>= 2), or use MSELoss for regression")
        elif _is_cross_entropy(loss) and out.ndim == 2 and out.shape[1] > 1:
            expected = math.log(out.shape[1])
            ok = math.isfinite(initial) and abs(initial - expected) <= INITIAL_LOSS_TOLERANCE * expected
            detail = (f"{initial:.4f} against ln({out.shape[1]}) = {expected:.4f}"
                      + ("" if ok else "; the outputs start far from uniform: check the initialisation "
                                       "scale and the input normalisation"))
        else:
            ok = math.isfinite(initial)
            detail = f"{initial:.4g}" + ("" if ok else " is not finite")
        checks.append({"name": "initial loss", "passed": ok, "detail": detail})

        penalty = 0.5 * L2_STRENGTH * sum(float(np.dot(p.data.ravel().astype(np.float64), p.data.ravel()))
                                          for p in model.parameters())
        ok = math.isfinite(initial) and initial + penalty > initial
        checks.append({"name": "L2 raises the loss", "passed": ok,
                       "detail": f"{initial:.4f} -> {initial + penalty:.4f} with weight decay {L2_STRENGTH:g}"})

        xs, ys = x[:OVERFIT_SAMPLES], y[:OVERFIT_SAMPLES]
        opt = optimizer if optimizer is not None else Adam(model.parameters(), lr=1e-3)
        classify = out.ndim == 2 and out.shape[1] > 1 and _is_cross_entropy(loss)
        first = _data_loss(model, loss, xs, ys)
        reached, last, steps = False, first, 0
        for steps in range(1, OVERFIT_STEPS + 1):
            model.train()
            opt.zero_grad()
            last = float(loss.forward(model(xs), ys))
            if not math.isfinite(last):
                break
            model.backward(loss.backward())
            opt.step()
            if steps % 10 == 0 or steps == OVERFIT_STEPS:
                model.eval()
                if classify:
                    reached = _accuracy(model, xs, ys) == 1.0
                else:
                    reached = _data_loss(model, loss, xs, ys) <= first / 100
                if reached:
                    break
        model.eval()
        if classify:
            acc = _accuracy(model, xs, ys)
            detail = f"training accuracy {acc:.0%} on {len(xs)} samples after {steps} steps (loss {last:.4f})"
        else:
            detail = f"loss {first:.4g} -> {_data_loss(model, loss, xs, ys):.4g} after {steps} steps"
        if not reached:
            detail += ("; the model cannot fit even this tiny subset: look for dead or saturated layers, "
                       "a wrong loss, or a learning rate far off")
        checks.append({"name": "overfits a tiny subset", "passed": reached, "detail": detail})
    return SanityReport(checks)
