"""Train He et al.'s ResNet-20 on CIFAR-10 with data augmentation.

Run:
    python examples/cifar10_resnet.py                        # 30 epochs, batch 128
    python examples/cifar10_resnet.py --epochs 1 --subset 5000 --data ~/data

The data comes from ``gk.datasets.load_cifar10`` (the python batches in ``--data``,
``$GRADKIT_DATA`` or the user cache, else a checked download of cifar-10-python.tar.gz).
Training batches go through a ``gk.data.DataLoader`` that pads each image by 4 and crops a
random 32x32 window, flips half the images and normalizes with the CIFAR-10 channel means
and standard deviations (He et al. 2016, section 4.2). SGD with momentum 0.9, weight decay 5e-4
and a cosine learning rate from ``--lr`` (0.1) to 0, stepped per epoch; the model is
``gk.models.resnet20()``, 0.27M parameters (He et al. report 91.25% test accuracy after 164
epochs, 64k iterations, with a step schedule). Per-epoch loss and accuracy on the training
batches (and on ``--val`` held-out images) are printed, the test accuracy at the end, and the
trained weights are saved to ``--out``.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import gradkit as gk
from gradkit import nn

# Per-channel statistics of the 50000 training images (in [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="initial SGD learning rate (cosine decay to 0)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--model", choices=("resnet20", "resnet56"), default="resnet20")
    p.add_argument("--subset", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--val", type=int, default=0, help="hold out the last N training images for validation")
    p.add_argument("--workers", type=int, default=1, help="background threads preparing batches")
    p.add_argument("--threads", type=int, default=None, help="kernel threads (default: gradkit's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="directory with cifar-10-batches-py (default: search, download)")
    p.add_argument("--out", default=os.path.join("runs", "cifar10"), help="where to write the model")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Train and evaluate; returns {"test_accuracy", "history", "model"}."""
    args = parse_args(argv)
    if args.threads is not None:
        gk.set_num_threads(args.threads)
    gk.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = gk.datasets.load_cifar10(root=args.data)
    if args.subset is not None:
        x_train, y_train = x_train[:args.subset], y_train[:args.subset]
    if not 0 <= args.val < len(x_train):
        raise SystemExit(f"--val: expected 0 <= N < {len(x_train)} (the training images), got {args.val}")
    split = len(x_train) - args.val
    scale = np.float32(1 / 255)
    x_train, x_val = x_train[:split] * scale, x_train[split:] * scale  # float32 (N, 3, 32, 32) in [0, 1]
    y_train, y_val = y_train[:split], y_train[split:]
    x_test = x_test * scale

    normalize = gk.data.Normalize(CIFAR10_MEAN, CIFAR10_STD)
    augment = gk.data.Compose([gk.data.RandomCrop(32, padding=4), gk.data.RandomHorizontalFlip(), normalize])
    train = gk.data.DataLoader(gk.data.ArrayDataset(x_train, y_train), batch_size=args.batch_size, shuffle=True,
                               transform=augment, num_workers=args.workers)
    validation = (normalize(x_val), y_val) if args.val else None

    model = getattr(gk.models, args.model)(num_classes=10)
    optimizer = gk.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    scheduler = gk.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), optimizer, scheduler=scheduler)
    n_params = sum(p.data.size for p in model.parameters())
    print(f"gradkit {gk.__version__}: {args.model} ({n_params:,} parameters) on {len(x_train)} CIFAR-10 images, "
          f"{args.epochs} epochs, batch {args.batch_size}, SGD lr {args.lr} (cosine), momentum 0.9, "
          f"weight decay {args.weight_decay}, {gk.get_num_threads()} threads ({gk._core.get_isa()})", flush=True)
    history = trainer.fit(train, epochs=args.epochs, validation_data=validation, verbose=args.verbose)
    result = trainer.evaluate(normalize(x_test), y_test)
    print(f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f}); training time per epoch: "
          + ", ".join(f"{t:.0f}s" for t in history.train_time), flush=True)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.model}.npz")
    gk.save(model.state_dict(), path)
    print(f"saved the model to {path} (load with model.load_state_dict(gk.load(path)))")
    return {"test_accuracy": result["accuracy"], "history": history, "model": model}


if __name__ == "__main__":
    main()
