"""Training steps of the models users write, gradkit against the same PyTorch model, side by side.

Models (synthetic data, SGD momentum 0.9 + weight decay 5e-4, cross-entropy, the same weights on
both sides): ``gk.models.resnet20()`` on 3x32x32; the VGG-style net of issue 22 (three stages of
two 3x3 conv + BN + ReLU at 64/128/256 channels, each ending in a 2x2 max-pool, then
Linear(4096, 256) + ReLU + Dropout(0.5) + Linear(256, 10)) on 3x32x32;
``gk.models.mlp(3072, [2048, 2048, 1024], 10)``; ``gk.models.resnet18(num_classes=10)`` on 3x64x64;
and the quickstart CNN on 1x28x28. The two libraries take turns step by step, so the machine's
load hits them alike; each cell is the median (and minimum) over the rounds.

Printed per model, batch and thread count: both step times, their ratio (gradkit / PyTorch),
gradkit's samples/s, and its effective rate: the direct-convolution and dense FLOPs of forward
+ backward (3x the forward's) per second, as a multiple of the same process's OpenBLAS (NumPy)
sgemm 1024^3 rate on as many threads.

Run: PYTHONPATH=python python benchmarks/bench_models.py [--models resnet20,vgg,mlp,resnet18,cnn]
     [--batches 32,128,512] [--threads 1,2] [--rounds 5]
With GRADKIT_ISA set, NumPy and PyTorch are held to the same ISA (benchmarks/baseline_isa.py).
"""
from __future__ import annotations

import baseline_isa  # noqa: F401  (first: holds NumPy and PyTorch to GRADKIT_ISA)
import argparse
import statistics
import time

import numpy as np

import gradkit as gk
from gradkit import nn
from gradkit.nn import _record

INPUTS = {"resnet20": (3, 32, 32), "vgg": (3, 32, 32), "mlp": (3, 32, 32), "resnet18": (3, 64, 64),
          "cnn": (1, 28, 28)}


# -- the gradkit models ------------------------------------------------------------------------------
def vgg_style():
    layers, cin = [], 3
    for c in (64, 128, 256):
        layers += [nn.Conv2d(cin, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                   nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
        cin = c
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(4096, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10))


def quickstart_cnn():
    from gradkit.examples.fashion_mnist import MODELS
    return MODELS["cnn"]()


def gk_model(name):
    return {"resnet20": lambda: gk.models.resnet20(), "vgg": vgg_style,
            "mlp": lambda: gk.models.mlp(3072, [2048, 2048, 1024], 10),
            "resnet18": lambda: gk.models.resnet18(num_classes=10), "cnn": quickstart_cnn}[name]()


# -- the same models in PyTorch (state_dict keys as gradkit's) -------------------------------------------
def torch_model(name):
    import torch.nn as tnn
    import torch.nn.functional as TF

    class BasicBlock(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = TF.relu(self.bn1(self.conv1(x)))
            return TF.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet(tnn.Module):
        def __init__(self, stem, widths, blocks, num_classes):
            super().__init__()
            self.conv1 = stem[0]
            self.bn1 = tnn.BatchNorm2d(widths[0])
            self.maxpool = stem[1]
            cin = widths[0]
            for i, (w, n) in enumerate(zip(widths, blocks)):
                layer = []
                for j in range(n):
                    layer.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                    cin = w
                setattr(self, f"layer{i + 1}", tnn.Sequential(*layer))
            self.nlayers = len(widths)
            self.fc = tnn.Linear(cin, num_classes)

        def forward(self, x):
            x = TF.relu(self.bn1(self.conv1(x)))
            if self.maxpool is not None:
                x = self.maxpool(x)
            for i in range(self.nlayers):
                x = getattr(self, f"layer{i + 1}")(x)
            return self.fc(TF.adaptive_avg_pool2d(x, 1).flatten(1))

    if name == "resnet20":
        return ResNet((tnn.Conv2d(3, 16, 3, 1, 1, bias=False), None), (16, 32, 64), (3, 3, 3), 10)
    if name == "resnet18":
        return ResNet((tnn.Conv2d(3, 64, 7, 2, 3, bias=False), tnn.MaxPool2d(3, 2, 1)), (64, 128, 256, 512),
                      (2, 2, 2, 2), 10)
    if name == "vgg":
        layers, cin = [], 3
        for c in (64, 128, 256):
            layers += [tnn.Conv2d(cin, c, 3, padding=1), tnn.BatchNorm2d(c), tnn.ReLU(),
                       tnn.Conv2d(c, c, 3, padding=1), tnn.BatchNorm2d(c), tnn.ReLU(), tnn.MaxPool2d(2)]
            cin = c
        return tnn.Sequential(*layers, tnn.Flatten(), tnn.Linear(4096, 256), tnn.ReLU(), tnn.Dropout(0.5),
                              tnn.Linear(256, 10))
    if name == "mlp":
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(3072, 2048), tnn.ReLU(), tnn.Linear(2048, 2048), tnn.ReLU(),
                              tnn.Linear(2048, 1024), tnn.ReLU(), tnn.Linear(1024, 10))
    return tnn.Sequential(
        tnn.Conv2d(1, 32, 3, padding=1), tnn.BatchNorm2d(32), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(32, 64, 3, padding=1), tnn.BatchNorm2d(64), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Flatten(), tnn.Linear(3136, 128), tnn.ReLU(), tnn.Dropout(0.3), tnn.Linear(128, 10))


def copy_weights(gk_model_, t_model):
    """Start both from the same numbers; every key must match in name and shape."""
    import torch

    t_state = t_model.state_dict()
    g_state = {k: v for k, v in gk_model_.state_dict().items() if not k.endswith("num_batches_tracked")}
    t_keys = {k for k in t_state if not k.endswith("num_batches_tracked")}
    if set(g_state) != t_keys:
        raise RuntimeError(f"state dicts differ: only gradkit {sorted(set(g_state) - t_keys)[:5]}, "
                           f"only torch {sorted(t_keys - set(g_state))[:5]}")
    for k, v in g_state.items():
        if tuple(t_state[k].shape) != v.shape:
            raise RuntimeError(f"{k}: gradkit {v.shape}, torch {tuple(t_state[k].shape)}")
        t_state[k] = torch.from_numpy(np.array(v)).to(t_state[k].dtype)
    t_model.load_state_dict(t_state)


# -- FLOPs ----------------------------------------------------------------------------------------------
def step_flops(model, x) -> float:
    """Direct-convolution and dense FLOPs of forward + backward (3x the forward's) for input x."""
    graph = _record.trace(model, x)
    total = 0.0
    for node in graph.nodes:
        m = node.module
        out = graph.values[node.outputs[0]][0]
        if isinstance(m, nn.Conv2d):
            kh, kw = m.weight.shape[2:]
            total += 2.0 * np.prod(out) * m.weight.shape[1] * kh * kw
        elif isinstance(m, nn.Linear) or node.op == "linear":
            w = m.weight.shape if m is not None else node.args[1].data.shape
            total += 2.0 * np.prod(out) * w[1]
    return 3.0 * total


def sgemm_rate(rounds=5) -> float:
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    b = a.copy()
    a @ b
    best = min(_block(lambda: a @ b, 10) for _ in range(rounds))
    return 2 * 1024 ** 3 / best


def _block(fn, reps) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


# -- one comparison ---------------------------------------------------------------------------------------
def compare(name, batch, threads, rounds):
    import torch

    gk.set_num_threads(threads)
    torch.set_num_threads(threads)
    gk.manual_seed(0)
    torch.manual_seed(0)
    g = gk_model(name)
    t = torch_model(name)
    copy_weights(g, t)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + INPUTS[name]).astype(np.float32)
    y = rng.integers(0, 10, batch)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss = nn.CrossEntropyLoss()
    gopt = gk.optim.SGD(g.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    topt = torch.optim.SGD(t.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    tloss = torch.nn.CrossEntropyLoss()

    def gk_step():
        gopt.zero_grad()
        loss(g(x), y)
        g.backward_maybe_input(loss.backward(), False)
        gopt.step()

    def torch_step():
        topt.zero_grad(set_to_none=False)
        tloss(t(xt), yt).backward()
        topt.step()

    for _ in range(2):
        gk_step(), torch_step()
    gt, tt = [], []
    for _ in range(rounds):
        gt.append(_block(gk_step, 1))
        tt.append(_block(torch_step, 1))
    flops = step_flops(g, x)
    return statistics.median(gt), min(gt), statistics.median(tt), min(tt), flops


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet20,vgg,mlp,resnet18,cnn")
    ap.add_argument("--batches", default="32,128,512")
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    print(baseline_isa.describe(), "| gradkit", gk._core.get_isa())
    for threads in (int(t) for t in args.threads.split(",")):
        with threadpool_limits(threads):
            rate = sgemm_rate()
        print(f"\n{threads} thread(s); NumPy sgemm 1024^3: {rate / 1e9:.0f} GFLOP/s")
        print(f"{'model':<9}{'batch':>6}{'gradkit ms':>12}{'torch ms':>10}{'ratio':>7}{'samples/s':>11}"
              f"{'GFLOP/s':>9}{'x sgemm':>8}")
        for name in args.models.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                with threadpool_limits(threads):
                    gmed, gmin, tmed, tmin, flops = compare(name, batch, threads, args.rounds)
                eff = flops / gmed
                print(f"{name:<9}{batch:>6}{gmed * 1e3:>12.1f}{tmed * 1e3:>10.1f}{gmed / tmed:>7.2f}"
                      f"{batch / gmed:>11.0f}{eff / 1e9:>9.0f}{eff / rate:>8.2f}   (minima {gmin * 1e3:.1f} / "
                      f"{tmin * 1e3:.1f} ms: {gmin / tmin:.2f})", flush=True)


if __name__ == "__main__":
    main()
