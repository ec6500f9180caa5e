"""``EarlyStopping`` and ``ModelCheckpoint``: callbacks that watch a monitored log entry."""
from __future__ import annotations

import math
import os

from .._checks import boolean, integer, real
from .base import Callback

__all__ = ["EarlyStopping", "ModelCheckpoint"]


def _resolve_mode(who: str, mode: str, monitor: str):
    """'min' or 'max' from mode (auto: max for accuracy-like monitors, as Keras)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: mode: expected 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


def _monitored(who: str, monitor: str, logs) -> float:
    logs = logs or {}
    if monitor not in logs:
        hint = " (validation metrics need validation_data or validation_split in fit)" if monitor.startswith("val_") else ""
        raise ValueError(f"{who}: monitor: {monitor!r} is not in the epoch logs; available: "
                         f"{', '.join(sorted(logs)) or 'none'}{hint}")
    return float(logs[monitor])


class _Monitor:
    """Best-value tracking shared by EarlyStopping and ModelCheckpoint."""

    def _init_monitor(self, who, monitor, mode, min_delta=0.0):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"{who}: monitor: expected a metric name such as 'val_loss', got {monitor!r}")
        self.monitor = monitor
        self.mode = _resolve_mode(who, mode, monitor)
        self.min_delta = abs(real(who, "min_delta", min_delta))
        self._who = who
        self.best = math.inf if self.mode == "min" else -math.inf

    def _improved(self, current: float, best: float) -> bool:
        if math.isnan(current):
            return False
        if self.mode == "min":
            return current < best - self.min_delta
        return current > best + self.min_delta


class EarlyStopping(Callback, _Monitor):
    """Stop training when a monitored quantity stops improving.

    Args:
        monitor ("val_loss"): the log entry to watch.
        min_delta (0.0): smallest change that counts as an improvement.
        patience (0): epochs without improvement before stopping.
        mode ("auto"): "min", "max", or "auto" (max for names containing "acc").
        restore_best_weights (False): at the end of training, load the weights
            (and buffers) of the best epoch seen.

    After training, ``stopped_epoch`` is the epoch (0-based) training stopped
    at (0 if it ran to the end) and ``best_epoch`` the best one.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, mode: str = "auto",
                 restore_best_weights: bool = False):
        super().__init__()
        self._init_monitor("EarlyStopping", monitor, mode, min_delta)
        self.patience = integer("EarlyStopping", "patience", patience, 0)
        self.restore_best_weights = boolean("EarlyStopping", "restore_best_weights", restore_best_weights)
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = None
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = None
        self.best_weights = None
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored("EarlyStopping", self.monitor, logs)
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            return
        if self.wait >= self.patience and epoch > 0:  # Keras's rule
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait, "stopped_epoch": self.stopped_epoch,
                "best_epoch": self.best_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.best, self.wait, self.stopped_epoch = float(state["best"]), int(state["wait"]), int(state["stopped_epoch"])
        self.best_epoch, self.best_weights = state["best_epoch"], state["best_weights"]


class ModelCheckpoint(Callback, _Monitor):
    """Save the model and optimizer state at the end of epochs (to resume training).

    The file (written atomically by ``gk.save``) holds a dict with "model"
    (``model.state_dict()``), "optimizer" (``optimizer.state_dict()``),
    "epoch" (epochs completed), "rng" (the library generator's state, so
    shuffling and dropout continue identically) and "scheduler" when there is
    one. Resume with ``trainer.load_checkpoint(path)`` then
    ``trainer.fit(..., initial_epoch=<returned epoch>)``.

    Args:
        path: file name; may contain ``{epoch}`` (1-based) and log fields such as
            ``{val_loss:.4f}``.
        monitor ("val_loss"): the log entry that decides "best".
        save_best_only (False): only save when ``monitor`` improves.
        mode ("auto"): "min", "max", or "auto" (max for names containing "acc").
    """

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False, mode: str = "auto"):
        super().__init__()
        self._init_monitor("ModelCheckpoint", monitor, mode)
        self.path = os.fspath(path)
        self.save_best_only = boolean("ModelCheckpoint", "save_best_only", save_best_only)
        self.last_saved = None

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf

    def _format_path(self, epoch, logs) -> str:
        try:
            return self.path.format(epoch=epoch + 1, **(logs or {}))
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"ModelCheckpoint: path: cannot fill {self.path!r} from epoch and logs "
                             f"({', '.join(sorted(logs or {}))}): {e}") from None

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only:
            current = _monitored("ModelCheckpoint", self.monitor, logs)
            if not self._improved(current, self.best):
                return
            self.best = current
        path = self._format_path(epoch, logs)
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self.trainer.save_checkpoint(path, epoch + 1)
        self.last_saved = path

    def state_dict(self) -> dict:
        return {"best": self.best, "last_saved": self.last_saved}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.best, self.last_saved = float(state["best"]), state["last_saved"]
