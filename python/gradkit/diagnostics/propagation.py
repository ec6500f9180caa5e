"""``propagation``: how activations and gradients travel through a model at its current weights."""
from __future__ import annotations

import math

import numpy as np

from ..nn import fusion
from ..nn.activation import _Activation
from . import _plot, _stats
from ._state import Snapshot

# Activations whose std falls below this fraction of the input's have vanished; above
# EXPLODE times it they have exploded. Sigmoid/tanh layers with more than SATURATED of their
# outputs within 0.01 of a bound are saturated.
VANISH = 0.05
EXPLODE = 20.0
SATURATED = 0.5
# Gradients that shrink by more than this factor from the output to a layer have vanished.
GRAD_VANISH = 1e-3


def _init_advice(act_type):
    if act_type in ("Tanh", "Sigmoid"):
        return (f"Xavier/Glorot initialisation, which fits {act_type.lower()} "
                f"(gk.nn.init.xavier_normal_(w, gain=gk.nn.init.calculate_gain('{act_type.lower()}')))")
    if act_type is None:
        return "Xavier (tanh, sigmoid) or He (ReLU) initialisation, scaled by each layer's fan-in"
    return (f"He/Kaiming initialisation, which fits {act_type} "
            "(gk.nn.init.kaiming_normal_(w, nonlinearity='relu'); conv fan-in is in_channels*kh*kw)")


class PropagationReport:
    """What ``propagation`` returns.

    Attributes:
        rows: one dict per leaf module in forward order: "name", "type", "act_mean", "act_std"
            (of the output), "grad_std" (of the gradient w.r.t. the output, None without a loss),
            "saturated" (sigmoid, tanh) and "dead" (ReLU-like layers: fraction of units, or
            channels for NCHW, never positive over the batch).
        input_std: std of x.
        verdict: a sentence naming the first layer where activations vanish, explode or
            saturate (or gradients vanish), and the initialisation that fits; or that all is well.
    """

    def __init__(self, rows, input_std, verdict):
        self.rows, self.input_std, self.verdict = rows, input_std, verdict

    def plot(self, path):
        """Save activation (and gradient) std per layer, log scale, as a PNG; returns path."""
        return _plot.propagation(self, path)

    def __str__(self):
        w = max([14] + [len(r["name"]) + 2 for r in self.rows])  # dotted paths of nested layers
        head = f"{'layer':<{w}}{'type':<14}{'act mean':>11}{'act std':>11}{'grad std':>11}{'saturated':>11}{'dead':>8}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            g = "-" if r["grad_std"] is None else f"{r['grad_std']:.3g}"
            sat = f"{r['saturated']:.2f}" if "saturated" in r else "-"
            dead = f"{r['dead']:.2f}" if "dead" in r else "-"
            lines.append(f"{r['name']:<{w}}{r['type']:<14}{r['act_mean']:>11.3g}{r['act_std']:>11.3g}{g:>11}"
                         f"{sat:>11}{dead:>8}")
        lines.append(f"input std {self.input_std:.3g}. {self.verdict}")
        return "\n".join(lines)

    __repr__ = __str__


def _verdict(rows, input_std):
    for r in rows:  # NaN statistics compare False everywhere below: name them first
        acts_finite = math.isfinite(r["act_mean"]) and math.isfinite(r["act_std"])
        if not acts_finite or (r["grad_std"] is not None and not math.isfinite(r["grad_std"])):
            which, std = ("activations", r["act_std"]) if not acts_finite else ("gradients", r["grad_std"])
            return (f"The {which} are not finite at layer '{r['name']}' ({r['type']}) (std {std:.3g}): the "
                    "weights or the loss overflow; check the initialisation scale and the data.")
    ref = input_std if input_std > 0 else 1.0
    last_weighted = None  # the last layer with parameters before the current row
    previous_act = None
    for r in rows:
        if r["_has_params"]:
            last_weighted = r
        if not r["_activation"]:
            continue
        culprit = f" (the weights of layer '{last_weighted['name']}', {last_weighted['type']})" if last_weighted else ""
        if r.get("saturated", 0.0) > SATURATED:
            return (f"Activations saturate at layer '{r['name']}' ({r['type']}): {r['saturated']:.0%} of outputs are "
                    f"within 0.01 of a bound, so their gradients vanish; the weights before it{culprit} are too "
                    f"large. Use {_init_advice(r['type'])}, or normalise the input.")
        shrinking = previous_act is None or r["act_std"] < previous_act["act_std"]
        if r["act_std"] < VANISH * ref and shrinking:
            return (f"Activations vanish at layer '{r['name']}' ({r['type']}): std {r['act_std']:.2g} against "
                    f"{input_std:.2g} at the input; the weights before it{culprit} are too small. "
                    f"Use {_init_advice(r['type'])}.")
        if r["act_std"] > EXPLODE * ref:
            return (f"Activations explode at layer '{r['name']}' ({r['type']}): std {r['act_std']:.2g} against "
                    f"{input_std:.2g} at the input; the weights before it{culprit} are too large. "
                    f"Use {_init_advice(r['type'])}.")
        previous_act = r
    grads = [r for r in rows if r["grad_std"] is not None and r["_has_params"]]
    if grads and grads[-1]["grad_std"] > 0:
        top = grads[-1]["grad_std"]
        for r in reversed(grads):
            if r["grad_std"] < GRAD_VANISH * top:
                acts = [a["type"] for a in rows if a["_activation"]]
                return (f"Gradients vanish toward the input: at layer '{r['name']}' ({r['type']}) their std is "
                        f"{r['grad_std']:.2g}, against {top:.2g} at the last layer. "
                        f"Use {_init_advice(acts[0] if acts else None)}.")
    return "Activations and gradients keep a healthy scale through every layer; the initialisation looks right."


def propagation(model, x, y=None, loss=None):
    """One forward (and backward, with a loss) at the current weights, measured layer by layer.

    Fused runs are taken apart for the pass so that every leaf module's output is seen; rows
    follow the order of the calls (a derived-backward module's forward may call its layers in
    another order than it registered them; functional ops are not layers and have no row). Weights,
    gradients, buffers (running statistics), the train/eval mode, forward caches and the random
    generator are left as they were.

    Args:
        model: a ``gk.nn.Module``.
        x: a batch of inputs; y, loss (None): targets and a loss module, to measure gradients too.

    Returns:
        A ``PropagationReport`` (``.rows``, ``.verdict``, ``.plot(path)``, ``str()``: a table).
    """
    from ..nn.module import Module

    if not isinstance(model, Module):
        raise TypeError(f"propagation: model: expected a gk.nn.Module, got {type(model).__name__}")
    if not isinstance(x, np.ndarray):
        raise TypeError(f"propagation: x: expected a numpy.ndarray, got {type(x).__name__}")
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"propagation: x: expected a batch of at least one sample, got shape {x.shape}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"propagation: x: expected finite values, got {int(np.count_nonzero(~np.isfinite(x)))} "
                         f"NaN/Inf of {x.size}")
    if (y is None) != (loss is None):
        raise ValueError("propagation: y, loss: expected both (to measure gradients) or neither, got "
                         f"{'only y' if loss is None else 'only loss'}")
    leaves = [(name or type(m).__name__, m) for name, m in model.named_modules() if not m.named_children()]
    records = {}

    def watch(name, m):
        forward, backward = m.forward, m.backward

        def fwd(*args, **kwargs):
            out = forward(*args, **kwargs)
            records.setdefault(name, {"order": len(records)})["out"] = out  # rows in call order
            return out

        def bwd(dy, *args, **kwargs):
            records.setdefault(name, {})["grad"] = dy
            return backward(dy, *args, **kwargs)

        object.__setattr__(m, "forward", fwd)
        object.__setattr__(m, "backward", bwd)

    with Snapshot(model):
        fusion.enabled = False
        try:
            for name, m in leaves:
                watch(name, m)
            out = model(x)
            if loss is not None:
                loss.forward(out, y)
                model.backward(loss.backward())
        finally:
            fusion.enabled = True
            for _, m in leaves:
                m.__dict__.pop("forward", None)
                m.__dict__.pop("backward", None)

    rows = []
    for name, m in sorted(leaves, key=lambda nm: records.get(nm[0], {}).get("order", len(records))):
        rec = records.get(name)
        if rec is None or not isinstance(rec.get("out"), np.ndarray):
            continue
        kind = _stats.layer_kind(m)
        acc = _stats.Accumulator(kind)
        acc.add(rec["out"])
        if isinstance(rec.get("grad"), np.ndarray):
            acc.add_grad(rec["grad"])
        s = acc.summary()
        row = {"name": name, "type": type(m).__name__, "act_mean": s["mean"], "act_std": s["std"],
               "grad_std": s["grad_std"]}
        if kind is not None and "saturated" in s:
            row["saturated"] = s["saturated"]
        if kind is not None and "dead" in s:
            row["dead"] = s["dead"]
        row["_activation"] = isinstance(m, _Activation)
        row["_has_params"] = bool(m.named_parameters(recurse=False))
        rows.append(row)
    xd = x.astype(np.float64, copy=False)
    input_std = float(xd.std()) if x.size else math.nan
    verdict = _verdict(rows, input_std)
    for r in rows:
        del r["_activation"], r["_has_params"]
    return PropagationReport(rows, input_std, verdict)
