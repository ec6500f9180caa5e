"""``Callback``, the base of every training callback, and ``CallbackList``, the callbacks of one fit.

A callback passed to ``gk.Trainer(callbacks=...)`` is bound to the trainer
(``self.trainer``, ``self.model``) before training and called at these points:
``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``, ``on_batch_begin(batch, logs)``,
``on_batch_end(batch, logs)``, ``on_epoch_end(epoch, logs)``, ``on_train_end(logs)``.
Epochs and batches are numbered from 0, as in Keras. ``logs`` at epoch end holds the
epoch's "loss", metrics, "val_" variants and "lr". Setting ``self.trainer.stop_training = True``
ends training after the current epoch; ``self.trainer.state`` (a ``gk.train.TrainerState``)
tells where the fit is. A callback with state that training depends on returns it from
``state_dict()`` and takes it back in ``load_state_dict(state)``, so ``BackupAndRestore``
can back it up.
"""
from __future__ import annotations

__all__ = ["Callback", "CallbackList"]


class Callback:
    """Base class: override the hooks you need; each default does nothing.

    Attributes:
        runs_last (False): a class whose callbacks are called after the others (whatever
            their place in the list), e.g. ``BackupAndRestore``, which restores the others'
            state after their ``on_train_begin`` and backs it up after their ``on_batch_end``.
    """

    runs_last = False

    def __init__(self):
        self.trainer = None
        self.model = None

    def set_trainer(self, trainer) -> None:
        """Bind to the trainer (and its model) about to train."""
        self.trainer = trainer
        self.model = trainer.model

    def set_model(self, model) -> None:
        """Keras's name; the trainer calls ``set_trainer``, which sets the model too."""
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def release(self) -> None:
        """Free what the callback holds while a fit runs (files, locks). The trainer calls it when
        ``fit`` returns or raises, after ``on_train_end`` if that was reached (default: nothing)."""

    def state_dict(self) -> dict:
        """The state training depends on, as a dict ``gk.save`` can write (default: none)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what ``state_dict()`` returned (default: nothing to restore)."""
        if not isinstance(state, dict):
            raise TypeError(f"{type(self).__name__}.load_state_dict: state: expected a dict, "
                            f"got {type(state).__name__}")


def _overrides(cb, hook: str) -> bool:
    return getattr(type(cb), hook) is not getattr(Callback, hook)


class CallbackList:
    """The callbacks of one fit, bound to its trainer, each hook called on each callback in order.

    ``CallbackList.checked(who, callbacks)`` turns the Trainer's ``callbacks`` argument (a list,
    one callback, or None) into the list it keeps, ``runs_last`` callbacks moved to the end.
    Only the callbacks that override ``on_batch_begin`` / ``on_batch_end`` are called per batch;
    ``wants_batch_begin`` / ``wants_batch_end`` say whether any does (the loop then skips
    building the batch's logs).
    """

    def __init__(self, callbacks=(), trainer=None):
        self.callbacks = list(callbacks)
        if trainer is not None:
            for cb in self.callbacks:
                cb.set_trainer(trainer)
        self._batch_begin = [cb for cb in self.callbacks if _overrides(cb, "on_batch_begin")]
        self._batch_end = [cb for cb in self.callbacks if _overrides(cb, "on_batch_end")]
        self.wants_batch_begin = bool(self._batch_begin)
        self.wants_batch_end = bool(self._batch_end)

    @staticmethod
    def checked(who: str, callbacks) -> list:
        """``callbacks`` (a list of Callback instances, one Callback, or None) as a list,
        ``runs_last`` ones at the end; TypeError naming what else came."""
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, Callback):
            callbacks = [callbacks]
        elif isinstance(callbacks, (str, bytes, dict)) or not hasattr(callbacks, "__iter__"):
            raise TypeError(f"{who}: callbacks: expected a list of gk.callbacks.Callback instances (or None), "
                            f"got {type(callbacks).__name__}")
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                got = f"the class {cb.__name__}" if isinstance(cb, type) else type(cb).__name__
                raise TypeError(f"{who}: callbacks: expected gk.callbacks.Callback instances, got {got}")
        callbacks.sort(key=lambda cb: bool(cb.runs_last))
        return callbacks

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    # Each callback gets its own copy of the logs.
    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(dict(logs or {}))

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(dict(logs or {}))

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, dict(logs or {}))

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, dict(logs or {}))

    def on_batch_begin(self, batch, logs=None):
        for cb in self._batch_begin:
            cb.on_batch_begin(batch, dict(logs or {}))

    def on_batch_end(self, batch, logs=None):
        for cb in self._batch_end:
            cb.on_batch_end(batch, dict(logs or {}))

    def release(self) -> None:
        for cb in self.callbacks:
            cb.release()
