"""Train a CNN (or an MLP) on Fashion-MNIST with gradkit.

Run:
    python -m gradkit.examples.fashion_mnist                 # the CNN, 5 epochs
    python -m gradkit.examples.fashion_mnist --model mlp     # the MLP
    python examples/fashion_mnist.py --epochs 1 --subset 6000
    python -m gradkit.examples.fashion_mnist --augment       # random crops and flips
    python examples/fashion_mnist.py --export model.onnx    # also write the trained model as ONNX
    mpiexec -n 2 python examples/fashion_mnist.py             # data parallel on 2 ranks

The CNN is Conv(1,32,3,p1)-BN-ReLU-MaxPool2-Conv(32,64,3,p1)-BN-ReLU-MaxPool2-
Flatten-Linear(3136,128)-ReLU-Dropout(0.3)-Linear(128,10), trained with Adam
(batch 128) under a one-cycle learning rate peaking at 3e-3 (0.924 test accuracy
after 5 epochs here). The MLP uses Adam at 1e-3 with a cosine decay over 10
epochs (0.897). Images are scaled to [0, 1] and standardized once with
the training set's mean and standard deviation. The last ``--val`` (5000)
training images (a tenth of a smaller ``--subset``) are held out for validation: the per-epoch "val_" numbers come
from them, and the test set is touched once, at the end. ``--augment`` trains from a ``gk.data.DataLoader`` that
pads by 2, crops back to 28x28 at a random place and flips half the images,
prepared on ``--workers`` background threads while the model trains. Per-epoch progress and
test accuracy are printed; the learning curves (PNG) and the trained model
(``gk.save`` of its state_dict) are written to ``--out``; ``--export PATH`` writes it as ONNX too
(``gk.onnx.export``, needs ``pip install "gradkit[onnx]"``), for onnxruntime and other ONNX runtimes.

Started by ``mpiexec -n N``, it trains data-parallel (``gk.distributed``): every rank takes
``--batch-size`` samples per step (N times that in all), only rank 0 prints and writes, and each
rank runs cores / N kernel threads unless ``--threads`` says otherwise.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import numpy as np

import gradkit as gk
from gradkit import nn


def build_cnn() -> nn.Module:
    """The shared/PERF.md CNN (about 420K parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10),
    )


def build_mlp() -> nn.Module:
    """A 784-512-256-10 perceptron with dropout."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 10),
    )


MODELS = {"cnn": build_cnn, "mlp": build_mlp}


def launched_by_mpiexec() -> bool:
    """mpiexec tells each process the job's size in its environment (MPICH and Intel MPI, Open MPI)."""
    sizes = (os.environ.get(var, "") for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))
    return any(size.isdigit() and int(size) > 1 for size in sizes)


def prepare(x_train: np.ndarray, *others: np.ndarray):
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1], standardized with x_train's statistics
    (returns x_train and each of ``others`` transformed)."""
    scale = np.float32(1.0 / 255.0)
    arrays = [(x.astype(np.float32) * scale)[:, None] for x in (x_train,) + others]
    norm = gk.data.Standardize(per_channel=True).fit(arrays[0])
    return tuple(norm.transform(x) for x in arrays)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="cnn")
    p.add_argument("--epochs", type=int, default=None, help="default: 5 (cnn), 10 (mlp)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (the peak for onecycle); default 3e-3 for onecycle, else 1e-3")
    p.add_argument("--schedule", choices=("onecycle", "cosine", "constant"), default=None,
                   help="onecycle: OneCycleLR stepped per batch; cosine: CosineAnnealingLR(T_max=epochs) per epoch "
                        "(default: onecycle for the cnn, cosine for the mlp)")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--augment", action="store_true",
                   help="random crop (padding 2) and horizontal flip of each training batch")
    p.add_argument("--workers", type=int, default=1, help="background threads preparing batches (with --augment)")
    p.add_argument("--subset", type=int, default=None, help="use the first N training images only")
    p.add_argument("--val", type=int, default=None,
                   help="hold out the last N training images for validation (default 5000, or a tenth of a "
                        "smaller --subset; 0: none)")
    p.add_argument("--sync-bn", action="store_true", help="under mpiexec: batch-norm statistics over all ranks")
    p.add_argument("--threads", type=int, default=None,
                   help="kernel threads (default: gradkit's; under mpiexec, the cores / the ranks per machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="directory with the four IDX files (default: search, then download)")
    p.add_argument("--out", default=os.path.join("runs", "fashion_mnist"), help="where to write curves and model")
    p.add_argument("--export", metavar="PATH", default=None,
                   help="write the trained model as an ONNX file to PATH (needs the onnx package)")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Train and evaluate; returns {"test_accuracy", "test_loss", "epoch_seconds", "history", "model"}."""
    args = parse_args(argv)
    if args.export is not None and importlib.util.find_spec("onnx") is None:  # before training, not after
        raise SystemExit('--export: gk.onnx.export needs the onnx package: pip install "gradkit[onnx]"')
    epochs = args.epochs if args.epochs is not None else (5 if args.model == "cnn" else 10)
    if args.schedule is None:
        args.schedule = "onecycle" if args.model == "cnn" else "cosine"
    if args.threads is not None:
        gk.set_num_threads(args.threads)
    distributed = launched_by_mpiexec()
    if distributed:
        gk.distributed.init()  # threads per rank: the cores / the ranks on this machine, unless --threads
    rank, world = (gk.distributed.rank(), gk.distributed.world_size()) if distributed else (0, 1)
    say = print if rank == 0 else (lambda *a, **k: None)
    gk.manual_seed(args.seed)

    if rank != 0:
        gk.distributed.barrier()  # rank 0 downloads the data, if needed, first
    (x_train, y_train), (x_test, y_test) = gk.datasets.load_fashion_mnist(root=args.data)
    if distributed and rank == 0:
        gk.distributed.barrier()
    if args.subset is not None:
        x_train, y_train = x_train[:args.subset], y_train[:args.subset]
    val = args.val if args.val is not None else min(5000, len(x_train) // 10)
    if not 0 <= val < len(x_train):
        raise SystemExit(f"--val: expected 0 <= N < {len(x_train)} (the training images), got {val}")
    split = len(x_train) - val
    x_val, y_val = x_train[split:], y_train[split:]
    x_train, y_train = x_train[:split], y_train[:split]
    x_train, x_val, x_test = prepare(x_train, x_val, x_test)

    model = MODELS[args.model]()
    if distributed and args.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    lr = args.lr if args.lr is not None else (3e-3 if args.schedule == "onecycle" else 1e-3)
    optimizer = gk.optim.Adam(model.parameters(), lr=lr)
    scheduler = None
    if args.schedule == "cosine":
        scheduler = gk.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    elif args.schedule == "onecycle":
        per_rank = -(-len(x_train) // world)  # samples per rank and epoch (the Trainer pads to a multiple)
        steps = epochs * -(-per_rank // args.batch_size)
        scheduler = gk.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    loss = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    net = gk.distributed.DistributedDataParallel(model) if distributed else model
    trainer = gk.Trainer(net, loss, optimizer, scheduler=scheduler)
    ranks = f"{world} ranks x " if distributed else ""
    say(f"gradkit {gk.__version__}: {args.model} on {len(x_train)} images ({len(x_val)} held out), {epochs} epochs, "
        f"batch {args.batch_size}{' per rank' if distributed else ''}, Adam lr {lr} ({args.schedule}), "
        f"{ranks}{gk.get_num_threads()} threads ({gk._core.get_isa()})", flush=True)
    # Validation on held-out training images; the test set is used once, after training.
    validation = (x_val, y_val) if len(x_val) else None
    if args.augment:
        # Zero padding of standardized images pads with the mean intensity.
        augment = gk.data.Compose([gk.data.RandomCrop(28, padding=2), gk.data.RandomHorizontalFlip()])
        train = gk.data.DataLoader(gk.data.ArrayDataset(x_train, y_train), batch_size=args.batch_size,
                                   shuffle=True, transform=augment, num_workers=args.workers)
        history = trainer.fit(train, epochs=epochs, validation_data=validation, verbose=args.verbose)
    else:
        history = trainer.fit(x_train, y_train, epochs=epochs, batch_size=args.batch_size,
                              validation_data=validation, verbose=args.verbose)
    result = trainer.evaluate(x_test, y_test)
    train_seconds = history.train_time
    say(f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f}); training time per epoch: "
        + ", ".join(f"{t:.1f}s" for t in train_seconds), flush=True)

    if rank == 0:  # every rank holds the same model
        os.makedirs(args.out, exist_ok=True)
        model_path = os.path.join(args.out, f"{args.model}.npz")
        gk.save(model.state_dict(), model_path)
        print(f"saved the model to {model_path} (load with model.load_state_dict(gk.load(path)))")
        if args.export is not None:
            gk.onnx.export(model, x_test[:1], args.export)
            print(f"exported the model to {args.export} (ONNX: input 'input', float32 (batch, 1, 28, 28) "
                  "images prepared as prepare() does; output 'output', the logits)")
        try:
            curves = history.plot(os.path.join(args.out, f"{args.model}_curves.png"))
            print(f"saved the learning curves to {curves}")
        except ImportError as e:
            print(f"no curves: {e}", file=sys.stderr)
    return {"test_accuracy": result["accuracy"], "test_loss": result["loss"], "epoch_seconds": train_seconds,
            "history": history, "model": model}


if __name__ == "__main__":
    main()
