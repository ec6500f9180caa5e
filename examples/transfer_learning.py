"""Transfer learning with a small ResNet on Fashion-MNIST: pretrain, freeze, fine-tune.

Run:
    python examples/transfer_learning.py                  # about 4 minutes on a shared 2-core machine
    python examples/transfer_learning.py --labelled 500 --threads 2

1. Pretrain a ResNet-8 (``gk.models.ResNet([1, 1, 1], widths=(8, 16, 32), stem="cifar")``: a 3x3
   convolution, one BasicBlock per stage, 20K parameters; ``--width 16`` doubles every width) on the
   first five classes (T-shirt, Trouser, Pullover, Dress, Coat).
2. Task B, the other five classes (Sandal, Shirt, Sneaker, Bag, Ankle boot), with only
   ``--labelled`` (1000) labelled training images:
   a. freeze the pretrained backbone (``requires_grad_(False)``), replace ``fc`` by a new
      ``Linear`` and train only that (the backbone's weights stay bit-identical; its
      batch-norm running statistics follow the new data, as in PyTorch's train mode);
   b. then unfreeze everything and fine-tune the whole net at a lower learning rate;
   c. against the same net trained from scratch on the same 1000 images for as many steps as a + b.
The test accuracy on task B's 5000 test images is printed for each. The convolutions are small
(8 to 32 channels), so it runs on one kernel thread by default: on a 2-core machine shared with
other jobs a run took 255 s on one thread (load average 11) and 696 s on two (load 5), with the
same results to the bit.
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np

import gradkit as gk
from gradkit import nn


def build_resnet8(num_classes: int, width: int) -> gk.models.ResNet:
    """Three stages of one BasicBlock at width/2*width/4*width channels on 1x28x28 images."""
    return gk.models.ResNet([1, 1, 1], num_classes=num_classes, widths=(width, 2 * width, 4 * width), in_channels=1,
                            stem="cifar")


def train(model, x, y, epochs, lr, batch_size, weight_decay=5e-4):
    """SGD with momentum 0.9 under a one-cycle learning rate peaking at ``lr``; returns the Trainer and
    the training seconds."""
    optimizer = gk.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps = epochs * -(-len(x) // batch_size)
    scheduler = gk.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), optimizer, scheduler=scheduler)
    history = trainer.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return trainer, sum(history.train_time)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrain-images", type=int, default=12000, help="images of classes 0-4 to pretrain on")
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--labelled", type=int, default=1000, help="labelled images of classes 5-9")
    p.add_argument("--epochs", type=int, default=15, help="epochs of each task-B stage (scratch gets twice this)")
    p.add_argument("--width", type=int, default=8, help="channels of the first stage (then 2x, 4x)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="kernel threads (default 1: the layers are small)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="directory with the Fashion-MNIST files (default: search, download)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    gk.set_num_threads(args.threads)
    gk.manual_seed(args.seed)
    pick = np.random.default_rng(args.seed)
    (x_train, y_train), (x_test, y_test) = gk.datasets.load_fashion_mnist(root=args.data)
    scale = np.float32(1 / 255)
    x_train, x_test = (x_train[:, None] * scale), (x_test[:, None] * scale)
    norm = gk.data.Standardize().fit(x_train[y_train < 5])  # the pretraining data's statistics
    x_train, x_test = norm.transform(x_train), norm.transform(x_test)

    a_idx = pick.permutation(np.flatnonzero(y_train < 5))[:args.pretrain_images]
    b_idx = pick.permutation(np.flatnonzero(y_train >= 5))[:args.labelled]
    xa, ya = x_train[a_idx], y_train[a_idx]
    xb, yb = x_train[b_idx], y_train[b_idx] - 5
    a_test, b_test = y_test < 5, y_test >= 5
    xb_test, yb_test = x_test[b_test], y_test[b_test] - 5
    pretrained = build_resnet8(5, args.width)
    n_params = sum(p.size for p in pretrained.parameters())
    print(f"gradkit {gk.__version__}, {gk.get_num_threads()} threads: ResNet-8 ({n_params:,} parameters) "
          f"pretrained on {len(xa)} images of classes 0-4, then classes 5-9 from {len(xb)} labelled images", flush=True)
    results, start = {}, time.perf_counter()

    trainer, seconds = train(pretrained, xa, ya, args.pretrain_epochs, lr=0.1, batch_size=args.batch_size)
    acc_a = trainer.evaluate(x_test[a_test], y_test[a_test])["accuracy"]
    print(f"pretrained on classes 0-4: test accuracy {acc_a:.4f} on them ({seconds:.0f}s)", flush=True)

    # a. Frozen backbone, a new head.
    model = copy.deepcopy(pretrained)
    model.requires_grad_(False)
    model.fc = nn.Linear(model.fc.in_features, 5)  # new parameters are trainable
    backbone = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.") and "running" not in k
                and "num_batches" not in k}
    trainer, seconds = train(model, xb, yb, args.epochs, lr=0.05, batch_size=args.batch_size)
    unchanged = all(np.array_equal(v, model.state_dict()[k]) for k, v in backbone.items())
    results["frozen backbone, new fc"] = trainer.evaluate(xb_test, yb_test)["accuracy"]
    print(f"frozen backbone + new fc: {results['frozen backbone, new fc']:.4f} ({seconds:.0f}s; backbone weights "
          f"{'unchanged' if unchanged else 'CHANGED'})", flush=True)

    # b. Unfreeze and fine-tune the whole net.
    model.requires_grad_(True)
    trainer, seconds = train(model, xb, yb, args.epochs, lr=0.01, batch_size=args.batch_size)
    results["then whole net fine-tuned"] = trainer.evaluate(xb_test, yb_test)["accuracy"]
    print(f"then whole net fine-tuned: {results['then whole net fine-tuned']:.4f} ({seconds:.0f}s)", flush=True)

    # c. The same net from scratch on the same images, as many steps as a + b.
    scratch = build_resnet8(5, args.width)
    trainer, seconds = train(scratch, xb, yb, 2 * args.epochs, lr=0.1, batch_size=args.batch_size)
    results["from scratch"] = trainer.evaluate(xb_test, yb_test)["accuracy"]
    print(f"from scratch: {results['from scratch']:.4f} ({seconds:.0f}s)", flush=True)

    print(f"\ntest accuracy on classes 5-9 ({len(xb_test)} images) after {len(xb)} labelled images:")
    for name, acc in results.items():
        print(f"  {name:28s} {acc:.4f}")
    print(f"total {time.perf_counter() - start:.0f}s")
    return results


if __name__ == "__main__":
    main()
