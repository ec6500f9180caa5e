"""Where a training step goes: time per layer (forward and backward) for any model.

Every leaf module's forward and backward, and every gk.nn.functional op's forward and backward,
is timed over a few training steps (SGD momentum + weight decay, synthetic data); the table sums
them per layer, largest first, with the share of the measured step. What no layer accounts for
(the loss, the optimizer step, the record's bookkeeping) is the last row. Fused runs inside a
Sequential are taken apart (each layer runs on its own), so the sum may exceed a fused step;
with --fused they stay fused and each run is timed as one unit (a row such as
"BatchNorm2d+ReLU+MaxPool2d 32"; gk.models' fused batch norm + ReLU calls as F.batch_norm_relu),
so the table is the real step's (the derived backward's fused replays count in the last row).
A call inside a timed call (a layer's backward inside a fused run's) counts for the outer one only.

Run: PYTHONPATH=python python benchmarks/profile_model.py resnet20 [--batch 128] [--threads 2] [--steps 5]
     (any model name of benchmarks/bench_models.py; --by-type sums layers of one type and shape;
     --fused keeps Sequential's fused runs)
"""
from __future__ import annotations

import argparse
import collections
import time

import numpy as np

import gradkit as gk
from gradkit.nn import _record, functional, fusion
from gradkit.nn import Module

from bench_models import INPUTS, gk_model


_depth = [0]  # timed calls under way: only the outermost one counts


def _timed(fn, key, totals, key_of=None):
    """fn timed under key (or key_of(*args)), unless it runs inside another timed call."""
    def wrapper(*args, **kwargs):
        _depth[0] += 1
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _depth[0] -= 1
            if _depth[0] == 0:
                totals[key if key_of is None else key_of(*args)] += time.perf_counter() - t
    return wrapper


def _timed_backward(fn, totals):
    """A Function's backward, timed under the op's name (subclasses share a base's backward)."""
    return _timed(fn, None, totals, key_of=lambda self, *_: (f"F.{self.name}", "bwd"))


def _shape_label(m) -> str:
    return "x".join(map(str, m.weight.shape)) if getattr(m, "weight", None) is not None else ""


def _time_runs(totals, label) -> dict:
    """Times each fused run kind's forward and backward as one unit, under label(its layers);
    -> the originals, to restore."""
    saved = {fusion: fusion.batch_norm_relu}  # gk.models' fused call; its backward is timed as F.batch_norm_relu's
    fusion.batch_norm_relu = _timed(fusion.batch_norm_relu, ("F.batch_norm_relu", "fwd"), totals)
    for kind in fusion._RUNS:
        saved[kind] = (kind.__dict__["forward"], kind.__dict__["backward"])
        for phase, fn in (("fwd", kind.forward), ("bwd", kind.backward)):
            timed = _timed(fn, None, totals, key_of=lambda mods, *_, phase=phase: (label(mods), phase))
            setattr(kind, "forward" if phase == "fwd" else "backward", staticmethod(timed))
    return saved


def profile(model: Module, x, y, steps: int, by_type: bool, fused: bool = False):
    """{(layer, phase): seconds per step} and the measured step time."""
    totals = collections.defaultdict(float)
    leaves = [(name, m) for name, m in model.named_modules() if not m._modules]
    names = {id(m): name for name, m in leaves}

    def run_label(mods):  # a fused run: its layer types joined by '+'
        types = "+".join(type(m).__name__ for m in mods)
        return f"{types} {_shape_label(mods[0])}".strip() if by_type else f"{names[id(mods[0])]}.. ({types})"
    for name, m in leaves:
        label = f"{type(m).__name__} {_shape_label(m)}".strip() if by_type else f"{name} ({type(m).__name__})"
        object.__setattr__(m, "forward", _timed(m.forward, (label, "fwd"), totals))
        object.__setattr__(m, "backward", _timed(m.backward, (label, "bwd"), totals))
    saved_ops = {n: getattr(functional, n) for n in functional.__all__}
    saved_bwd = {c: c.backward for c in _all_functions()}
    for n, fn in saved_ops.items():
        setattr(functional, n, _timed(fn, (f"F.{n}", "fwd"), totals))
    for c in saved_bwd:
        c.backward = _timed_backward(c.backward, totals)
    loss = gk.nn.CrossEntropyLoss()
    opt = gk.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    runs = _time_runs(totals, run_label) if fused else {}
    fusion.enabled = fused
    try:
        def step():
            opt.zero_grad()
            loss(model(x), y)
            model.backward_maybe_input(loss.backward(), False)
            opt.step()
        step()
        totals.clear()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        elapsed = (time.perf_counter() - t) / steps
    finally:
        fusion.enabled = True
        for _, m in leaves:
            m.__dict__.pop("forward", None)
            m.__dict__.pop("backward", None)
        for n, fn in saved_ops.items():
            setattr(functional, n, fn)
        for c, b in saved_bwd.items():
            c.backward = b
        for kind, originals in runs.items():
            if kind is fusion:
                fusion.batch_norm_relu = originals
            else:
                kind.forward, kind.backward = originals
    return {k: v / steps for k, v in totals.items()}, elapsed


def _all_functions():
    out, todo = [], [_record.Function]
    while todo:
        c = todo.pop()
        for s in c.__subclasses__():
            if "backward" in s.__dict__:
                out.append(s)
            todo.append(s)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", choices=sorted(INPUTS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--by-type", action="store_true")
    ap.add_argument("--fused", action="store_true", help="keep Sequential's fused runs, each timed as one unit")
    args = ap.parse_args(argv)
    gk.set_num_threads(args.threads)
    gk.manual_seed(0)
    model = gk_model(args.model)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch,) + INPUTS[args.model]).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    per, step = profile(model, x, y, args.steps, args.by_type, args.fused)
    rows = collections.defaultdict(lambda: [0.0, 0.0])
    for (label, phase), t in per.items():
        rows[label][phase == "bwd"] += t
    print(f"{args.model}, batch {args.batch}, {args.threads} threads, isa {gk._core.get_isa()}: "
          f"step {step * 1e3:.1f} ms{', fused runs kept' if args.fused else ''}")
    print(f"{'layer':<40}{'fwd ms':>9}{'bwd ms':>9}{'share':>8}")
    for label, (f, b) in sorted(rows.items(), key=lambda kv: -sum(kv[1])):
        print(f"{label:<40}{f * 1e3:>9.2f}{b * 1e3:>9.2f}{(f + b) / step:>8.1%}")
    rest = step - sum(sum(v) for v in rows.values())
    print(f"{'(loss, optimizer, bookkeeping)':<40}{'':>9}{'':>9}{rest / step:>8.1%}")


if __name__ == "__main__":
    main()
