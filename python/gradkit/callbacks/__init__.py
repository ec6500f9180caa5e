"""Training callbacks with Keras's hooks, one file per family as Keras lays them out.

- ``base``: ``Callback`` (the hooks, ``state_dict``) and ``CallbackList`` (the callbacks of one fit).
- ``monitor``: ``EarlyStopping`` and ``ModelCheckpoint``, which watch a log entry.
- ``backup``: ``BackupAndRestore``, which makes a killed ``fit`` resume where it stopped.
- ``diagnostics``: ``ActivationStats`` and ``UpdateRatio``, the training diagnostics.
- ``history``: ``History``, what ``Trainer.fit`` returns.

Callbacks depend on nothing above them: the Trainer imports this package, never the reverse;
what a callback needs of a running fit it reads from ``trainer.state`` (``gk.train.TrainerState``).
"""
from .backup import BackupAndRestore
from .base import Callback, CallbackList
from .diagnostics import ActivationStats, UpdateRatio
from .history import History
from .monitor import EarlyStopping, ModelCheckpoint

__all__ = ["Callback", "CallbackList", "EarlyStopping", "ModelCheckpoint", "BackupAndRestore", "History",
           "ActivationStats", "UpdateRatio"]
