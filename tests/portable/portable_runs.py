"""Short training runs for the portable suite: ``Trainer.fit`` with each optimizer (weight_decay
and l1 on), a scheduler, Dropout, and a ``gk.save``/``gk.load`` resume.

test_portable_train.py runs them in its own process (on an emulated CPU in CI) and, through
``python portable_runs.py OUT.npz ISA...``, in a native process on the same ISAs, and
compares the two.
"""
import os
import sys
import tempfile

import numpy as np

import gradkit as gk
from gradkit import _core, nn

DECAY = dict(weight_decay=1e-3, l1=1e-4)
OPTIMIZERS = {  # name -> (class, arguments)
    "SGD": ("SGD", dict(lr=0.05, **DECAY)),
    "momentum": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, **DECAY)),
    "Nesterov": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, **DECAY)),
    "Adagrad": ("Adagrad", dict(lr=0.05, lr_decay=0.01, **DECAY)),
    "RMSprop": ("RMSprop", dict(lr=0.005, momentum=0.5, centered=True, **DECAY)),
    "Adam": ("Adam", dict(lr=0.005, **DECAY)),
    "AdamW": ("AdamW", dict(lr=0.005, weight_decay=0.05, l1=1e-4)),
    "AMSGrad": ("Adam", dict(lr=0.005, amsgrad=True, **DECAY)),
}
EPOCHS, BATCH = 3, 32
SCHEDULERS = [  # one per optimizer, in turn
    lambda opt, batches: gk.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
    lambda opt, batches: gk.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS + 1),
    lambda opt, batches: gk.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=(EPOCHS + 1) * batches),
]


def data(dtype):
    """96 images 1x7x7 in 3 classes (which third of the image is brightest), plus noise."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    x = rng.normal(0.0, 0.5, (96, 1, 7, 7))
    for i, label in enumerate(y):
        x[i, 0, :, 2 * label:2 * label + 3] += 1.0
    return x.astype(dtype), y


def model(dtype):
    # Conv-BN-ReLU-MaxPool2 runs as one fused kernel in Sequential; Linear-ReLU too.
    return nn.Sequential(nn.Conv2d(1, 7, 3, padding=1), nn.BatchNorm2d(7), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(7 * 3 * 3, 17), nn.ReLU(), nn.Dropout(0.25), nn.Linear(17, 3)).to(dtype)


def trainer(name, dtype):
    gk.manual_seed(1)
    net = model(dtype)
    cls, kwargs = OPTIMIZERS[name]
    opt = getattr(gk.optim, cls)(net.parameters(), **kwargs)
    sched = SCHEDULERS[list(OPTIMIZERS).index(name) % len(SCHEDULERS)](opt, -(-96 // BATCH))
    return gk.Trainer(net, nn.CrossEntropyLoss(), opt, scheduler=sched), net, opt, sched


def run(name, dtype):
    """Train EPOCHS epochs, save, and train one more both in place and from the saved files.

    Returns (losses per epoch, state after the last epoch, the same state reached from the files).
    """
    x, y = data(dtype)
    fit, net, opt, sched = trainer(name, dtype)
    losses = fit.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0).history["loss"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ckpt.npz")
        gk.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, path)
        gk.manual_seed(7)
        losses += fit.fit(x, y, epochs=EPOCHS + 1, batch_size=BATCH, verbose=0, initial_epoch=EPOCHS).history["loss"]
        fit2, net2, opt2, sched2 = trainer(name, dtype)
        saved = gk.load(path)
    net2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["optimizer"])
    sched2.load_state_dict(saved["scheduler"])
    gk.manual_seed(7)
    fit2.fit(x, y, epochs=EPOCHS + 1, batch_size=BATCH, verbose=0, initial_epoch=EPOCHS)
    return np.array(losses), net.state_dict(), net2.state_dict()


def results(isas):
    """Every run on every ISA in ``isas``, as a flat dict for np.savez."""
    out = {}
    previous = _core.get_isa()
    try:
        for isa in isas:
            _core.set_isa(isa)
            for name in OPTIMIZERS:
                for dtype in (np.float32, np.float64):
                    losses, state, _ = run(name, dtype)
                    key = f"{isa}/{name}/{np.dtype(dtype).name}"
                    out[f"{key}/loss"] = losses
                    out.update({f"{key}/{k}": v for k, v in state.items()})
    finally:
        _core.set_isa(previous)
    return out


if __name__ == "__main__":
    np.savez(sys.argv[1], **results(sys.argv[2:]))
