"""Helpers shared by the BackupAndRestore tests (tests/test_backup.py, tests/distributed)."""
import gradkit as gk


class Interrupted(Exception):
    pass


class Interrupt(gk.callbacks.Callback):
    """Raises after batch ``at = (epoch, batch)``; counts the batches this fit trained."""

    def __init__(self, at=None):
        super().__init__()
        self.at, self.epoch, self.batches = at, 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        self.batches += 1
        if (self.epoch, batch) == self.at:
            raise Interrupted
