"""``TrainerState``: where a running ``fit`` is, for its callbacks (``trainer.state``)."""
from __future__ import annotations

__all__ = ["TrainerState"]


class TrainerState:
    """What a running ``Trainer.fit`` tells its callbacks; the Trainer writes it, callbacks read it.

    ``BackupAndRestore`` backs up from it and, to resume a killed fit, sets ``resume`` in its
    ``on_train_begin``. A new state is made at the start of every ``fit``.

    Attributes:
        epoch: the epoch running (0-based).
        batch: the batches of this epoch done (resumed ones included).
        shard: this rank's ``gk.distributed.shard.Shard`` when the model is a
            ``DistributedDataParallel`` (None in one process).
        epoch_rng: the generator state (seed, offset) before this epoch's draws (its shuffle),
            set after ``on_epoch_begin``.
        sums: (loss sum, samples, metric sums) over this epoch's batches done, on this rank
            (None before the first batch).
        setup: the fit's settings (epochs, shuffle, batch_size, samples, drop_last, ranks) and a
            fingerprint of its training data ("data"): what a backup must share to be resumed.
        resume: None, or where the fit continues, set by a callback in ``on_train_begin``: a dict
            with "epoch", "batch" (batches of that epoch already done), "epoch_rng" (the
            generator state before that epoch's draws), "rng" (the generator state to continue
            with) and "sums" (the running sums of the batches done, None at an epoch start).
    """

    def __init__(self, shard=None, setup=None):
        self.epoch = 0
        self.batch = 0
        self.shard = shard
        self.epoch_rng = None
        self.sums = None
        self.setup = setup
        self.resume = None

    def __repr__(self) -> str:
        return (f"TrainerState(epoch={self.epoch}, batch={self.batch}, "
                f"ranks={1 if self.shard is None else self.shard.world}, resume={self.resume is not None})")
