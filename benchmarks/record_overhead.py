"""What the derived backward's record costs: per recorded call, and on a ResNet-20 training step.

Two measurements, each side by side in one process (the variants take turns, so the machine's
load hits them alike):
1. Per call: a derived module making K calls of a tiny layer (Linear(4, 4) on one row, where the
   kernels cost next to nothing) against the same K calls with a hand-written backward. The
   difference per call is the record's cost: the node, the identity look-ups, the read-only flag
   and the reverse walk.
2. A ResNet-20 step (3x32x32, batch 128, SGD momentum 0.9 + weight decay 5e-4): the blocks with
   their derived backward against the same blocks (same modules, same weights) with a
   hand-written backward. Reported as the step-time difference and as the per-call cost times the
   calls per step, each as a share of the step.

Run: PYTHONPATH=python python benchmarks/record_overhead.py [--rounds 20] [--threads 2]
"""
import argparse
import statistics
import time

import numpy as np

import gradkit as gk
from gradkit import nn
from gradkit.nn import functional as F


class Chain(nn.Module):
    """K calls of small Linear layers, joined by F.add every other call (derived backward)."""

    def __init__(self, k):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(4, 4) for _ in range(k)])

    def forward(self, x):
        for i, lin in enumerate(self.layers):
            y = lin(x)
            x = F.add(x, y) if i % 2 else y
        return x


class HandChain(nn.Module):
    """The same calls with a hand-written backward."""

    def __init__(self, layers):
        super().__init__()
        self.layers = layers

    def forward(self, x):
        for i, lin in enumerate(self.layers):
            y = lin(x)
            x = x + y if i % 2 else y
        return x

    def backward(self, dy):
        for i in reversed(range(len(self.layers))):
            dx = self.layers[i].backward(dy)
            dy = dx + dy if i % 2 else dx
        return dy


def _hand_block(block):
    """A hand-written backward for a torchvision-style BasicBlock (conv1 bn1 conv2 bn2 [downsample])."""

    class Hand(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = block

        def forward(self, x):
            b = self.b
            identity = x if b.downsample is None else b.downsample(x)
            out = b.bn2(b.conv2(b.relu(b.bn1(b.conv1(x))) if hasattr(b, "relu") else
                                np.maximum(b.bn1(b.conv1(x)), 0)))
            y = np.maximum(out + identity, 0)
            self._save_for_backward(y=y)
            return y

        def backward(self, dy, input_grad=True):
            b = self.b
            d = dy * (self._saved()["y"] > 0)
            g = b.bn2.backward(d)
            g = b.conv2.backward(g)
            g = b.relu.backward(g)
            dx = b.conv1.backward(b.bn1.backward(g))
            return dx + (d if b.downsample is None else b.downsample.backward(d))

    return Hand()


def _hand_resnet(model):
    """resnet20 with every block wrapped in a hand-written backward; the stem and head as a Sequential."""
    blocks = [_hand_block(blk) for layer in (model.layer1, model.layer2, model.layer3) for blk in layer]
    return nn.Sequential(model.conv1, model.bn1, nn.ReLU(), *blocks, nn.GlobalAvgPool2d(), model.fc)


def _time(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _interleave(fns, rounds):
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(_time(fn))
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def per_call(rounds, k=64):
    gk.manual_seed(0)
    derived = Chain(k)
    hand = HandChain(derived.layers)
    x = np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32)

    def step(m):
        def run():
            y = m(x)
            m.backward(np.ones_like(y))
        return run

    for _ in range(5):
        step(derived)(), step(hand)()
    t = _interleave({"derived": step(derived), "hand": step(hand)}, rounds * 20)
    calls = 1.5 * k  # k Linear calls, k/2 F.add calls
    return t, calls


def resnet_step(rounds, batch):
    gk.manual_seed(0)
    model = gk.models.resnet20()
    hand = _hand_resnet(model)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    loss = nn.CrossEntropyLoss()
    opt = gk.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(m):
        def run():
            opt.zero_grad()
            out = m(x)
            loss(out, y)
            m.backward(loss.backward(), input_grad=False)
            opt.step()
        return run

    nodes = []
    orig = gk.nn._record.Tape.backward

    def count(tape, douts, input_grad):
        nodes.append(len(tape.nodes))
        return orig(tape, douts, input_grad)

    gk.nn._record.Tape.backward = count
    step(model)()
    gk.nn._record.Tape.backward = orig
    step(hand)()
    t = _interleave({"derived": step(model), "hand": step(hand)}, rounds)
    return t, sum(nodes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    gk.set_num_threads(args.threads)
    t, calls = per_call(args.rounds)
    d, h = t["derived"], t["hand"]
    per = (d[0] - h[0]) / calls
    print(f"per call: derived {d[0] * 1e6:.0f} us, hand-written {h[0] * 1e6:.0f} us for {calls:.0f} recorded calls "
          f"(minima): {per * 1e6:.2f} us per recorded call (medians: {(d[1] - h[1]) / calls * 1e6:.2f} us)")
    t, nodes = resnet_step(args.rounds, args.batch)
    d, h = t["derived"], t["hand"]
    print(f"resnet20 step, batch {args.batch}, {args.threads} threads: derived {d[0] * 1e3:.1f} ms, hand-written "
          f"{h[0] * 1e3:.1f} ms (minima; medians {d[1] * 1e3:.1f} / {h[1] * 1e3:.1f} ms): difference "
          f"{(d[0] - h[0]) / h[0] * 100:+.2f}% (medians {(d[1] - h[1]) / h[1] * 100:+.2f}%)")
    print(f"  {nodes} recorded calls per step x {per * 1e6:.2f} us = {nodes * per * 1e3:.2f} ms = "
          f"{nodes * per / h[0] * 100:.2f}% of the step")


if __name__ == "__main__":
    main()
