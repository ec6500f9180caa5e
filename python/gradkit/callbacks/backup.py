"""``BackupAndRestore``: a killed ``fit`` started again resumes where it stopped (Keras's callback)."""
from __future__ import annotations

import copy
import glob
import os
import warnings
import zipfile

try:
    import fcntl
except ImportError:  # not POSIX: no lock file
    fcntl = None

import numpy as np

from .. import _core
from .._checks import boolean, integer
from ..serialization import load, save
from .base import Callback

__all__ = ["BackupAndRestore"]

_BACKUP_FORMAT = "gradkit-backup-3"
_BACKUP_KEYS = ("format", "fit", "position", "rng", "epoch_rng", "sums", "steps", "stop_training", "model",
                "optimizer", "scheduler", "classes", "callbacks", "history")


def _rng_pair(value) -> tuple:
    seed, offset = (int(v) for v in np.asarray(value, dtype=np.uint64).reshape(2))
    return seed, offset


class BackupAndRestore(Callback):
    """Back up the training state so that a killed ``fit`` resumes where it stopped (Keras's callback).

    Run the same script again (same model, seed, data and ``fit`` call) and ``fit``
    continues from the last backup and ends bit-identical to a run that was never
    interrupted. A backup holds the model (parameters and buffers), the optimizer,
    the scheduler, the generator state and the position in the epoch (a mid-epoch
    resume redraws the epoch's shuffle, skips the batches done, then continues the
    generator where it was, so dropout draws the same masks), the other callbacks'
    ``state_dict()`` (EarlyStopping's best, wait and best weights, ModelCheckpoint's
    best), the History, the epoch's running loss and metric sums, and
    ``stop_training``. It runs after the other callbacks, whatever its place in the list.

    Each backup is written atomically by ``gk.save`` (temp file, fsync, rename), so a
    kill while writing leaves the previous backup whole. When ``fit`` completes
    (including an EarlyStopping stop) the backup is deleted; when it ends by an
    exception the backup stays.

    A backup records what it belongs to: the fit's settings (epochs, shuffle, batch_size,
    drop_last, the number of samples and of ranks) and a fingerprint of the training data
    (shapes, dtypes and a hash of 64 rows at fixed positions). A fit resumes a backup only
    when all of these match, and only after checking the whole backup against the model,
    the optimizer, the scheduler and the callbacks: a backup that is refused raises
    ValueError naming what differs, changes nothing, and is kept. A lock file
    (``backup_dir/.lock``, ``fcntl.flock``) makes a second process given the same
    backup_dir fail at once (RuntimeError) instead of sharing it.

    Args:
        backup_dir: directory for the backup files (created if missing). Use one
            directory per training run.
        save_freq ("epoch"): "epoch" backs up at the end of every epoch; an int N
            every N batches (counted across epochs), and not at epoch ends.
        double_checkpoint (False): keep the previous backup too; if the latest cannot
            be read (e.g. a damaged disk), resume from the previous one, with a warning.
        delete_checkpoint (True): delete the backup when training completes.

    With a ``DistributedDataParallel`` model, rank 0 alone reads and writes the backup
    (each rank's running sums of a mid-epoch backup are gathered into it) and sends
    what it read to every rank, so ``backup_dir`` need only be on rank 0's disk; a
    resume needs the same number of ranks.

    Raises (in ``fit``) ValueError when the backup cannot be read, or was written by
    a different setup (other settings or data, model, optimizer, scheduler or callbacks),
    before anything is restored; RuntimeError when another process holds backup_dir.
    """

    runs_last = True  # called after the other callbacks
    _FILES = ("backup.npz", "backup.prev.npz")

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint: bool = False,
                 delete_checkpoint: bool = True):
        super().__init__()
        if not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir):
            raise TypeError(f"BackupAndRestore: backup_dir: expected a directory path, got {backup_dir!r}")
        if isinstance(save_freq, str):
            if save_freq != "epoch":
                raise ValueError(f"BackupAndRestore: save_freq: expected 'epoch' or a positive number of batches, "
                                 f"got {save_freq!r}")
        else:
            save_freq = integer("BackupAndRestore", "save_freq", save_freq, 1)
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = boolean("BackupAndRestore", "double_checkpoint", double_checkpoint)
        self.delete_checkpoint = boolean("BackupAndRestore", "delete_checkpoint", delete_checkpoint)
        self._epoch = 0
        self._steps = 0  # batches trained over all epochs, resumed ones included
        self._lock = None  # the open lock file while a fit runs (rank 0)

    @property
    def _paths(self):
        return [os.path.join(self.backup_dir, name) for name in self._FILES]

    # -- hooks ------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._epoch, self._steps = 0, 0
        shard = self.trainer.state.shard
        if shard is None:
            state = self._prepare_and_read()
        else:  # rank 0 reads; every rank gets its backup, or its error (no rank is left waiting)
            found = None
            if shard.rank == 0:
                try:
                    found = (self._prepare_and_read(), None)
                except (OSError, ValueError) as e:
                    found = (None, e)
            state, error = shard.share(found, "BackupAndRestore")
            if error is not None:
                raise error
        if state is not None:
            self._restore(state)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        self._steps += 1
        if self.save_freq != "epoch" and self._steps % self.save_freq == 0:
            self._write(self._epoch, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._write(epoch + 1, 0)

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint or not self._writes():
            return
        # Only this fit's own backup is here: a backup of another fit stopped it in on_train_begin.
        for path in self._paths:
            if os.path.exists(path):
                os.remove(path)
        self._remove_temp_files()
        self.release()
        try:
            os.rmdir(self.backup_dir)  # only when nothing else is in it
        except OSError:
            pass

    # -- the lock ---------------------------------------------------------------------
    def _take_lock(self):
        """Hold ``backup_dir/.lock`` (an exclusive flock) until the fit ends; RuntimeError if another holds it."""
        if fcntl is None or self._lock is not None:
            return
        path = os.path.join(self.backup_dir, ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RuntimeError(f"BackupAndRestore: backup_dir: {self.backup_dir!r} is in use by another "
                               f"training process (pid {holder}, holding {path}); give each run its own "
                               "backup_dir") from None
        except OSError:  # a file system without flock (some network mounts): run unlocked, as before
            os.close(fd)
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock = fd

    def release(self):
        """Remove the lock file and release the lock (the Trainer calls this however fit ends)."""
        if self._lock is None:
            return
        try:  # removed while held: a process that opens it later gets a new file and its own lock
            os.remove(os.path.join(self.backup_dir, ".lock"))
        except OSError:
            pass
        os.close(self._lock)  # closing the descriptor releases the flock
        self._lock = None

    # -- ranks ------------------------------------------------------------------------
    def _rank(self) -> int:
        shard = self.trainer.state.shard
        return 0 if shard is None else shard.rank

    def _writes(self) -> bool:
        """True in one process and on rank 0 of a distributed fit: the rank that owns the files."""
        return self._rank() == 0

    # -- writing ----------------------------------------------------------------------
    def _remove_temp_files(self):
        """Temp files of saves that a kill interrupted (gk.save names them .<file>.<hex>.tmp)."""
        for name in self._FILES:
            for path in glob.glob(os.path.join(glob.escape(self.backup_dir), f".{name}.*.tmp")):
                os.remove(path)

    def _state(self, epoch: int, batch: int, sums) -> dict:
        trainer, history = self.trainer, self.trainer.history
        mid_epoch = batch > 0
        return {
            "format": _BACKUP_FORMAT,
            "fit": self._fit_settings(),
            "position": {"epoch": int(epoch), "batch": int(batch)},
            "rng": np.array(_core.rng_state(), dtype=np.uint64),
            "epoch_rng": np.array(trainer.state.epoch_rng if mid_epoch else _core.rng_state(), dtype=np.uint64),
            "sums": sums,  # per rank
            "steps": self._steps,
            "stop_training": bool(trainer.stop_training),
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": None if trainer.scheduler is None else trainer.scheduler.state_dict(),
            "classes": {"model": type(trainer.model).__name__, "optimizer": type(trainer.optimizer).__name__,
                        "scheduler": None if trainer.scheduler is None else type(trainer.scheduler).__name__},
            "callbacks": [[type(cb).__name__, cb.state_dict()] for cb in self._others()],
            "history": {"history": history.history, "epoch": history.epoch, "epoch_time": history.epoch_time,
                        "train_time": history.train_time},
        }

    def _fit_settings(self) -> dict:
        """What a resumed fit must share with the one backed up: its settings and data fingerprint."""
        return dict(self.trainer.state.setup)

    def _others(self):
        return [cb for cb in self.trainer.callbacks if cb is not self]

    def _write(self, epoch: int, batch: int) -> None:
        sums = None
        if batch > 0:  # mid-epoch: the running loss and metric sums of every rank
            shard, running = self.trainer.state.shard, list(self.trainer.state.sums)
            sums = [running] if shard is None else shard.gather(running, "BackupAndRestore")
        if not self._writes():
            return
        state = self._state(epoch, batch, sums)
        latest, previous = self._paths
        if self.double_checkpoint and os.path.exists(latest):
            os.replace(latest, previous)
        save(state, latest)

    # -- reading ----------------------------------------------------------------------
    def _prepare_and_read(self):
        """Create backup_dir, remove what an interrupted save left, and read the backup (None if none)."""
        if os.path.exists(self.backup_dir) and not os.path.isdir(self.backup_dir):
            raise ValueError(f"BackupAndRestore: backup_dir: expected a directory, got the file {self.backup_dir!r}")
        os.makedirs(self.backup_dir, exist_ok=True)
        self._take_lock()  # before anything in the directory is touched
        self._remove_temp_files()  # what a killed run left: no other process is writing here
        return self._read()

    def _read(self):
        """The newest readable backup, or None when there is none; ValueError when none is readable."""
        candidates = self._paths if self.double_checkpoint else self._paths[:1]
        errors = []
        for path in candidates:
            if not os.path.exists(path):
                continue
            try:
                with open(path, "rb") as f:  # np.load leaves a file it opened unclosed when it is not a zip
                    state = load(f)
                if not isinstance(state, dict) or state.get("format") != _BACKUP_FORMAT:
                    raise ValueError(f"not a {_BACKUP_FORMAT} file")
                missing = [k for k in _BACKUP_KEYS if k not in state]
                if missing:
                    raise ValueError(f"missing entries {missing}")
            except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
                errors.append(f"{path}: {type(e).__name__}: {e}")
                continue
            if errors:
                warnings.warn(f"BackupAndRestore: resuming from the previous backup {path}; the latest one "
                              f"cannot be read ({errors[0]})", RuntimeWarning, stacklevel=3)
            return state
        if errors:
            raise ValueError(f"BackupAndRestore: backup_dir: no readable backup in {self.backup_dir!r} ("
                             f"{'; '.join(errors)}); delete the directory to train from the start")
        return None

    def _restore(self, state: dict) -> None:
        """Check the whole backup against this fit, then (only then) restore it."""
        self._check(state)
        trainer, history = self.trainer, self.trainer.history
        trainer.model.load_state_dict(state["model"])  # all or nothing; checked by _check
        trainer.optimizer.load_state_dict(state["optimizer"])
        if trainer.scheduler is not None:
            trainer.scheduler.load_state_dict(state["scheduler"])
        for cb, (_, cb_state) in zip(self._others(), state["callbacks"]):
            cb.load_state_dict(cb_state)
        for key in ("history", "epoch", "epoch_time", "train_time"):
            setattr(history, key, state["history"][key])
        trainer.stop_training = bool(state["stop_training"])
        self._steps = int(state["steps"])
        position = state["position"]
        _core.set_rng_state(*_rng_pair(state["rng"]))
        trainer.state.resume = {"epoch": int(position["epoch"]), "batch": int(position["batch"]),
                                "epoch_rng": _rng_pair(state["epoch_rng"]), "rng": _rng_pair(state["rng"]),
                                "sums": None if state["sums"] is None else state["sums"][self._rank()]}

    def _check(self, state: dict) -> None:
        """ValueError naming the first thing the backup does not share with this fit; changes nothing.

        The optimizer's, the scheduler's and the callbacks' state dicts are loaded into shallow
        copies of them (their own all-or-nothing checks), the model's entries are checked by keys,
        shapes and kinds as ``Module.load_state_dict`` does.
        """
        trainer = self.trainer
        who = f"BackupAndRestore: backup in {self.backup_dir!r}"
        keep = "; the backup is kept: use another backup_dir, or delete this one to train from the start"
        saved_types = [name for name, _ in state["callbacks"]]
        types = [type(cb).__name__ for cb in self._others()]
        if saved_types != types:
            raise ValueError(f"{who} was written with callbacks {saved_types}, this fit has {types}{keep}")
        if (state["scheduler"] is None) != (trainer.scheduler is None):
            raise ValueError(f"{who}: the backup has {'no' if state['scheduler'] is None else 'a'} scheduler, "
                             f"this fit has {'none' if trainer.scheduler is None else 'one'}{keep}")
        classes = state["classes"]
        for key, obj in (("model", trainer.model), ("optimizer", trainer.optimizer), ("scheduler", trainer.scheduler)):
            name = None if obj is None else type(obj).__name__
            if classes.get(key) != name:
                raise ValueError(f"{who} was written with {key} {classes.get(key)}, this fit has {name}{keep}")
        saved, fit = state["fit"], self._fit_settings()
        if not isinstance(saved, dict):
            raise ValueError(f"{who}: 'fit' entry: expected a dict of settings, got {type(saved).__name__}")
        for key in fit:
            if saved.get(key) == fit[key]:
                continue
            if key == "data" and isinstance(saved.get(key), dict):
                part = next(k for k in fit[key] if saved[key].get(k) != fit[key][k])
                what = {"rows": "the number of rows", "arrays": "the arrays' dtypes and shapes",
                        "hash": "a hash of 64 sampled rows", "kind": "the dataset's type"}[part]
                raise ValueError(f"{who} belongs to another fit: the training data differs ({what}: "
                                 f"{saved[key].get(part)!r} there, {fit[key][part]!r} here){keep}")
            raise ValueError(f"{who} belongs to another fit: {key} was {saved.get(key)!r} there, "
                             f"{fit[key]!r} here{keep}")
        try:
            _check_model_state(trainer.model, state["model"])
            _probe(trainer.optimizer).load_state_dict(state["optimizer"])
            if trainer.scheduler is not None:
                copy.copy(trainer.scheduler).load_state_dict(state["scheduler"])
            for cb, (_, cb_state) in zip(self._others(), state["callbacks"]):
                copy.copy(cb).load_state_dict(cb_state)
            _check_progress(state)
        except (TypeError, ValueError, KeyError, RuntimeError) as e:
            raise ValueError(f"{who} does not fit this run: {type(e).__name__}: {e}{keep}") from None


def _probe(optimizer):
    """A shallow copy of ``optimizer`` whose ``load_state_dict`` changes none of the original's
    hyperparameters or state (it only empties the caches they share, rebuilt at the next step)."""
    probe = copy.copy(optimizer)
    probe.param_groups = [dict(group) for group in optimizer.param_groups]
    return probe


def _check_model_state(model, saved) -> None:
    """The checks of ``Module.load_state_dict`` (strict) without writing: keys, shapes, numeric kinds."""
    current = model.state_dict()
    if not isinstance(saved, dict):
        raise TypeError(f"model: expected a dict of arrays, got {type(saved).__name__}")
    missing, unexpected = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
    if missing or unexpected:
        raise RuntimeError(f"model: missing keys {missing}, unexpected keys {unexpected}")
    for key, now in current.items():
        value = np.asarray(saved[key])
        now = np.asarray(now)
        if value.dtype.kind not in "biuf":
            raise TypeError(f"model: {key}: expected a numeric array, got dtype {value.dtype}")
        if value.shape != now.shape:
            raise ValueError(f"model: {key}: expected shape {now.shape}, got {value.shape}")
        if now.dtype.kind in "biu" and value.dtype.kind == "f":
            raise TypeError(f"model: {key}: expected an integer array (dtype {now.dtype}), got dtype {value.dtype}")


def _check_progress(state) -> None:
    """The position, generator states, running sums and history a resume reads."""
    position = state["position"]
    epoch, batch = int(position["epoch"]), int(position["batch"])
    if epoch < 0 or batch < 0:
        raise ValueError(f"position: expected epoch and batch >= 0, got {epoch}, {batch}")
    _rng_pair(state["rng"])
    _rng_pair(state["epoch_rng"])
    if batch > 0 and not isinstance(state["sums"], (list, tuple)):
        raise TypeError(f"sums: expected the running sums of a mid-epoch backup, got {type(state['sums']).__name__}")
    int(state["steps"])
    for key in ("history", "epoch", "epoch_time", "train_time"):
        state["history"][key]
