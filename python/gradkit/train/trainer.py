"""``Trainer``: Keras-style fit / evaluate / predict over gradkit modules.

One training step is the PyTorch loop written once:
``zero_grad -> out = model(x) -> l = loss(out, y) -> model.backward(loss.backward())
-> (clip) -> optimizer.step()``. Batches come from a ``gk.data.DataLoader`` in one way:
``plan_epoch`` draws the epoch (its shuffle), the Trainer keeps its rank's share, and
``batches`` yields them. Arrays x, y are wrapped in a loader over ``ArrayDataset(x, y)``
whose batches are gathered (C++ gather) into reused buffers, or are views of x and y when
not shuffled, so an epoch never copies the whole training set. The callbacks see where the
fit is through ``trainer.state`` (a ``TrainerState``).
"""
from __future__ import annotations

import hashlib
import math
import re
import sys
import time

import numpy as np

from .. import _core
from .._checks import integer, real
from .._config import no_grad
from .._mpi import is_writer
from ..callbacks.base import CallbackList
from ..callbacks.history import History
from ..data.dataset import ArrayDataset
from ..data.loader import DataLoader
from ..distributed.shard import shard_of
from ..nn.module import Module
from ..optim import clip_grad_norm_
from ..optim.optimizer import check_optimizer_of
from ..serialization import load, save
from .state import TrainerState

__all__ = ["Trainer"]


# -- metrics -------------------------------------------------------------------
def _labels_of(y: np.ndarray) -> np.ndarray:
    return y.argmax(axis=1) if y.ndim == 2 else y


def _accuracy_count(out: np.ndarray, y: np.ndarray) -> float:
    """Number of rows whose argmax matches the label (or the argmax of a one-hot / soft target)."""
    if out.ndim != 2:
        raise ValueError(f"accuracy: expected model outputs of shape (N, classes), got {out.shape}")
    return float(np.count_nonzero(out.argmax(axis=1) == _labels_of(y)))


class _Metric:
    """A named metric accumulated as (sum over samples, count)."""

    def __init__(self, spec):
        if isinstance(spec, str):
            if spec in ("accuracy", "acc"):
                self.name, self._count = spec, _accuracy_count
                self._mean = None
            else:
                raise ValueError(f"Trainer: metrics: unknown metric {spec!r}; known: 'accuracy', "
                                 "or pass a callable f(outputs, targets) -> batch mean")
        elif callable(spec):
            self.name = getattr(spec, "__name__", type(spec).__name__)
            self._count, self._mean = None, spec
        else:
            raise TypeError(f"Trainer: metrics: expected names or callables, got {type(spec).__name__}")

    def batch_sum(self, out, y) -> float:
        if self._count is not None:
            return self._count(out, y)
        value = self._mean(out, y)
        if np.ndim(value) != 0 or isinstance(value, (str, bytes)):
            got = f"shape {np.shape(value)}" if isinstance(value, np.ndarray) else type(value).__name__
            raise TypeError(f"Trainer: metrics: the metric {self.name!r} must return the batch mean as one "
                            f"number, got {got}")
        return float(value) * len(out)


# The metrics argument's default: accuracy, for classification losses only (see Trainer).
_DEFAULT_METRICS = ("accuracy",)
_CLASSIFICATION_LOSSES = ("CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss")


def _is_classification(loss) -> bool:
    return any(c.__name__ in _CLASSIFICATION_LOSSES for c in type(loss).__mro__)


def _is_plateau(scheduler) -> bool:
    return any(c.__name__ == "ReduceLROnPlateau" for c in type(scheduler).__mro__)


def _is_per_batch(scheduler) -> bool:
    flag = getattr(scheduler, "step_per_batch", None)
    if flag is not None:
        return bool(flag)
    return any(c.__name__ == "OneCycleLR" for c in type(scheduler).__mro__)


class Trainer:
    """Fit, evaluate and predict with a model, a loss module and an optimizer.

    Args:
        model: a ``gk.nn.Module``.
        loss: a loss module: ``loss.forward(outputs, targets) -> float`` and
            ``loss.backward() -> d outputs`` (e.g. ``gk.nn.CrossEntropyLoss()``).
        optimizer: a ``gk.optim`` optimizer over the model's parameters.
        scheduler (None): a ``gk.optim.lr_scheduler`` scheduler, stepped once per
            epoch (``ReduceLROnPlateau`` with val_loss, else loss; ``OneCycleLR``
            once per batch).
        metrics (("accuracy",)): names ("accuracy") or callables
            ``f(outputs, targets) -> batch mean`` (one number), reported per epoch; None for
            none. Left at its default, accuracy is reported for classification losses only
            (``CrossEntropyLoss``), not for regression (``MSELoss``).
        callbacks (()): ``gk.callbacks.Callback`` instances (a list, one callback, or None).
        clip_grad_norm (None): clip the global gradient L2 norm to this value
            before each step (``gk.optim.clip_grad_norm_``).

    Attributes:
        stop_training: set True (e.g. by a callback) to end ``fit`` after the epoch.
        history: the ``History`` of the last ``fit``.
    """

    def __init__(self, model, loss, optimizer, scheduler=None, metrics=_DEFAULT_METRICS, callbacks=(),
                 clip_grad_norm=None):
        if not isinstance(model, Module):
            raise TypeError(f"Trainer: model: expected a gk.nn.Module, got {type(model).__name__}")
        if isinstance(loss, type):
            raise TypeError(f"Trainer: loss: expected a loss instance (e.g. gk.nn.CrossEntropyLoss()), got the "
                            f"class {loss.__name__} itself (call it: {loss.__name__}())")
        if not (callable(getattr(loss, "forward", None)) and callable(getattr(loss, "backward", None))):
            raise TypeError(f"Trainer: loss: expected a loss module with forward and backward "
                            f"(e.g. gk.nn.CrossEntropyLoss()), got {type(loss).__name__}")
        check_optimizer_of("Trainer", model, optimizer)
        if scheduler is not None and not callable(getattr(scheduler, "step", None)):
            raise TypeError(f"Trainer: scheduler: expected a scheduler with .step(), got {type(scheduler).__name__}")
        if metrics is _DEFAULT_METRICS and not _is_classification(loss):
            metrics = ()  # accuracy means nothing for a regression loss
        if metrics is None:
            metrics = ()
        if isinstance(metrics, str) or callable(metrics):
            metrics = (metrics,)
        if not isinstance(metrics, (list, tuple)):
            raise TypeError(f"Trainer: metrics: expected a list of names or callables (or None), "
                            f"got {type(metrics).__name__}")
        self._metrics = [_Metric(m) for m in metrics]
        names = [m.name for m in self._metrics]
        if len(set(names)) != len(names) or "loss" in names or "lr" in names:
            raise ValueError(f"Trainer: metrics: names must be distinct and not 'loss' or 'lr', got {names}")
        # BackupAndRestore (runs_last) runs after the others: it restores their state after their
        # on_train_begin resets it, and backs up after their on_batch_end / on_epoch_end.
        callbacks = CallbackList.checked("Trainer", callbacks)
        if clip_grad_norm is not None:
            clip_grad_norm = real("Trainer", "clip_grad_norm", clip_grad_norm, 0, low_open=True)
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.metrics = tuple(names)
        self.callbacks = callbacks
        self.clip_grad_norm = clip_grad_norm
        self.stop_training = False
        self.history = None
        self.state = TrainerState()  # where the running (or last) fit is, for the callbacks
        self._sample_of = None  # (batch, row) -> sample index in the running epoch (for error messages)

    # -- inputs -----------------------------------------------------------------
    def _check_x(self, x, who):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{who}: x: expected a numpy.ndarray, got {type(x).__name__}")
        if x.ndim < 1:
            raise ValueError(f"{who}: x: expected an array of shape (N, ...), got a 0-d array")
        params = self.model.parameters()
        if params and x.dtype != params[0].data.dtype:
            raise TypeError(f"{who}: x: expected dtype {params[0].data.dtype} (the model's parameters), got {x.dtype}"
                            " (convert the data once, e.g. x.astype(np.float32), or the model with .to(dtype))")
        return x

    def _check_xy(self, x, y, who):
        if isinstance(x, DataLoader):
            if y is not None:
                raise ValueError(f"{who}: y: expected None when x is a DataLoader (it yields the targets), "
                                 f"got {type(y).__name__}")
            return x, None
        x = self._check_x(x, who)
        if not isinstance(y, np.ndarray):
            raise TypeError(f"{who}: y: expected a numpy.ndarray, got {type(y).__name__}")
        if y.ndim < 1 or len(y) != len(x):
            raise ValueError(f"{who}: y: expected {len(x)} targets (one per row of x), got shape {y.shape}")
        return x, y

    # -- training ----------------------------------------------------------------
    def fit(self, x, y=None, epochs=1, batch_size=32, validation_data=None, validation_split=0.0, shuffle=True,
            verbose=1, initial_epoch=0, drop_last=False):
        """Train for ``epochs`` epochs of mini-batches; returns a ``History``.

        Args:
            x, y: training inputs (N, ...) and targets (N, ...) (integer labels for
                cross-entropy); or x a ``gk.data.DataLoader`` of (x, y) batches and y None
                (then the loader's batch size, shuffling and transform apply).
            epochs (1): index of the last epoch (training runs initial_epoch..epochs-1).
            batch_size (32): samples per step; the last batch may be smaller.
            validation_data (None): ``(x_val, y_val)`` or a DataLoader, evaluated after each epoch.
            validation_split (0.0): fraction in [0, 1) of the data, taken from the
                END of x and y before shuffling (as Keras), held out for validation.
                Ignored when validation_data is given.
            shuffle (True): reshuffle the training set every epoch (``gk.manual_seed``).
            verbose (1): 0 silent, 1 a progress bar per epoch, 2 one line per epoch.
            initial_epoch (0): epoch to start at (to resume from a checkpoint).
            drop_last (False): leave out each epoch's last batch when it is smaller than
                batch_size (arrays; a DataLoader has its own drop_last). Batch norm cannot train on
                a last batch of one sample.

        Raises:
            FloatingPointError ("non-finite ... epoch E, batch B") when a loss or gradient is
            NaN/Inf, or when an update made a parameter NaN/Inf (the update is undone): the
            model keeps its last finite parameters and buffers.
            An error inside a batch (a bad label, a layer refusing the batch) is raised again
            with the epoch, the batch and the sample indices.
        """
        who = "Trainer.fit"
        x, y = self._check_xy(x, y, who)
        if not isinstance(drop_last, (bool, np.bool_)):  # the wording the drop_last tests hold
            raise TypeError(f"{who}: drop_last: expected True or False, got {drop_last!r}")
        drop_last = bool(drop_last)
        epochs = integer(who, "epochs", epochs, 0)
        batch_size = integer(who, "batch_size", batch_size, 1)
        initial_epoch = integer(who, "initial_epoch", initial_epoch, 0)
        verbose = integer(who, "verbose", verbose, 0, 2)
        validation_split = real(who, "validation_split", validation_split, 0.0)
        if validation_split >= 1.0:
            raise ValueError(f"{who}: validation_split: expected a fraction in [0, 1), got {validation_split!r}")
        loader = x if isinstance(x, DataLoader) else None  # data pipeline: batches come from the loader
        if loader is not None:
            if validation_split > 0:
                raise ValueError(f"{who}: validation_split: not available with a DataLoader; pass "
                                 "validation_data=<another DataLoader>")
            if drop_last:
                raise ValueError(f"{who}: drop_last: not available with a DataLoader; pass "
                                 "DataLoader(..., drop_last=True)")
            batch_size, shuffle = loader.batch_size, loader.shuffle
        if isinstance(validation_data, DataLoader):
            x_val, y_val = validation_data, None
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError(f"{who}: validation_data: expected a pair (x_val, y_val), "
                                 f"got {type(validation_data).__name__}")
            x_val, y_val = self._check_xy(validation_data[0], validation_data[1], f"{who}: validation_data")
        elif validation_split > 0:
            split = int(len(x) * (1.0 - validation_split))
            if split < 1 or split >= len(x):
                raise ValueError(f"{who}: validation_split: {validation_split} of {len(x)} samples leaves an empty "
                                 "training or validation set")
            x, y, x_val, y_val = x[:split], y[:split], x[split:], y[split:]
        else:
            x_val = y_val = None
        n = _num_samples(x)
        if n == 0:
            raise ValueError(f"{who}: x: expected at least one training sample, got "
                             f"{'an empty DataLoader' if loader is not None else f'shape {x.shape}'}")
        # A DistributedDataParallel model: each rank trains on its slice of every epoch (gradkit/distributed).
        shard = shard_of(self.model)
        local_n = n if shard is None else shard.samples(len(loader.dataset) if loader is not None else n)
        if drop_last or (loader is not None and shard is not None and loader.drop_last):
            local_n -= local_n % batch_size
        if shard is not None and shard.rank != 0:
            verbose = 0  # only rank 0 prints
        if drop_last and local_n == 0:
            raise ValueError(f"{who}: drop_last: expected batch_size <= the training samples "
                             f"{'of each rank ' if shard is not None else ''}when dropping the last "
                             f"batch, got batch_size {batch_size} for {n} samples (no batch is left)")
        # What a BackupAndRestore backup must share with this fit to resume it.
        setup = {"epochs": epochs, "shuffle": bool(shuffle), "batch_size": batch_size, "samples": n,
                 "drop_last": bool(drop_last), "ranks": 1 if shard is None else shard.world,
                 "data": _fingerprint(loader.dataset if loader is not None else (x, y))}
        if loader is None:  # arrays take the loader's way, gathered into reused buffers (see batches)
            loader = DataLoader(ArrayDataset(x, y), batch_size, shuffle=bool(shuffle), drop_last=drop_last)
            reuse = True
        else:
            reuse = False

        history = History()
        history.params = {"epochs": epochs, "batch_size": batch_size, "samples": n,
                          "steps": -(-local_n // batch_size),
                          "validation_samples": 0 if x_val is None else _num_samples(x_val)}
        self.history = history
        self.stop_training = False
        self.state = TrainerState(shard, setup)
        callbacks = CallbackList(self.callbacks, trainer=self)
        try:
            return self._fit_epochs(loader, reuse, x_val, y_val, n, local_n, epochs, batch_size, verbose,
                                    initial_epoch, history, callbacks, who)
        finally:  # callbacks holding resources (BackupAndRestore's lock) release them however fit ends
            callbacks.release()

    def _fit_epochs(self, loader, reuse, x_val, y_val, n, local_n, epochs, batch_size, verbose, initial_epoch,
                    history, callbacks, who):
        state = self.state
        callbacks.on_train_begin({})
        # BackupAndRestore restored a killed run in on_train_begin: continue from its backup's position.
        resume, state.resume = state.resume, None
        if resume is not None:
            initial_epoch = resume["epoch"]
        nbatches = -(-local_n // batch_size)

        logs = {k: v[-1] for k, v in history.history.items()}  # the last epoch's, when resumed
        for epoch in range(initial_epoch, epochs):
            if self.stop_training:  # a restored run that had already stopped
                break
            state.epoch, state.batch, state.sums = epoch, 0, None
            callbacks.on_epoch_begin(epoch, {})
            start = time.perf_counter()
            mid_epoch = resume is not None and epoch == resume["epoch"] and resume["batch"] > 0
            if mid_epoch:  # redo the epoch's draws from the generator state they started from
                _core.set_rng_state(*resume["epoch_rng"])
            state.epoch_rng = _core.rng_state()
            # The epoch's random draws come first, in this thread: the permutation (if shuffling),
            # then the augmentation key (a gk.data transform). See gk.data.DataLoader.
            plan = loader.plan_epoch()
            if state.shard is not None:
                plan = plan._replace(order=state.shard.indices(plan.order))
            start_batch, sums = 0, None
            if mid_epoch:  # then skip the batches done, with the generator where the backup left it
                _core.set_rng_state(*resume["rng"])
                start_batch, sums = resume["batch"], resume["sums"]
            batches = self._loader_batches(loader.batches(plan, start_batch, reuse_buffers=reuse), who)
            # The sample (index into the training data) of row r of batch b, for error messages.
            self._sample_of = lambda b, r, plan=plan: int(loader.batch_indices(plan, b)[r])
            bar = self._progress_bar(epoch, epochs, local_n, verbose)
            try:
                logs = self._train_epoch(epoch, batches, nbatches, bar, callbacks, start_batch, sums)
                train_seconds = time.perf_counter() - start
                lr = float(self.optimizer.param_groups[0]["lr"])
                if x_val is not None:
                    val = self.evaluate(x_val, y_val, batch_size=max(batch_size, 256))
                    logs.update({"val_" + k: v for k, v in val.items()})
                logs["lr"] = lr
                if bar is not None:
                    bar.set_postfix_str(f"{n / train_seconds:.0f} samples/s, {self._format_logs(logs, with_lr=False)}",
                                        refresh=True)
            finally:
                if bar is not None:
                    bar.close()
            if self.scheduler is not None and not _is_per_batch(self.scheduler):
                if _is_plateau(self.scheduler):
                    self.scheduler.step(logs.get("val_loss", logs["loss"]))
                else:
                    self.scheduler.step()
            seconds = time.perf_counter() - start
            history.append(epoch, logs, seconds, train_seconds)
            if verbose == 2:
                print(f"Epoch {epoch + 1}/{epochs} - {seconds:.1f}s - {n / train_seconds:.0f} samples/s - "
                      f"{self._format_logs(logs, with_lr=True)}", file=sys.stdout, flush=True)
            callbacks.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        callbacks.on_train_end(logs)
        return history

    @staticmethod
    def _format_logs(logs, with_lr):
        parts = []
        for k, v in logs.items():
            if k == "lr":
                if with_lr:
                    parts.append(f"lr={v:.3g}")
            else:
                parts.append(f"{k}={v:.4f}")
        return ", ".join(parts)

    @staticmethod
    def _progress_bar(epoch, epochs, n, verbose):
        if verbose != 1:
            return None
        from tqdm import tqdm

        # Throughput goes in the postfix (samples/s since the epoch began), not tqdm's smoothed rate.
        return tqdm(total=n, desc=f"Epoch {epoch + 1}/{epochs}", leave=True, mininterval=0.25, dynamic_ncols=True,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")

    def _buffer_refs(self):
        """(module, name) of every array buffer, to snapshot before each forward."""
        return [(m, name) for m in self.model.modules() for name, b in m.named_buffers(recurse=False)
                if isinstance(b, np.ndarray)]

    def _non_finite(self, what, epoch, batch, nbatches, snapshot, refs):
        """Undo the batch's buffer updates and gradients, then raise."""
        for (mod, name), saved in zip(refs, snapshot):
            buf = getattr(mod, name)
            if isinstance(buf, np.ndarray) and buf.shape == saved.shape and buf.dtype == saved.dtype:
                buf[...] = saved
            else:
                setattr(mod, name, saved)
        self.optimizer.zero_grad()
        self.model.zero_grad()
        raise FloatingPointError(f"Trainer.fit: non-finite {what} at epoch {epoch + 1}, batch {batch + 1} "
                                 f"of {nbatches} (1-based); training stopped before updating the model, "
                                 "which keeps its last finite state. Lower the learning rate, clip gradients "
                                 "(clip_grad_norm=...) or check the data for NaN/Inf.")

    def _batch_error(self, e, epoch, batch, nbatches, xb, yb):
        """Raise ``e`` again naming the epoch, the batch and its samples (and the sample of a bad label)."""
        rows = [self._sample_of(batch, r) for r in range(len(xb))]
        span = (f"sample {rows[0]}" if len(rows) == 1 else f"samples {rows[0]}..{rows[-1]}"
                if rows == list(range(rows[0], rows[0] + len(rows))) else f"samples {rows[:4]}... (shuffled)")
        where = f"epoch {epoch + 1}, batch {batch + 1} of {nbatches} (1-based; {span})"
        found = re.search(r"got label (-?\d+) at index (\d+)", str(e))
        if found is not None and int(found.group(2)) < len(xb):
            sample = self._sample_of(batch, int(found.group(2)))
            where = f"y[{sample}] = {found.group(1)} (sample {sample}, epoch {epoch + 1}, batch {batch + 1} of {nbatches})"
        layer = getattr(e, "module", None)
        if layer is not None:
            name = next((n for n, m in self.model.named_modules() if m is layer), None)
            if name:
                where += f" in layer {name!r}"
        try:
            again = type(e)(f"Trainer.fit: {where}: {e}")
        except Exception:  # an exception type with other constructor arguments: as it came
            raise e from None
        raise again from e

    def _grads_finite(self, params) -> bool:
        """True when every trainable parameter's gradient is finite (frozen ones are not looked at)."""
        return _all_finite([p.grad for p in params if p.requires_grad])

    def _loader_batches(self, batches, who):
        """(x, y) of each DataLoader batch; the first x is checked like an array x."""
        checked = False
        for batch in batches:
            if len(batch) < 2:
                raise ValueError(f"{who}: x: expected a DataLoader of (x, y) batches, got batches of "
                                 f"{len(batch)} array(s)")
            if not checked:
                self._check_x(batch[0], f"{who}: DataLoader batch")
                checked = True
            yield batch[0], batch[1]

    def _train_epoch(self, epoch, batches, nbatches, bar, callbacks, start_batch=0, sums=None):
        """One epoch over ``batches`` (an iterable of (x, y), batch ``start_batch`` first) of ``nbatches``.

        ``sums`` is (loss sum, samples, metric sums) over the batches before ``start_batch``
        (a resumed epoch); ``self.state.sums`` holds the same after each batch.
        """
        model, loss, opt, state = self.model, self.loss, self.optimizer, self.state
        params = model.parameters()
        refs = self._buffer_refs()
        per_batch_sched = self.scheduler is not None and _is_per_batch(self.scheduler)
        clip = None if self.clip_grad_norm is None else clip_grad_norm_
        batch_begin, batch_end = callbacks.wants_batch_begin, callbacks.wants_batch_end
        metrics = self._metrics
        if sums is None:
            loss_sum, seen, metric_sums = 0.0, 0, [0.0] * len(metrics)
        else:
            loss_sum, seen, metric_sums = float(sums[0]), int(sums[1]), [float(s) for s in sums[2]]
        if bar is not None and seen:
            bar.update(seen)
        ranks = 1 if state.shard is None else state.shard.world  # the bar shows the rate over all ranks
        seen_before, start = seen, time.perf_counter()
        model.train()
        guard = _StepGuard(params, opt)
        for b, (xb, yb) in enumerate(batches, start_batch):
            m = len(xb)
            if batch_begin:
                callbacks.on_batch_begin(b, {"size": m})
            snapshot = [getattr(mod, name).copy() for mod, name in refs]
            opt.zero_grad()
            try:
                out = model(xb)
                value = float(loss.forward(out, yb))
            except (ValueError, TypeError, IndexError) as e:
                self._batch_error(e, epoch, b, nbatches, xb, yb)
            if not math.isfinite(value):
                self._non_finite(f"loss ({value})", epoch, b, nbatches, snapshot, refs)
            model.backward_maybe_input(loss.backward(), False)  # nothing needs d input
            if clip is not None:
                norm = float(clip(params, self.clip_grad_norm))
                if not math.isfinite(norm):
                    self._non_finite(f"gradient (norm {norm})", epoch, b, nbatches, snapshot, refs)
            elif not self._grads_finite(params):
                self._non_finite("gradient", epoch, b, nbatches, snapshot, refs)
            guard.save()
            opt.step()
            if not guard.finite():  # the update overflowed: undo it, then stop as for a non-finite gradient
                guard.undo()
                self._non_finite("parameters after the update (the update was undone)",
                                 epoch, b, nbatches, snapshot, refs)
            if per_batch_sched:
                self.scheduler.step()
            loss_sum += value * m
            seen += m
            for i, metric in enumerate(metrics):
                metric_sums[i] += metric.batch_sum(out, yb)
            state.sums, state.batch = (loss_sum, seen, tuple(metric_sums)), b + 1
            if batch_end or bar is not None:
                logs = {"loss": loss_sum / seen}
                for metric, s in zip(metrics, metric_sums):
                    logs[metric.name] = s / seen
                if batch_end:
                    callbacks.on_batch_end(b, dict(logs, size=m))
                if bar is not None:
                    rate = (seen - seen_before) * ranks / max(time.perf_counter() - start, 1e-9)
                    bar.set_postfix_str(f"{rate:.0f} samples/s, {self._format_logs(logs, with_lr=False)}",
                                        refresh=False)
                    bar.update(m)
        if state.shard is not None:  # sums over every rank: every rank logs (and decides on) the same numbers
            loss_sum, seen, *metric_sums = state.shard.sum([loss_sum, seen, *metric_sums])
        logs = {"loss": loss_sum / seen}
        for metric, s in zip(metrics, metric_sums):
            logs[metric.name] = s / seen
        return logs

    # -- inference ---------------------------------------------------------------------
    def _inference_batches(self, x, y, batch_size, who, targets):
        """(x, y) batches of arrays x, y, or of a DataLoader x (y None); y batches are None without targets."""
        if isinstance(x, DataLoader):
            if targets:
                yield from self._loader_batches(x, who)
                return
            for i, batch in enumerate(x):
                if i == 0:
                    self._check_x(batch[0], f"{who}: DataLoader batch")
                yield batch[0], None
            return
        batch_size = integer(who, "batch_size", batch_size, 1)
        for lo in range(0, len(x), batch_size):
            yield x[lo:lo + batch_size], (y[lo:lo + batch_size] if targets else None)

    def evaluate(self, x, y=None, batch_size=256):
        """Loss and metrics over (x, y), or over a DataLoader's (x, y) batches, in eval mode without caches.

        Returns:
            {"loss": mean loss, <metric>: value, ...}
        """
        who = "Trainer.evaluate"
        x, y = self._check_xy(x, y, who)
        if _num_samples(x) == 0:
            raise ValueError(f"{who}: x: expected at least one sample, got "
                             f"{'an empty DataLoader' if y is None else f'shape {x.shape}'}")
        # A DistributedDataParallel model: each rank evaluates its part of arrays (a DataLoader
        # is evaluated whole on every rank, which gives every rank the same numbers too).
        shard = shard_of(self.model) if y is not None else None
        if shard is not None:
            part = shard.part(len(x))
            x, y = x[part], y[part]
        if y is not None:
            x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
        was_training = self.model.training
        self.model.eval()
        loss_sum, metric_sums, n = 0.0, [0.0] * len(self._metrics), 0
        try:
            with no_grad():
                for xb, yb in self._inference_batches(x, y, batch_size, who, targets=True):
                    out = self.model(xb)
                    _check_batch_axis(who, xb, out)
                    loss_sum += float(self.loss.forward(out, yb)) * len(xb)
                    for i, metric in enumerate(self._metrics):
                        metric_sums[i] += metric.batch_sum(out, yb)
                    n += len(xb)
        finally:
            self.model.train(was_training)
        if shard is not None:
            loss_sum, n, *metric_sums = shard.sum([loss_sum, n, *metric_sums])
        result = {"loss": loss_sum / n}
        for metric, s in zip(self._metrics, metric_sums):
            result[metric.name] = s / n
        return result

    def predict(self, x, batch_size=256):
        """Model outputs for x (or a DataLoader's first arrays), in batches, in eval mode without caches.

        Returns:
            An array (N, ...) of outputs (e.g. logits (N, classes)).
        """
        who = "Trainer.predict"
        if not isinstance(x, DataLoader):
            x = np.ascontiguousarray(self._check_x(x, who))
        total = _num_samples(x)
        if total == 0 and isinstance(x, DataLoader):
            raise ValueError(f"{who}: x: expected at least one sample, got an empty DataLoader")
        was_training = self.model.training
        self.model.eval()
        result, lo = None, 0
        try:
            with no_grad():
                if total == 0 and not isinstance(x, DataLoader):
                    return np.asarray(self.model(x))
                for xb, _ in self._inference_batches(x, None, batch_size, who, targets=False):
                    out = self.model(xb)
                    _check_batch_axis(who, xb, out)
                    if result is None:
                        result = np.empty((total,) + out.shape[1:], dtype=out.dtype)
                    result[lo:lo + len(xb)] = out
                    lo += len(xb)
        finally:
            self.model.train(was_training)
        return result

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, path, epoch: int) -> None:
        """Save model, optimizer (and scheduler) state, epochs completed and the RNG state (``gk.save``)."""
        if not is_writer():  # distributed: rank 0 writes, the other ranks hold the same state
            return
        seed, offset = _core.rng_state()
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": int(epoch),
            "rng": np.array([seed, offset], dtype=np.uint64),
        }
        if self.scheduler is not None and callable(getattr(self.scheduler, "state_dict", None)):
            state["scheduler"] = self.scheduler.state_dict()
        save(state, path)

    def load_checkpoint(self, path) -> int:
        """Restore a ``save_checkpoint`` / ``ModelCheckpoint`` file; returns the epochs completed.

        Continue with ``fit(..., initial_epoch=<returned value>)``: the run then
        proceeds exactly as if it had not been interrupted.
        """
        state = load(path)
        for key in ("model", "optimizer", "epoch"):
            if key not in state:
                raise ValueError(f"Trainer.load_checkpoint: {path}: not a checkpoint (no {key!r} entry)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state and self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if "rng" in state:
            seed, offset = (int(v) for v in np.asarray(state["rng"], dtype=np.uint64))
            _core.set_rng_state(seed, offset)
        return int(state["epoch"])


def _check_batch_axis(who, xb, out) -> None:
    """ValueError when the model's output does not keep the batch axis of its input (x without one)."""
    out = np.asarray(out)
    if out.ndim == 0 or len(out) != len(xb):
        raise ValueError(f"{who}: x: expected a batch of samples (N, ...) with the batch axis first, got x of "
                         f"shape {xb.shape}, for which the model returned shape {out.shape}; for one sample "
                         "pass x[None] (or x[i:i + 1])")


def _num_samples(x) -> int:
    """Samples in an array, or per epoch of a DataLoader."""
    return x.num_samples if isinstance(x, DataLoader) else len(x)


def _all_finite(arrays) -> bool:
    """True when no array holds a NaN or an infinity: a sum of squares (BLAS, the fastest pass) is
    finite then; only when it is not (float32 squares of large finite values overflow too) is each
    array looked at exactly."""
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for a in arrays:
            d = a.reshape(-1)
            total += float(np.dot(d, d))
    return math.isfinite(total) or all(bool(np.isfinite(a).all()) for a in arrays)


class _StepGuard:
    """A copy of the parameters from before a step, to undo a step whose update overflowed
    (finite gradients, a huge learning rate): ``save()`` before ``opt.step()`` (into buffers kept
    across steps), ``finite()`` after it (one pass over the parameters), ``undo()`` if it was not.

    The model's parameters come back bit for bit. The optimizer's state is not copied (for Adam
    that would be three times the parameters, every step): state the undone step created is
    removed, so a first step is undone exactly; existing moments keep that batch's (finite) gradient.
    """

    def __init__(self, params, optimizer):
        self.params, self.opt = params, optimizer
        self.copies = {}  # id(array) -> (array, its copy): reused while the arrays stay the same

    def _copy(self, a):
        kept = self.copies.get(id(a))
        if kept is None or kept[0] is not a:
            kept = self.copies[id(a)] = (a, np.empty_like(a))
        np.copyto(kept[1], a)
        return kept

    def save(self):
        self.saved_params = [self._copy(p.data) for p in self.params]
        self.had_state = {p: set(st) for p, st in self.opt.state.items()}

    def finite(self) -> bool:
        return _all_finite([p.data for p in self.params])

    def undo(self):
        for a, saved in self.saved_params:
            np.copyto(a, saved)
        state = self.opt.state
        for p in list(state):  # what this step created
            if p not in self.had_state:
                del state[p]
            else:
                for key in set(state[p]) - self.had_state[p]:
                    del state[p][key]
        self.opt.forget_plans()  # its prepared argument lists may hold arrays of the undone step


def _fingerprint(data) -> dict:
    """A cheap identity of the training data: sizes, dtypes and a hash of up to 64 rows at fixed
    positions of each array (a DataLoader's ArrayDataset), so a resumed fit checks it has the same data."""
    arrays = data if isinstance(data, tuple) else getattr(data, "arrays", None)
    if arrays is None:  # another Dataset: its length and type only
        return {"rows": len(data), "kind": type(data).__name__}
    digest = hashlib.blake2b(digest_size=16)
    described = []
    for a in arrays:
        a = np.asarray(a)
        described.append(f"{a.dtype.str}{a.shape}")
        if a.dtype.hasobject or len(a) == 0:
            continue
        rows = np.unique(np.linspace(0, len(a) - 1, num=min(len(a), 64)).astype(np.int64))
        digest.update(np.ascontiguousarray(a[rows]).tobytes())
    return {"rows": len(arrays[0]), "arrays": " ".join(described), "hash": digest.hexdigest()}

