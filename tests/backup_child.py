"""A training script that tests/test_backup.py kills with SIGKILL and starts again until it completes.

Usage: python backup_child.py BACKUP_DIR SAVE_FREQ OUT_FILE
It prints progress markers the test waits for: "start", "resumed E B" (the backup's
epoch and batch), "batch E B" after each batch, "save-begin" / "save-end" around each
backup, "in-save" while a backup's temp file is written but not yet renamed (only with
BACKUP_CHILD_SLOW_SAVE=seconds), "ending" when the fit has completed (before its backup is
deleted), and "done" after writing the final state to OUT_FILE.
BACKUP_CHILD_DELAY=seconds sleeps after each batch so that kills can land anywhere.
"""
import os
import sys
import time

import numpy as np

import gradkit as gk
from gradkit import _core, nn, serialization


def say(*words):
    print(*words, flush=True)


class Marked(gk.callbacks.BackupAndRestore):
    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        resume = self.trainer.state.resume
        say("fresh" if resume is None else f"resumed {resume['epoch']} {resume['batch']}")

    def on_train_end(self, logs=None):
        say("ending")  # the fit completed: the backup is deleted next, so a run killed after this may start fresh
        super().on_train_end(logs)

    def _write(self, epoch, batch):
        say("save-begin")
        super()._write(epoch, batch)
        say("save-end")


class Progress(gk.callbacks.Callback):
    def __init__(self, delay):
        super().__init__()
        self.delay = delay
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        if self.delay:
            time.sleep(self.delay)
        say(f"batch {self.epoch} {batch}")


def slow_saves(seconds):
    write = serialization._write_npz

    def slow_write(f, arrays, compress):
        write(f, arrays, compress)
        f.flush()
        say("in-save")
        time.sleep(seconds)

    serialization._write_npz = slow_write


def main():
    backup_dir, save_freq, out = sys.argv[1:4]
    save_freq = save_freq if save_freq == "epoch" else int(save_freq)
    if os.environ.get("BACKUP_CHILD_SLOW_SAVE"):
        slow_saves(float(os.environ["BACKUP_CHILD_SLOW_SAVE"]))
    say("start")
    gk.manual_seed(7)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 12)).astype(np.float32)
    y = (x[:, :3].sum(axis=1) > 0).astype(np.int64) + (x[:, 3] > 0.8)
    y[rng.random(len(y)) < 0.15] = 0  # label noise, so that validation loss stops improving
    model = nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
    opt = gk.optim.Adam(model.parameters(), lr=0.02, weight_decay=1e-3)
    if save_freq == "epoch":
        sched = gk.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=0.01)
    else:  # stepped per batch: its state changes mid-epoch
        sched = gk.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=8 * 12)
    stopper = gk.callbacks.EarlyStopping(patience=1, min_delta=0.002, restore_best_weights=True)
    backup = Marked(backup_dir, save_freq=save_freq)  # first in the list: still runs after the others
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), opt, scheduler=sched,
                         callbacks=[backup, Progress(float(os.environ.get("BACKUP_CHILD_DELAY", "0"))), stopper])
    history = trainer.fit(x, y, epochs=8, batch_size=20, validation_split=0.2, verbose=0)
    gk.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "history": history.history, "epochs": history.epoch, "stopper": stopper.state_dict(),
             "rng": np.array(_core.rng_state(), dtype=np.uint64)}, out)
    say("done", history.epoch[-1], stopper.stopped_epoch)


if __name__ == "__main__":
    main()
